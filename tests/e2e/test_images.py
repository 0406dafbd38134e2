"""The image service as customers reach it: the openstack CLI and openstacksdk, real server."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import openstack.exceptions
import pytest

from .conftest import Cloud, CloudFactory, Tenant, unique

VIRTUAL_SIZE = 20 * 1024 * 1024


def make_qcow2(folder: Path, name: str) -> Path:
    """A 20 MiB qcow2 holding some data: random runs converted from a raw file by qemu-img."""
    raw = folder / f"{name}.raw"
    with raw.open("wb") as handle:
        handle.truncate(VIRTUAL_SIZE)
        for offset in (0, 5 * 1024 * 1024, 17 * 1024 * 1024):
            handle.seek(offset)
            handle.write(os.urandom(1024 * 1024))
    out = folder / f"{name}.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
        check=True,
        capture_output=True,
    )
    raw.unlink()
    return out


@pytest.fixture(scope="module")
def tenant(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("images")


def test_openstack_cli_image_lifecycle(cloud: Cloud, tenant: Tenant, tmp_path: Path) -> None:
    disk = make_qcow2(tmp_path, "cli")
    data = disk.read_bytes()
    name = unique("cli-image")
    created = cloud.cli_json(
        "image",
        "create",
        "--file",
        str(disk),
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        name,
        cloud=tenant.cloud_name,
    )
    assert created["status"] == "active", created
    assert created["checksum"] == hashlib.md5(data).hexdigest()
    image_id = created["id"]

    cloud.cli_ok("image", "set", "--property", "os_distro=tiny", name, cloud=tenant.cloud_name)
    shown = cloud.cli_json("image", "show", name, cloud=tenant.cloud_name)
    assert shown["id"] == image_id and shown["size"] == len(data)
    assert shown["virtual_size"] == VIRTUAL_SIZE
    assert shown["disk_format"] == "qcow2" and shown["owner"] == tenant.project_id
    assert shown["properties"]["os_distro"] == "tiny"

    listed = cloud.cli_json("image", "list", cloud=tenant.cloud_name)
    assert name in [row["Name"] for row in listed]

    saved = tmp_path / "saved.qcow2"
    cloud.cli_ok("image", "save", "--file", str(saved), name, cloud=tenant.cloud_name)
    assert saved.read_bytes() == data

    cloud.cli_ok("image", "delete", name, cloud=tenant.cloud_name)
    conn = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    assert conn.image.find_image(image_id) is None


def test_openstacksdk_upload_download_and_tenancy(
    cloud: Cloud, tenant: Tenant, tmp_path: Path
) -> None:
    disk = make_qcow2(tmp_path, "sdk")
    data = disk.read_bytes()
    conn = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    image = conn.image.create_image(
        name=unique("sdk-image"),
        data=data,
        disk_format="qcow2",
        container_format="bare",
        visibility="private",
        wait=True,
    )
    image = conn.image.get_image(image.id)
    assert image.status == "active"
    assert image.size == len(data) and image.virtual_size == VIRTUAL_SIZE
    assert image.hash_algo == "sha512"
    assert image.hash_value == hashlib.sha512(data).hexdigest()
    downloaded = conn.image.download_image(image)
    assert downloaded.content == data
    small = conn.image.create_image(
        name=unique("sdk-raw"), data=b"raw bytes" * 100, disk_format="raw", container_format="bare"
    )
    paged = [i.id for i in conn.image.images(limit=1)]  # follows Glance's relative next links
    assert sorted(paged) == sorted([image.id, small.id])
    conn.image.delete_image(small)

    other = cloud.make_tenant("images-other")
    other_conn = cloud.connect(other.user_name, other.password, other.project_name)
    with pytest.raises(openstack.exceptions.NotFoundException):
        other_conn.image.get_image(image.id)
    assert image.id not in [i.id for i in other_conn.image.images()]

    conn.image.delete_image(image)
    assert conn.image.find_image(image.id) is None


def test_operator_tiny_image_is_public_at_start(start_cloud: CloudFactory, tmp_path: Path) -> None:
    disk = make_qcow2(tmp_path, "tiny")
    cloud = start_cloud("tiny-image", SOUVERAIN_IMAGE__TINY_IMAGE=str(disk))
    try:
        customer = cloud.make_tenant("tiny-user")
        conn = cloud.connect(customer.user_name, customer.password, customer.project_name)
        tiny = [i for i in conn.image.images() if i.name == "tiny"]
        assert len(tiny) == 1 and tiny[0].visibility == "public" and tiny[0].status == "active"
        assert conn.image.download_image(tiny[0]).content == disk.read_bytes()
    finally:
        cloud.stop_and_check()
