"""Volumes on real guests: the `openstack` CLI attaches, the guest writes, another guest reads.

Each guest runs a watcher from its user-data: whenever a disk appears at
/dev/vdc it prints what it holds (md5 of its first MiB), its serial and size,
and the writer guest fills it with a known pattern first. The console tells
what each guest really saw.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import openstack.connection
import pytest

from tests.e2e.conftest import Cloud, CloudFactory, Tenant, unique
from tests.e2e.test_compute import create, tiny_id, wait_console, wait_status
from tests.host_cleanup import kill_guests

PATTERN = b"souverain-volume-pattern\n"
PATTERN_MIB = (PATTERN * (1024 * 1024 // len(PATTERN) + 1))[: 1024 * 1024]
PATTERN_MD5 = hashlib.md5(PATTERN_MIB).hexdigest()

WATCHER = """#!/bin/sh
( while true; do
    while [ ! -b /dev/vdc ]; do sleep 1; done
    {write}
    echo "seen md5=$(dd if=/dev/vdc bs=65536 count=16 2>/dev/null | md5sum | cut -d' ' -f1) \
serial=$(cat /sys/block/vdc/serial 2>/dev/null) size=$(cat /sys/block/vdc/size)"
    last=$(cat /sys/block/vdc/size)
    while [ -b /dev/vdc ]; do
        now=$(cat /sys/block/vdc/size 2>/dev/null || echo gone)
        if [ "$now" != "$last" ] && [ "$now" != gone ]; then echo "resized size=$now"; last=$now; fi
        sleep 1
    done
    echo "vdc gone"
  done ) &
