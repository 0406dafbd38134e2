"""Backups of snapshots: `snapshot_id` in POST /backups backs up the snapshot's bytes (not
the volume's current ones), leaves the volume alone, holds the snapshot `backing-up` while
it runs; bad or foreign snapshots are refused and leave nothing behind."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import update

from souverain.volume import models as m

from .support import Cloud
from .test_volume_backups import backup, fill, settle, show
from .test_volumes import Cinder, admin, cinder_error, cloud, raw_hash, tenant, volume_file

__all__ = ["cloud"]


def snapshot_status(cloud: Cloud, snapshot_id: str, status: str) -> None:
    with cloud.platform.volume.shared.db.session() as s:
        s.execute(update(m.Snapshot).where(m.Snapshot.id == snapshot_id).values(status=status))


def test_backup_of_a_snapshot_restores_the_snapshots_bytes(cloud: Cloud, tmp_path: Path) -> None:
    c = tenant(cloud)
    volume_id = c.create(name="data")["id"]
    then = fill(cloud, volume_id, tmp_path, {0: b"then"})
    snap = c.snapshot(volume_id)
    assert c.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "available"
    now = fill(cloud, volume_id, tmp_path, {0: b"now"})
    assert now != then

    made = backup(c, volume_id, snapshot_id=snap["id"], name="from-snap")
    assert made["status"] == "available", made
    assert made["snapshot_id"] == snap["id"] and made["volume_id"] == volume_id
    assert made["is_incremental"] is False and made["size"] == 1
    snap_seen = c.get(f"/snapshots/{snap['id']}").json()["snapshot"]
    assert snap_seen["status"] == "available"
    assert c.show(volume_id)["status"] == "available"

    restored = c.post(f"/backups/{made['id']}/restore", {"restore": {"name": "back"}})
    assert restored.status_code == 202, restored.text
    settle(c, made["id"])
    target = restored.json()["restore"]["volume_id"]
    assert raw_hash(volume_file(cloud, target), tmp_path) == then

    # the volume's own backup has the current bytes: the two differ
    own = backup(c, volume_id)
    assert own["snapshot_id"] is None
    onto = c.post(f"/backups/{own['id']}/restore", {"restore": {"volume_id": target}})
    assert onto.status_code == 202, onto.text
    settle(c, own["id"])
    assert raw_hash(volume_file(cloud, target), tmp_path) == now


def test_incremental_backup_of_a_snapshot_builds_on_an_older_backup(
    cloud: Cloud, tmp_path: Path
) -> None:
    c = tenant(cloud)
    volume_id = c.create()["id"]
    fill(cloud, volume_id, tmp_path, {0: b"one"})
    full = backup(c, volume_id)
    snap = c.snapshot(volume_id)
    # a backup newer than the snapshot is not its parent: its data is later than the snapshot's
    later = backup(c, volume_id)
    incr = backup(c, volume_id, snapshot_id=snap["id"], incremental=True)
    assert incr["is_incremental"] is True
    assert show(c, full["id"])["has_dependent_backups"] is True
    assert show(c, later["id"])["has_dependent_backups"] is False
    assert (
        incr["data_timestamp"] == c.get(f"/snapshots/{snap['id']}").json()["snapshot"]["created_at"]
    )


def test_a_snapshot_of_an_attached_volume_backs_up_without_force(cloud: Cloud) -> None:
    c = tenant(cloud)
    volume_id = c.create()["id"]
    snap = c.snapshot(volume_id)
    server_id = str(uuid.uuid4())
    cloud.platform.volume.reserve(c.ctx(), volume_id, server_id)
    cloud.platform.volume.attached(volume_id, server_id, "/dev/vdb", "att")
    cinder_error(c.post("/backups", {"backup": {"volume_id": volume_id}}), 400)
    made = backup(c, volume_id, snapshot_id=snap["id"])
    assert made["status"] == "available"
    assert c.show(volume_id)["status"] == "in-use"


def test_bad_snapshots_are_refused_and_leave_nothing_behind(cloud: Cloud) -> None:
    c = tenant(cloud)
    other = tenant(cloud)
    volume_id = c.create()["id"]
    second = c.create()["id"]
    snap = c.snapshot(volume_id)
    theirs = other.snapshot(other.create()["id"])

    def refused(snapshot_id: object, status: int, on: str = volume_id) -> str:
        body = {"backup": {"volume_id": on, "snapshot_id": snapshot_id}}
        return cinder_error(c.post("/backups", body), status)

    assert "snapshot_id" in refused("not-a-uuid", 400)
    refused(5, 400)
    refused(str(uuid.uuid4()), 404)
    refused(theirs["id"], 404)  # another project's snapshot is not found
    assert "not a snapshot of volume" in refused(snap["id"], 400, on=second)
    snapshot_status(cloud, snap["id"], "error")
    assert "must be available" in refused(snap["id"], 400)
    snapshot_status(cloud, snap["id"], "available")
    # the other project cannot back up this project's snapshot through its own volume either
    body = {"backup": {"volume_id": volume_id, "snapshot_id": snap["id"]}}
    cinder_error(other.post("/backups", body), 404)

    assert c.get("/backups").json()["backups"] == []
    assert other.get("/backups").json()["backups"] == []
    assert c.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "available"
    assert c.show(volume_id)["status"] == "available"


def test_a_reader_cannot_back_up_a_snapshot(cloud: Cloud) -> None:
    c = tenant(cloud)
    volume_id = c.create()["id"]
    snap = c.snapshot(volume_id)
    reader = cloud.member(role="reader", project_id=c.project_id)
    r = Cinder(cloud, reader.token, reader.project_id, reader.id)
    body = {"backup": {"volume_id": volume_id, "snapshot_id": snap["id"]}}
    cinder_error(r.post("/backups", body), 403)
    assert c.get("/backups").json()["backups"] == []


def test_a_snapshot_left_backing_up_by_a_stop_is_available_again(cloud: Cloud) -> None:
    c = tenant(cloud)
    snap = c.snapshot(c.create()["id"])
    snapshot_status(cloud, snap["id"], "backing-up")
    # a snapshot being backed up is not deleted from under the copy
    cinder_error(c.delete(f"/snapshots/{snap['id']}"), 400)
    cloud.platform.volume.backups.recover()
    assert c.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "available"


def test_cascade_delete_waits_for_a_snapshot_being_backed_up(cloud: Cloud) -> None:
    c = tenant(cloud)
    volume_id = c.create()["id"]
    snap = c.snapshot(volume_id)
    snapshot_status(cloud, snap["id"], "backing-up")
    message = cinder_error(c.delete(f"/volumes/{volume_id}?cascade=true"), 400)
    assert "backing-up" in message
    assert c.show(volume_id)["status"] == "available"
    assert c.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "backing-up"
    snapshot_status(cloud, snap["id"], "available")
    assert c.delete(f"/volumes/{volume_id}?cascade=true").status_code == 202
    cinder_error(c.get(f"/snapshots/{snap['id']}"), 404)


def test_an_exported_record_keeps_the_snapshot_id(cloud: Cloud) -> None:
    c = tenant(cloud)
    a = admin(cloud)
    volume_id = c.create()["id"]
    snap = c.snapshot(volume_id)
    made = backup(c, volume_id, snapshot_id=snap["id"])
    exported = a.get(f"/backups/{made['id']}/export_record")
    assert exported.status_code == 200, exported.text
    record = exported.json()["backup-record"]
    content = json.loads(base64.b64decode(record["backup_url"]))
    assert content["snapshot_id"] == snap["id"]

    def imported(fields: dict[str, Any]) -> Any:
        url = base64.b64encode(json.dumps({**content, **fields}).encode()).decode()
        body = {"backup-record": {**record, "backup_url": url}}
        return a.post("/backups/import_record", body)

    cinder_error(imported({"id": str(uuid.uuid4()), "snapshot_id": "../etc"}), 400)
    cinder_error(imported({"id": str(uuid.uuid4()), "snapshot_id": 7}), 400)
    done = imported({"id": str(uuid.uuid4())})
    assert done.status_code == 201, done.text
    assert show(a, done.json()["backup"]["id"])["snapshot_id"] == snap["id"]
