"""Volume backups: chunks kept as objects in the project's bucket, incremental backups,
restores that give back the same bytes, dependents, quotas, microversions, isolation."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from defusedxml import ElementTree

from souverain.volume import models as m
from souverain.volume.jobs import WORKERS

from .support import S3, Cloud
from .test_volumes import (
    MIB,
    Cinder,
    admin,
    cinder_error,
    cloud,
    raw_hash,
    tenant,
    volume_file,
)

__all__ = ["cloud"]

CHUNK = 32 * MIB
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def fill(cloud: Cloud, volume_id: str, tmp_path: Path, blocks: dict[int, bytes]) -> str:
    """Write MiB-long patterns at the given offsets (the rest zeros); the raw sha256."""
    path = volume_file(cloud, volume_id)
    size = cloud.platform.volume.backend.virtual_size(path)
    raw = tmp_path / "fill.raw"
    with raw.open("wb") as handle:
        handle.truncate(size)
        for offset, seed in blocks.items():
            handle.seek(offset)
            handle.write(hashlib.sha256(seed).digest() * (MIB // 32))
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
        check=True,
        capture_output=True,
    )
    raw.unlink()
    return raw_hash(path, tmp_path, size)


def backup(c: Cinder, volume_id: str, **fields: Any) -> dict[str, Any]:
    response = c.post("/backups", {"backup": {"volume_id": volume_id, **fields}})
    assert response.status_code == 202, response.text
    made: dict[str, Any] = response.json()["backup"]
    assert set(made) == {"id", "name", "links", "metadata"}
    return settle(c, made["id"])


def settle(c: Cinder, backup_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """The backup once its job is done: as in Cinder, the copying of a backup or a
    restore runs after the 202, and the statuses say when it ends."""
    deadline = time.monotonic() + timeout
    shown = show(c, backup_id)
    while shown["status"] in ("creating", "restoring") and time.monotonic() < deadline:
        time.sleep(0.05)
        shown = show(c, backup_id)
    return shown


def show(c: Cinder, backup_id: str) -> dict[str, Any]:
    response = c.get(f"/backups/{backup_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["backup"]
    return body


def bucket_objects(cloud: Cloud, s3: S3, bucket: str) -> dict[str, int]:
    listed = s3.send("GET", f"/{bucket}?list-type=2")
    assert listed.status_code == 200, listed.text
    root = ElementTree.fromstring(listed.content)
    return {
        item.findtext(f"{NS}Key", ""): int(item.findtext(f"{NS}Size", "0"))
        for item in root.iter(f"{NS}Contents")
    }


@pytest.mark.one_backend("sqlite")  # the bytes are its subject; the records are the other tests'
def test_full_and_incremental_backups_restore_the_same_bytes(cloud: Cloud, tmp_path: Path) -> None:
    member = cloud.member()
    c = Cinder(cloud, member.token, member.project_id, member.id)
    volume_id = c.create(name="data")["id"]
    first = fill(cloud, volume_id, tmp_path, {0: b"a", 5 * CHUNK: b"b", 31 * CHUNK: b"c"})
    full = backup(c, volume_id, name="b1")
    assert full["status"] == "available", full
    assert full["is_incremental"] is False and full["object_count"] == 3
    assert full["container"] == f"volumebackups-{member.project_id}"

    second = fill(cloud, volume_id, tmp_path, {0: b"a", 5 * CHUNK: b"B", 31 * CHUNK: b"c"})
    incr = backup(c, volume_id, name="b2", incremental=True)
    assert incr["status"] == "available" and incr["is_incremental"] is True
    assert show(c, full["id"])["has_dependent_backups"] is True
    assert c.show(volume_id)["status"] == "available"

    # the chunks are objects of the project's bucket, seen through S3
    objects = bucket_objects(cloud, S3(cloud, member), full["container"])
    full_keys = [k for k in objects if f"_backup_{full['id']}" in k]
    incr_keys = [k for k in objects if f"_backup_{incr['id']}" in k]
    assert len(full_keys) == 4 and len(incr_keys) == 2  # chunks + _metadata
    assert sum(objects[k] for k in incr_keys) < sum(objects[k] for k in full_keys)

    # restore the full backup to a new volume, the incremental onto an existing one
    restored = c.post(f"/backups/{full['id']}/restore", {"restore": {"name": "back"}})
    assert restored.status_code == 202, restored.text
    settle(c, full["id"])
    body = restored.json()["restore"]
    assert body["backup_id"] == full["id"] and body["volume_name"] == "back"
    assert c.show(body["volume_id"])["status"] == "available"
    assert raw_hash(volume_file(cloud, body["volume_id"]), tmp_path) == first

    target = c.create(size=2)["id"]
    onto = c.post(f"/backups/{incr['id']}/restore", {"restore": {"volume_id": target}})
    assert onto.status_code == 202, onto.text
    settle(c, incr["id"])
    assert onto.json()["restore"]["volume_id"] == target
    assert c.show(target)["status"] == "available"
    assert raw_hash(volume_file(cloud, target), tmp_path, 1024 * MIB) == second
    assert show(c, incr["id"])["status"] == "available"

    # a backup with dependents stays; deleting the child first frees both
    message = cinder_error(c.delete(f"/backups/{full['id']}"), 400)
    assert "Incremental backups exist" in message
    assert c.delete(f"/backups/{incr['id']}").status_code == 202
    assert c.delete(f"/backups/{full['id']}").status_code == 202
    assert bucket_objects(cloud, S3(cloud, member), full["container"]) == {}
    assert c.get("/backups").json()["backups"] == []


def test_incremental_needs_a_full_backup_and_in_use_needs_force(cloud: Cloud) -> None:
    c = tenant(cloud)
    volume_id = c.create()["id"]
    message = cinder_error(
        c.post("/backups", {"backup": {"volume_id": volume_id, "incremental": True}}), 400
    )
    assert "full backup first" in message
    server_id = str(uuid.uuid4())
    cloud.platform.volume.reserve(c.ctx(), volume_id, server_id)
    cloud.platform.volume.attached(volume_id, server_id, "/dev/vdb", "att")
    message = cinder_error(c.post("/backups", {"backup": {"volume_id": volume_id}}), 400)
    assert "force" in message
    assert c.get("/backups").json()["backups"] == []
    forced = backup(c, volume_id, force=True)
    assert forced["status"] == "available"
    assert c.show(volume_id)["status"] == "in-use"


def test_bad_requests_leave_nothing_behind(cloud: Cloud) -> None:
    c = tenant(cloud)
    other = tenant(cloud)
    volume_id = c.create()["id"]
    cinder_error(c.post("/backups", {"backup": {}}), 400)
    cinder_error(c.post("/backups", {"backup": {"volume_id": "nope"}}), 400)
    cinder_error(c.post("/backups", {"backup": {"volume_id": str(uuid.uuid4())}}), 404)
    cinder_error(c.post("/backups", {"backup": {"volume_id": volume_id, "force": "x"}}), 400)
    cinder_error(c.post("/backups", {"backup": {"volume_id": volume_id, "container": "A_"}}), 400)
    # another project's bucket is not a container for this project's backups
    theirs = backup(other, other.create()["id"])["container"]
    message = cinder_error(
        c.post("/backups", {"backup": {"volume_id": volume_id, "container": theirs}}), 400
    )
    assert "another project" in message
    assert c.get("/backups").json()["backups"] == []
    assert c.show(volume_id)["status"] == "available"
    made = backup(c, volume_id)
    too_small = c.create(size=1)["id"]
    c.action(too_small, "os-extend", {"new_size": 1})
    bigger = c.create(size=2)["id"]
    big_backup = backup(c, bigger)
    message = cinder_error(
        c.post(f"/backups/{big_backup['id']}/restore", {"restore": {"volume_id": too_small}}),
        400,
    )
    assert "at least 2 GiB" in message
    assert show(c, big_backup["id"])["status"] == "available"
    cinder_error(c.post(f"/backups/{made['id']}/action", {"os-reset_status": {}}), 400)
    cinder_error(
        c.post(f"/backups/{made['id']}/action", {"os-reset_status": {"status": "error"}}), 403
    )


def test_fields_follow_the_microversion(cloud: Cloud) -> None:
    c = tenant(cloud)
    volume_id = c.create()["id"]
    c.version = "3.0"
    cinder_error(
        c.post("/backups", {"backup": {"volume_id": volume_id, "metadata": {"k": "v"}}}), 400
    )
    c.version = "3.43"
    made = backup(c, volume_id, metadata={"k": "v"}, description="d")
    assert made["metadata"] == {"k": "v"} and "user_id" not in made
    assert "os-backup-project-attr:project_id" not in made
    c.version = "3.0"
    old = show(c, made["id"])
    assert "metadata" not in old and "user_id" not in old
    c.version = "3.70"
    assert show(c, made["id"])["user_id"] == c.user_id
    a = admin(cloud)
    seen = a.get(f"/backups/{made['id']}").json()["backup"]
    assert seen["os-backup-project-attr:project_id"] == c.project_id
    updated = c.put(f"/backups/{made['id']}", {"backup": {"name": "renamed"}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["backup"]["name"] == "renamed"
    detail = c.get("/backups/detail").json()["backups"]
    assert [b["name"] for b in detail] == ["renamed"]
    assert c.get("/backups", project=True).json()["backups"][0]["id"] == made["id"]


def test_quota_counts_backups(cloud: Cloud) -> None:
    c = tenant(cloud)
    a = admin(cloud)
    volume_id = c.create()["id"]
    set_quota = a.put(f"/os-quota-sets/{c.project_id}", {"quota_set": {"backups": 1}})
    assert set_quota.status_code == 200, set_quota.text
    assert set_quota.json()["quota_set"]["backups"] == 1
    backup(c, volume_id)
    message = cinder_error(c.post("/backups", {"backup": {"volume_id": volume_id}}), 413)
    assert "BackupLimitExceeded" in message
    usage = c.get(f"/os-quota-sets/{c.project_id}?usage=true").json()["quota_set"]
    assert usage["backups"]["in_use"] == 1 and usage["backup_gigabytes"]["in_use"] == 1
    limits = c.get("/limits").json()["limits"]["absolute"]
    assert limits["maxTotalBackups"] == 1 and limits["totalBackupsUsed"] == 1


def test_other_projects_and_readers(cloud: Cloud) -> None:
    c = tenant(cloud)
    volume_id = c.create()["id"]
    made = backup(c, volume_id)
    other = tenant(cloud)
    cinder_error(other.get(f"/backups/{made['id']}"), 404)
    cinder_error(other.post(f"/backups/{made['id']}/restore", {"restore": {}}), 404)
    cinder_error(other.delete(f"/backups/{made['id']}"), 404)
    cinder_error(other.post("/backups", {"backup": {"volume_id": volume_id}}), 404)
    assert other.get("/backups/detail").json()["backups"] == []
    reader = cloud.member(role="reader", project_id=c.project_id)
    r = Cinder(cloud, reader.token, reader.project_id, reader.id)
    assert [b["id"] for b in r.get("/backups").json()["backups"]] == [made["id"]]
    cinder_error(r.post("/backups", {"backup": {"volume_id": volume_id}}), 403)
    cinder_error(r.post(f"/backups/{made['id']}/restore", {"restore": {}}), 403)
    cinder_error(r.delete(f"/backups/{made['id']}"), 403)
    assert show(c, made["id"])["status"] == "available"


def test_restore_gives_back_the_volume_metadata(cloud: Cloud) -> None:
    c = tenant(cloud)
    volume_id = c.create(metadata={"tier": "gold"})["id"]
    made = backup(c, volume_id)
    restored = c.post(f"/backups/{made['id']}/restore", {"restore": {}})
    assert restored.status_code == 202, restored.text
    settle(c, made["id"])
    body = restored.json()["restore"]
    assert body["volume_name"] == f"restore_backup_{made['id']}"
    assert c.show(body["volume_id"])["metadata"] == {"tier": "gold"}


def test_admin_exports_and_imports_a_backup_record(cloud: Cloud, tmp_path: Path) -> None:
    c = tenant(cloud)
    a = admin(cloud)
    volume_id = c.create()["id"]
    expected = fill(cloud, volume_id, tmp_path, {CHUNK: b"r"})
    made = backup(c, volume_id)
    cinder_error(c.get(f"/backups/{made['id']}/export_record"), 403)
    exported = a.get(f"/backups/{made['id']}/export_record")
    assert exported.status_code == 200, exported.text
    record = exported.json()["backup-record"]
    assert record["backup_service"].startswith("cinder.backup.drivers.")
    cinder_error(c.post("/backups/import_record", {"backup-record": record}), 403)
    bad = {"backup_service": record["backup_service"], "backup_url": "not base64!"}
    cinder_error(a.post("/backups/import_record", {"backup-record": bad}), 400)
    cinder_error(a.post("/backups/import_record", {"backup-record": record}), 400)  # exists

    decoded = json.loads(base64.b64decode(record["backup_url"]))
    new_id = str(uuid.uuid4())
    forged = base64.b64encode(json.dumps({**decoded, "id": new_id}).encode()).decode()
    imported = a.post(
        "/backups/import_record",
        {"backup-record": {"backup_service": record["backup_service"], "backup_url": forged}},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["backup"]["id"] == new_id
    assert a.delete(f"/backups/{new_id}").status_code == 202  # owns none of the objects
    restored = c.post(f"/backups/{made['id']}/restore", {"restore": {}})
    assert restored.status_code == 202, restored.text
    settle(c, made["id"])
    target = restored.json()["restore"]["volume_id"]
    assert raw_hash(volume_file(cloud, target), tmp_path) == expected


def test_a_stop_mid_way_is_resolved_at_the_next_start(cloud: Cloud) -> None:
    c = tenant(cloud)
    volume_id = c.create()["id"]
    made = backup(c, volume_id)
    stuck = backup(c, volume_id)
    service = cloud.platform.volume
    with service.db.session() as s:
        s.get(m.VolumeBackup, made["id"]).status = "restoring"  # type: ignore[union-attr]
        s.get(m.VolumeBackup, stuck["id"]).status = "creating"  # type: ignore[union-attr]
        s.get(m.Volume, volume_id).status = "backing-up"  # type: ignore[union-attr]
    service.backups.recover()
    assert show(c, made["id"])["status"] == "available"
    failed = show(c, stuck["id"])
    assert failed["status"] == "error" and "stopped" in failed["fail_reason"]
    assert c.show(volume_id)["status"] == "available"
    assert c.delete(f"/backups/{stuck['id']}").status_code == 202


def test_a_backup_is_answered_before_its_copy_and_restores_likewise(cloud: Cloud) -> None:
    # both job workers held busy: the answer comes at once, the job waits its turn
    c = tenant(cloud)
    volume_id = c.create()["id"]
    jobs = cloud.platform.volume.shared.jobs
    release = threading.Event()
    for _ in range(WORKERS):
        jobs.submit(release.wait, 60)
    try:
        response = c.post("/backups", {"backup": {"volume_id": volume_id}})
        assert response.status_code == 202, response.text
        backup_id = response.json()["backup"]["id"]
        assert show(c, backup_id)["status"] == "creating"
        assert c.show(volume_id)["status"] == "backing-up"
    finally:
        release.set()
    assert settle(c, backup_id)["status"] == "available"
    assert c.show(volume_id)["status"] == "available"

    release.clear()
    for _ in range(WORKERS):
        jobs.submit(release.wait, 60)
    try:
        restored = c.post(f"/backups/{backup_id}/restore", {"restore": {}})
        assert restored.status_code == 202, restored.text
        target = restored.json()["restore"]["volume_id"]
        assert show(c, backup_id)["status"] == "restoring"
        assert c.show(target)["status"] == "restoring-backup"
    finally:
        release.set()
    settle(c, backup_id)
    assert c.show(target)["status"] == "available"