"""
WRITE = (
    "if [ ! -f /tmp/written ]; then yes souverain-volume-pattern | head -c 1048576 > /tmp/p; "
    "dd if=/tmp/p of=/dev/vdc bs=65536 conv=fsync 2>/dev/null; sync; touch /tmp/written; "
    "echo wrote; fi"
)


def volume_status(conn: openstack.connection.Connection, volume_id: str) -> str:
    return str(conn.block_storage.get_volume(volume_id).status)


def wait_volume(
    conn: openstack.connection.Connection, volume_id: str, status: str, timeout: float = 60.0
) -> Any:
    deadline = time.monotonic() + timeout
    volume = conn.block_storage.get_volume(volume_id)
    while volume.status != status and time.monotonic() < deadline:
        assert volume.status not in ("error", "error_deleting"), volume
        time.sleep(0.3)
        volume = conn.block_storage.get_volume(volume_id)
    assert volume.status == status, volume
    return volume


@pytest.fixture(scope="module")
def tenant(compute_cloud: Cloud) -> Tenant:
    return compute_cloud.make_tenant("volumes")


@pytest.fixture(scope="module")
def conn(compute_cloud: Cloud, tenant: Tenant) -> openstack.connection.Connection:
    return compute_cloud.connect(tenant.user_name, tenant.password, tenant.project_name)


def test_a_volume_carries_data_from_one_guest_to_another(
    compute_cloud: Cloud, tenant: Tenant, conn: openstack.connection.Connection
) -> None:
    cli = tenant.cloud_name
    writer = create(conn, unique("writer"), WATCHER.format(write=WRITE))
    reader = create(conn, unique("reader"), WATCHER.format(write=":"))
    for server in (writer, reader):
        wait_status(conn, server.id, "ACTIVE")
        wait_console(conn, server.id, "souverain-guest: ready")
    name = unique("data")
    volume = compute_cloud.cli_json("volume", "create", "--size", "1", name, cloud=cli)
    wait_volume(conn, volume["id"], "available")

    compute_cloud.cli_ok("server", "add", "volume", writer.name, name, cloud=cli)
    wait_volume(conn, volume["id"], "in-use")
    out = wait_console(conn, writer.id, "seen md5=")
    assert "wrote" in out
    assert f"seen md5={PATTERN_MD5} serial={volume['id'][:20]} size={2 * 1024 * 1024}" in out
    shown = compute_cloud.cli_json("server", "show", writer.name, cloud=cli)
    assert volume["id"] in str(shown["volumes_attached"])

    compute_cloud.cli_ok("server", "remove", "volume", writer.name, name, cloud=cli)
    wait_volume(conn, volume["id"], "available")
    wait_console(conn, writer.id, "vdc gone")

    compute_cloud.cli_ok("server", "add", "volume", reader.name, name, cloud=cli)
    wait_volume(conn, volume["id"], "in-use")
    out = wait_console(conn, reader.id, "seen md5=")
    assert f"seen md5={PATTERN_MD5}" in out

    # extend while attached: the guest sees the new size without a reboot
    compute_cloud.cli_ok("volume", "set", "--size", "2", name, cloud=cli)
    out = wait_console(conn, reader.id, f"resized size={4 * 1024 * 1024}", timeout=60)

    # an attached volume cannot be deleted, and stays whole
    refused = compute_cloud.cli("volume", "delete", name, cloud=cli)
    assert refused.returncode != 0
    assert volume_status(conn, volume["id"]) == "in-use"

    compute_cloud.cli_ok("server", "remove", "volume", reader.name, name, cloud=cli)
    wait_volume(conn, volume["id"], "available")
    wait_console(conn, reader.id, "vdc gone")  # the guest let go before the next attach

    # snapshot, then a clone from it: the clone holds the same bytes, seen from a guest
    snap = conn.block_storage.create_snapshot(volume_id=volume["id"], name=unique("snap"))
    deadline = time.monotonic() + 60
    while conn.block_storage.get_snapshot(snap.id).status != "available":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    clone = conn.block_storage.create_volume(size=2, snapshot_id=snap.id, name=unique("clone"))
    wait_volume(conn, clone.id, "available")
    before = wait_console(conn, reader.id, "seen md5=").count("seen md5=")
    conn.compute.create_volume_attachment(reader, volume_id=clone.id)
    wait_volume(conn, clone.id, "in-use")
    out = wait_console(conn, reader.id, "seen md5=", count=before + 1)
    assert out.rsplit("seen md5=", 1)[1].startswith(PATTERN_MD5)

    # deleting the server frees the clone; another project never sees either volume
    other = compute_cloud.make_tenant("volumes-other")
    theirs = compute_cloud.connect(other.user_name, other.password, other.project_name)
    assert volume["id"] not in [v.id for v in theirs.block_storage.volumes()]
    token = compute_cloud.token_for(other)
    assert (
        compute_cloud.api("GET", f"/volume/v3/volumes/{volume['id']}", token=token).status_code
        == 404
    )
    their_server = create(theirs, unique("thief"))
    wait_status(theirs, their_server.id, "ACTIVE")
    stolen = compute_cloud.api(
        "POST",
        f"/compute/v2.1/servers/{their_server.id}/os-volume_attachments",
        token=token,
        json={"volumeAttachment": {"volumeId": volume["id"]}},
    )
    assert stolen.status_code == 404, stolen.text
    assert volume_status(conn, volume["id"]) == "available"
    for server, owner in ((writer, conn), (reader, conn), (their_server, theirs)):
        owner.compute.delete_server(server)
    for server, owner in ((writer, conn), (reader, conn), (their_server, theirs)):
        owner.compute.wait_for_delete(server, wait=60)
    wait_volume(conn, clone.id, "available")
    # the clone first: on RBD a snapshot with clones is refused ("dependent volumes")
    conn.block_storage.delete_volume(clone.id)
    conn.block_storage.wait_for_delete(clone, wait=60)
    conn.block_storage.delete_snapshot(snap.id)


def test_boot_from_volume(
    compute_cloud: Cloud, tenant: Tenant, conn: openstack.connection.Connection
) -> None:
    cli = tenant.cloud_name
    name = unique("bfv")
    server = compute_cloud.cli_json(
        "server", "create", "--image", "tiny", "--boot-from-volume", "1",
        "--flavor", "t1.nano", "--nic", "none", "--wait", name,
        cloud=cli,
    )  # fmt: skip
    assert server["status"] == "ACTIVE"
    assert server["image"] in ("", "N/A (booted from volume)", None) or "volume" in str(
        server["image"]
    )
    out = wait_console(conn, server["id"], "souverain-guest: ready")
    assert f"souverain-guest: disk=/dev/vda size={1024**3}" in out
    (attached,) = conn.compute.get_server(server["id"]).attached_volumes
    root = wait_volume(conn, attached["id"], "in-use")
    assert root.is_bootable
    compute_cloud.cli_ok("server", "delete", "--wait", name, cloud=cli)
    # the CLI asks to keep the volume (delete_on_termination false): it is free again
    wait_volume(conn, root.id, "available")

    # an existing bootable volume boots a second server
    again = create(
        conn,
        unique("bfv-again"),
        image="",
        block_device_mapping=[
            {"boot_index": 0, "uuid": root.id, "source_type": "volume",
             "destination_type": "volume", "delete_on_termination": True}
        ],
    )  # fmt: skip
    wait_status(conn, again.id, "ACTIVE")
    wait_console(conn, again.id, "souverain-guest: ready")
    conn.compute.delete_server(again)
    conn.compute.wait_for_delete(again, wait=60)
    deadline = time.monotonic() + 30
    while conn.block_storage.find_volume(root.id) is not None:
        assert time.monotonic() < deadline, "delete_on_termination left the volume"
        time.sleep(0.5)


# text of the tiny image's kernel, plain in the image's bytes: none of it may reach a disk
IMAGE_MARKER = b"This kernel requires the following features not present on the CPU"


def test_boot_from_an_encrypted_volume(
    compute_cloud: Cloud,
    tenant: Tenant,
    conn: openstack.connection.Connection,
    tiny_image_file: Path,
    tmp_path: Path,
) -> None:
    """Nova's 2.67 `volume_type` makes the root volume LUKS; QEMU opens it with the passphrase
    over a pipe, the guest boots, and the file on disk holds none of the image's plaintext."""
    admin = compute_cloud.admin_token()
    luks = {"provider": "luks", "cipher": "aes-xts-plain64", "key_size": 256,
            "control_location": "front-end"}  # fmt: skip
    made = compute_cloud.api(
        "POST", "/volume/v3/types", token=admin, json={"volume_type": {"name": unique("luks")}}
    )
    assert made.status_code == 200, made.text
    vtype = made.json()["volume_type"]
    added = compute_cloud.api(
        "POST", f"/volume/v3/types/{vtype['id']}/encryption", token=admin,
        json={"encryption": luks},
    )  # fmt: skip
    assert added.status_code == 200, added.text
    token = compute_cloud.token_for(tenant)
    bdm = {"boot_index": 0, "uuid": tiny_id(conn), "source_type": "image",
           "destination_type": "volume", "volume_size": 1, "delete_on_termination": True,
           "volume_type": vtype["name"]}  # fmt: skip
    server = {"name": unique("luks-boot"), "flavorRef": conn.compute.find_flavor("t1.nano").id,
              "networks": "none", "block_device_mapping_v2": [bdm]}  # fmt: skip
    older = compute_cloud.api(
        "POST", "/compute/v2.1/servers", token=token, json={"server": server},
        headers={"OpenStack-API-Version": "compute 2.66"},
    )  # fmt: skip
    assert older.status_code == 400, older.text  # volume_type is unknown before 2.67
    unknown = {**server, "block_device_mapping_v2": [{**bdm, "volume_type": "no-such-type"}]}
    for body in (unknown, {**server, "block_device_mapping_v2": [{**bdm, "volume_type": 7}]}):
        refused = compute_cloud.api(
            "POST", "/compute/v2.1/servers", token=token, json={"server": body},
            headers={"OpenStack-API-Version": "compute 2.67"},
        )  # fmt: skip
        assert refused.status_code == 400, refused.text
    sent = compute_cloud.api(
        "POST", "/compute/v2.1/servers", token=token, json={"server": server},
        headers={"OpenStack-API-Version": "compute 2.67"},
    )  # fmt: skip
    assert sent.status_code == 202, sent.text
    server_id = sent.json()["server"]["id"]
    wait_status(conn, server_id, "ACTIVE")
    wait_console(conn, server_id, "souverain-guest: ready")
    (attached,) = conn.compute.get_server(server_id).attached_volumes
    root = conn.block_storage.get_volume(attached["id"])
    assert root.is_encrypted and root.volume_type == vtype["name"]

    # the image's plaintext is there in its raw bytes, and nowhere in the volume's file
    raw = tmp_path / "tiny.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(tiny_image_file), str(raw)], check=True)
    assert IMAGE_MARKER in raw.read_bytes()
    (volume_file,) = [p for p in compute_cloud.server.data_dir.rglob(f"*{root.id}*") if p.is_file()]
    data = volume_file.read_bytes()
    assert data.startswith(b"QFI\xfb") and IMAGE_MARKER not in data
    conn.compute.delete_server(server_id)
    conn.compute.wait_for_delete(conn.compute.get_server(server_id), wait=60)


