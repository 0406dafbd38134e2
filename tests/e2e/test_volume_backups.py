"""Volume backups through the openstack CLI, their chunks seen as objects through boto3."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Cloud, Tenant, unique

MIB = 1024 * 1024
CHUNK = 32 * MIB


@pytest.fixture(scope="module")
def tenant(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("backups")


def volume_path(cloud: Cloud, volume_id: str) -> Path:
    return cloud.data_dir / "volumes" / f"volume-{volume_id}.qcow2"


def write_blocks(cloud: Cloud, volume_id: str, tmp: Path, blocks: dict[int, bytes]) -> str:
    """MiB-long patterns at these offsets of the 1 GiB volume; the sha256 of its bytes."""
    raw = tmp / "pattern.raw"
    with raw.open("wb") as handle:
        handle.truncate(1024 * MIB)
        for offset, seed in blocks.items():
            handle.seek(offset)
            handle.write(hashlib.sha256(seed).digest() * (MIB // 32))
    run = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw)]
    subprocess.run([*run, str(volume_path(cloud, volume_id))], check=True, capture_output=True)
    return read_hash(cloud, volume_id, tmp)


def settled(cloud: Cloud, kind: str, name: str, cloud_name: str) -> dict[str, Any]:
    """`openstack volume backup show` (kind "backup") or `volume show` (kind "volume") once
    the job behind it is done: as in Cinder, backups and restores run after the answer."""
    argv = ("volume", "backup", "show", name) if kind == "backup" else ("volume", "show", name)
    busy = {"creating", "restoring", "restoring-backup"}
    deadline = time.monotonic() + 90
    shown: dict[str, Any] = cloud.cli_json(*argv, cloud=cloud_name)
    while shown["status"] in busy and time.monotonic() < deadline:
        time.sleep(0.5)
        shown = cloud.cli_json(*argv, cloud=cloud_name)
    return shown


def read_hash(cloud: Cloud, volume_id: str, tmp: Path) -> str:
    out = tmp / "read.raw"
    run = ["qemu-img", "convert", "-U", "-O", "raw", str(volume_path(cloud, volume_id))]
    subprocess.run([*run, str(out)], check=True, capture_output=True)
    digest = hashlib.sha256()
    with out.open("rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    out.unlink()
    return digest.hexdigest()


def test_cli_backup_incremental_restore_and_s3_objects(
    cloud: Cloud, tenant: Tenant, tmp_path: Path
) -> None:
    on = {"cloud": tenant.cloud_name}
    vol = unique("bvol")
    volume_id = cloud.cli_json("volume", "create", "--size", "1", vol, **on)["id"]
    first = write_blocks(cloud, volume_id, tmp_path, {0: b"x", 7 * CHUNK: b"y"})

    b1 = unique("b1")
    cloud.cli_json("volume", "backup", "create", "--name", b1, vol, **on)
    shown = settled(cloud, "backup", b1, tenant.cloud_name)
    assert shown["status"] == "available" and shown["is_incremental"] is False, shown
    assert shown["object_count"] == 2 and shown["volume_id"] == volume_id
    bucket = shown["container"]
    assert bucket == f"volumebackups-{tenant.project_id}"

    second = write_blocks(cloud, volume_id, tmp_path, {0: b"x", 7 * CHUNK: b"z"})
    b2 = unique("b2")
    cloud.cli_json("volume", "backup", "create", "--incremental", "--name", b2, vol, **on)
    incr = settled(cloud, "backup", b2, tenant.cloud_name)
    assert incr["status"] == "available" and incr["is_incremental"] is True, incr
    listed = cloud.cli_json("volume", "backup", "list", **on)
    assert sorted(row["Name"] for row in listed) == sorted([b1, b2])

    # the chunks are objects in the project's bucket; the incremental stored fewer bytes
    s3 = cloud.s3(tenant)
    objects = s3.list_objects_v2(Bucket=bucket)["Contents"]
    size_of = {o["Key"]: o["Size"] for o in objects}
    full_keys = [k for k in size_of if f"_backup_{shown['id']}" in k]
    incr_keys = [k for k in size_of if f"_backup_{incr['id']}" in k]
    assert len(full_keys) == 3 and len(incr_keys) == 2
    assert any(k.endswith("_metadata") for k in incr_keys)
    assert sum(size_of[k] for k in incr_keys) < sum(size_of[k] for k in full_keys)

    # restore each to a new volume: the bytes are the ones backed up
    vol2, vol3 = unique("vol2"), unique("vol3")
    cloud.cli_json("volume", "backup", "restore", b1, vol2, **on)
    cloud.cli_json("volume", "backup", "restore", b2, vol3, **on)
    for name, expected in ((vol2, first), (vol3, second)):
        restored = settled(cloud, "volume", name, tenant.cloud_name)
        assert restored["status"] == "available", restored
        assert read_hash(cloud, restored["id"], tmp_path) == expected

    # a backup with an incremental child stays until the child goes
    assert "Incremental backups exist" in cloud.cli_fails("volume", "backup", "delete", b1, **on)
    cloud.cli_ok("volume", "backup", "delete", b2, **on)
    cloud.cli_ok("volume", "backup", "delete", b1, **on)
    assert cloud.cli_json("volume", "backup", "list", **on) == []
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []

    other = cloud.make_tenant("backups-other")
    assert cloud.cli_json("volume", "backup", "list", cloud=other.cloud_name) == []
