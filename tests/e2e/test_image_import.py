"""Interoperable image import as customers reach it: `openstack image create --import`
(glance-direct: stage, then import) and `openstack image task list` against a real server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from .conftest import Cloud, Tenant, unique


@pytest.fixture(scope="module")
def tenant(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("imports")


def test_openstack_cli_image_create_import_stages_then_imports(
    cloud: Cloud, tenant: Tenant, tmp_path: Path
) -> None:
    disk = tmp_path / "disk.raw"
    data = os.urandom(3 * 1024 * 1024 + 17)
    disk.write_bytes(data)
    name = unique("imported")
    created = cloud.cli_json(
        "image",
        "create",
        "--import",
        "--file",
        str(disk),
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        name,
        cloud=tenant.cloud_name,
    )
    image_id = created["id"]
    shown = cloud.cli_json("image", "show", image_id, cloud=tenant.cloud_name)
    assert shown["status"] == "active", shown
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    saved = tmp_path / "saved.raw"
    cloud.cli_ok("image", "save", "--file", str(saved), image_id, cloud=tenant.cloud_name)
    assert saved.read_bytes() == data

    conn = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    # a listing shows Glance's short form (no input); each task's own page has it
    shown_tasks = [conn.image.get_task(t.id) for t in conn.image.tasks()]
    tasks = [t for t in shown_tasks if (t.input or {}).get("image_id") == image_id]
    assert [t.status for t in tasks] == ["success"]
    assert conn.image.get_task(tasks[0].id).result == {"image_id": image_id}


def test_openstack_cli_image_import_web_download_from_this_clouds_swift(
    cloud: Cloud, tenant: Tenant, tmp_path: Path
) -> None:
    disk = tmp_path / "disk.raw"
    data = os.urandom(2 * 1024 * 1024 + 5)
    disk.write_bytes(data)
    container = unique("webdl")
    cloud.cli_ok("container", "create", container, cloud=tenant.cloud_name)
    cloud.cli_ok(
        "object", "create", "--name", "disk.raw", container, str(disk), cloud=tenant.cloud_name
    )
    uri = f"{cloud.base_url}/object-storage/v1/AUTH_{tenant.project_id}/{container}/disk.raw"
    # `openstack image create` without --file uploads its (empty) stdin: the image record
    # is made with openstacksdk, queued, as web-download wants it
    conn = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    made = conn.image.create_image(unique("downloaded"), disk_format="raw", container_format="bare")
    image_id = made.id
    before = cloud.cli_json("image", "show", image_id, cloud=tenant.cloud_name)
    assert before["status"] == "queued", before
    cloud.cli_ok(
        "image",
        "import",
        "--method",
        "web-download",
        "--uri",
        uri,
        image_id,
        cloud=tenant.cloud_name,
    )
    shown = cloud.cli_json("image", "show", image_id, cloud=tenant.cloud_name)
    assert shown["status"] == "active", shown
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    saved = tmp_path / "saved.raw"
    cloud.cli_ok("image", "save", "--file", str(saved), image_id, cloud=tenant.cloud_name)
    assert saved.read_bytes() == data
