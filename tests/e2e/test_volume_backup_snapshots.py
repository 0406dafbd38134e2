"""A backup of a snapshot through the openstack CLI (`volume backup create --snapshot`):
restoring it gives the snapshot's bytes, not the volume's current ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Cloud, Tenant, unique
from .test_volume_backups import CHUNK, read_hash, settled, write_blocks


@pytest.fixture(scope="module")
def tenant(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("snapbackups")


def test_cli_backup_of_a_snapshot_restores_the_snapshots_bytes(
    cloud: Cloud, tenant: Tenant, tmp_path: Path
) -> None:
    on = {"cloud": tenant.cloud_name}
    vol = unique("svol")
    volume_id = cloud.cli_json("volume", "create", "--size", "1", vol, **on)["id"]
    then = write_blocks(cloud, volume_id, tmp_path, {0: b"then", 3 * CHUNK: b"kept"})
    snap = unique("snap")
    snapshot_id = cloud.cli_json("volume", "snapshot", "create", "--volume", vol, snap, **on)["id"]
    now = write_blocks(cloud, volume_id, tmp_path, {0: b"now"})
    assert now != then

    name = unique("sb")
    cloud.cli_json("volume", "backup", "create", "--snapshot", snap, "--name", name, vol, **on)
    shown = settled(cloud, "backup", name, tenant.cloud_name)
    assert shown["status"] == "available", shown
    assert shown["snapshot_id"] == snapshot_id and shown["volume_id"] == volume_id
    assert cloud.cli_json("volume", "snapshot", "show", snap, **on)["status"] == "available"

    restored_name = unique("rvol")
    cloud.cli_json("volume", "backup", "restore", name, restored_name, **on)
    restored = settled(cloud, "volume", restored_name, tenant.cloud_name)
    assert restored["status"] == "available", restored
    assert read_hash(cloud, restored["id"], tmp_path) == then
    assert read_hash(cloud, volume_id, tmp_path) == now

    # another project's snapshot is not found, and nothing is made
    other = cloud.make_tenant("snapbackups-other")
    other_vol = unique("ovol")
    cloud.cli_json("volume", "create", "--size", "1", other_vol, cloud=other.cloud_name)
    cloud.cli_fails(
        "volume", "backup", "create", "--snapshot", snapshot_id, other_vol, cloud=other.cloud_name
    )
    assert cloud.cli_json("volume", "backup", "list", cloud=other.cloud_name) == []
