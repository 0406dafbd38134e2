"""The block storage service as customers reach it: the openstack CLI and openstacksdk."""

from __future__ import annotations

import os
import time

import openstack.exceptions
import pytest

from .conftest import Cloud, Tenant, unique

GIB = 1024**3


@pytest.fixture(scope="module")
def tenant(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("volumes")


def test_openstack_cli_volume_lifecycle(cloud: Cloud, tenant: Tenant) -> None:
    on = {"cloud": tenant.cloud_name}
    name = unique("cli-vol")
    created = cloud.cli_json("volume", "create", "--size", "1", "--property", "a=1", name, **on)
    assert created["status"] == "available" and created["size"] == 1, created
    volume_id = created["id"]

    cloud.cli_ok("volume", "set", "--property", "tier=gold", "--size", "2", name, **on)
    shown = cloud.cli_json("volume", "show", name, **on)
    assert shown["id"] == volume_id and shown["size"] == 2
    assert shown["properties"] == {"a": "1", "tier": "gold"}
    listed = cloud.cli_json("volume", "list", **on)
    assert [row["Name"] for row in listed] == [name]

    snap_name = unique("cli-snap")
    snap = cloud.cli_json("volume", "snapshot", "create", "--volume", name, snap_name, **on)
    assert snap["status"] == "available" and snap["volume_id"] == volume_id

    from_snap = cloud.cli_json(
        "volume", "create", "--snapshot", snap_name, unique("from-snap"), **on
    )
    clone = cloud.cli_json("volume", "create", "--source", name, unique("clone"), **on)
    assert from_snap["status"] == "available" and from_snap["size"] == 2
    assert clone["status"] == "available" and clone["source_volid"] == volume_id

    cloud.cli_ok("volume", "snapshot", "delete", snap_name, **on)
    cloud.cli_ok("volume", "delete", name, from_snap["id"], clone["id"], **on)
    assert cloud.cli_json("volume", "list", **on) == []


def test_openstacksdk_volumes_snapshots_and_tenancy(cloud: Cloud, tenant: Tenant) -> None:
    conn = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    started = time.monotonic()
    big = conn.block_storage.create_volume(size=10, name=unique("big"))
    big = conn.block_storage.wait_for_status(big, "available", interval=0.2, wait=60)
    elapsed = time.monotonic() - started
    path = cloud.data_dir / "volumes" / f"volume-{big.id}.qcow2"
    assert path.stat().st_blocks * 512 < 2 * 1024 * 1024, "a new volume must be thin"
    assert elapsed < 30

    conn.block_storage.set_volume_metadata(big, k="v")
    assert conn.block_storage.get_volume(big).metadata == {"k": "v"}
    snap = conn.block_storage.create_snapshot(volume_id=big.id, name=unique("snap"))
    snap = conn.block_storage.wait_for_status(snap, "available", interval=0.2, wait=60)
    assert [s.id for s in conn.block_storage.snapshots()] == [snap.id]
    limits = conn.block_storage.get_limits()
    assert limits.absolute.total_volumes_used == 1
    assert limits.absolute.total_gigabytes_used == 20

    other = cloud.make_tenant("volumes-other")
    other_conn = cloud.connect(other.user_name, other.password, other.project_name)
    with pytest.raises(openstack.exceptions.NotFoundException):
        other_conn.block_storage.get_volume(big.id)
    assert list(other_conn.block_storage.volumes()) == []

    with pytest.raises(openstack.exceptions.BadRequestException):
        conn.block_storage.delete_volume(big)  # it has a snapshot
    conn.block_storage.delete_snapshot(snap)
    conn.block_storage.delete_volume(big)
    conn.block_storage.wait_for_delete(big, interval=0.2, wait=30)
    assert not os.path.exists(path)


def test_openstack_cli_encrypted_volume_type(cloud: Cloud) -> None:
    """An admin makes a LUKS volume type with the CLI's encryption flags and reads it back
    (its volumes: tests/api/test_volume_encryption, tests/vm/test_encrypted_volume)."""
    type_name = unique("luks")
    cloud.cli_ok(
        "volume", "type", "create", "--encryption-provider", "luks",
        "--encryption-cipher", "aes-xts-plain64", "--encryption-key-size", "256",
        "--encryption-control-location", "front-end", type_name,
    )  # fmt: skip
    shown = cloud.cli_json("volume", "type", "show", "--encryption-type", type_name)
    encryption = shown["encryption"]
    assert encryption["provider"] == "luks" and encryption["cipher"] == "aes-xts-plain64"
    assert encryption["key_size"] == 256 and encryption["control_location"] == "front-end"
    cloud.cli_ok("volume", "type", "delete", type_name)