def test_restart_during_attach_ends_clean(start_cloud: CloudFactory, tiny_image_file: Path) -> None:
    env = {"SOUVERAIN_IMAGE__TINY_IMAGE": str(tiny_image_file)}
    first = start_cloud("attach-restart", **env)
    data_dir = first.server.data_dir
    try:
        tenant = first.make_tenant("attach")
        conn = first.connect(tenant.user_name, tenant.password, tenant.project_name)
        server = create(conn, unique("guest"), WATCHER.format(write=":"))
        wait_status(conn, server.id, "ACTIVE")
        wait_console(conn, server.id, "souverain-guest: ready")
        volume = conn.block_storage.create_volume(size=1, name=unique("v"))
        wait_volume(conn, volume.id, "available")
        token = first.token_for(tenant)
        threading.Thread(
            target=lambda: first.api(
                "POST",
                f"/compute/v2.1/servers/{server.id}/os-volume_attachments",
                token=token,
                json={"volumeAttachment": {"volumeId": volume.id}},
            ),
            daemon=True,
        ).start()
        time.sleep(0.2)
        assert first.server.proc is not None
        first.server.proc.send_signal(signal.SIGKILL)
        first.server.proc.wait()
        second = Cloud.start(first.workdir, **env)
        conn = second.connect(tenant.user_name, tenant.password, tenant.project_name)
        status = volume_status(conn, volume.id)
        assert status in ("available", "in-use"), status
        console = str(conn.compute.get_server_console_output(server.id)["output"])
        # what the volume says is what the guest has
        seen = "seen md5=" in console and "vdc gone" not in console.rsplit("seen md5=", 1)[1]
        time.sleep(2)
        console = str(conn.compute.get_server_console_output(server.id)["output"])
        seen = "seen md5=" in console and "vdc gone" not in console.rsplit("seen md5=", 1)[1]
        assert seen == (status == "in-use"), (status, console[-500:])
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=60)
        wait_volume(conn, volume.id, "available")
        second.stop_and_check()
    finally:
        kill_guests(data_dir)
