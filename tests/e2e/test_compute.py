"""Servers end to end: real QEMU guests driven by the `openstack` CLI and openstacksdk.

Every check that can be made from inside the guest is: the tiny guest prints
markers on its serial console (booted, hostname, user-data exit code), and
its user-data scripts print what they see, so `console log show` tells what
really happened in the machine.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import openstack.connection
import pytest

from tests.e2e.conftest import Cloud, Tenant, unique
from tests.host_cleanup import qemu_processes

BOOT_TIMEOUT = 120.0
BOOTED = "souverain-guest: booted"


def wait_status(
    conn: openstack.connection.Connection, server_id: str, status: str, timeout: float = 90.0
) -> Any:
    deadline = time.monotonic() + timeout
    server = None
    while time.monotonic() < deadline:
        server = conn.compute.get_server(server_id)
        if server.status == status:
            return server
        if server.status == "ERROR" and status != "ERROR":
            pytest.fail(f"server {server_id} went to ERROR: {server.fault}")
        time.sleep(0.3)
    pytest.fail(f"server {server_id} is {server.status if server else None}, not {status}")


def console(conn: openstack.connection.Connection, server_id: str) -> str:
    return str(conn.compute.get_server_console_output(server_id)["output"])


def wait_console(
    conn: openstack.connection.Connection,
    server_id: str,
    text: str,
    count: int = 1,
    timeout: float = BOOT_TIMEOUT,
) -> str:
    deadline = time.monotonic() + timeout
    output = ""
    while time.monotonic() < deadline:
        output = console(conn, server_id)
        if output.count(text) >= count:
            return output
        time.sleep(0.5)
    pytest.fail(f"{text!r} x{count} not on the console of {server_id}:\n{output[-3000:]}")


def user_data(script: str) -> str:
    return base64.b64encode(script.encode()).decode()


def tiny_id(conn: openstack.connection.Connection) -> str:
    image = conn.image.find_image("tiny", ignore_missing=False)
    return str(image.id)


def create(
    conn: openstack.connection.Connection,
    name: str,
    script: str | None = None,
    flavor: str = "t1.nano",
    image: str | None = None,
    **extra: Any,
) -> Any:
    flavor_id = conn.compute.find_flavor(flavor, ignore_missing=False).id
    args: dict[str, Any] = {
        "name": name,
        "image_id": image or tiny_id(conn),
        "flavor_id": flavor_id,
        "networks": "none",
        **extra,
    }
    if script is not None:
        args["user_data"] = user_data(script)
    return conn.compute.create_server(**args)


@pytest.fixture(scope="module")
def tenant(compute_cloud: Cloud) -> Tenant:
    return compute_cloud.make_tenant("compute")


@pytest.fixture(scope="module")
def conn(compute_cloud: Cloud, tenant: Tenant) -> openstack.connection.Connection:
    return compute_cloud.connect(tenant.user_name, tenant.password, tenant.project_name)


def test_cli_creates_a_server_that_runs_its_user_data(
    compute_cloud: Cloud, tenant: Tenant, tmp_path: Path
) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hello-from-user-data $(hostname)\nexit 0\n")
    cloud = tenant.cloud_name
    compute_cloud.cli_ok("keypair", "create", "k1", cloud=cloud)
    name = unique("cli")
    created = compute_cloud.cli_json(
        "server", "create", "--image", "tiny", "--flavor", "t1.nano", "--key-name", "k1",
        "--user-data", str(script), "--nic", "none", "--wait", name,
        cloud=cloud,
    )  # fmt: skip
    assert created["status"] == "ACTIVE"
    assert created["key_name"] == "k1"
    deadline = time.monotonic() + BOOT_TIMEOUT
    log = ""
    while time.monotonic() < deadline:
        log = compute_cloud.cli_ok("console", "log", "show", name, cloud=cloud)
        if "user-data exit=" in log:
            break
        time.sleep(1)
    assert BOOTED in log
    assert f"souverain-guest: hostname={name}" in log
    assert f"hello-from-user-data {name}" in log
    assert "souverain-guest: user-data exit=0" in log
    listed = compute_cloud.cli_json("server", "list", cloud=cloud)
    assert name in [s["Name"] for s in listed]
    compute_cloud.cli_ok("server", "delete", "--wait", name, cloud=cloud)
    assert name not in [s["Name"] for s in compute_cloud.cli_json("server", "list", cloud=cloud)]


def test_lifecycle_seen_from_the_guest(
    compute_cloud: Cloud, conn: openstack.connection.Connection
) -> None:
    script = "#!/bin/sh\necho boot-at $(cat /proc/uptime)\nexit 7\n"
    server = create(conn, unique("life"), script)
    server = wait_status(conn, server.id, "ACTIVE")
    assert server.vm_state == "active" and server.power_state == 1
    wait_console(conn, server.id, "souverain-guest: user-data exit=7")

    conn.compute.stop_server(server)
    wait_status(conn, server.id, "SHUTOFF")
    assert "souverain-guest: powering off" in console(conn, server.id)
    conn.compute.start_server(server)
    wait_status(conn, server.id, "ACTIVE")
    wait_console(conn, server.id, "user-data exit=7", count=2)

    conn.compute.reboot_server(server, "SOFT")
    wait_status(conn, server.id, "ACTIVE")
    wait_console(conn, server.id, "user-data exit=7", count=3)
    conn.compute.reboot_server(server, "HARD")
    wait_status(conn, server.id, "ACTIVE")
    wait_console(conn, server.id, "user-data exit=7", count=4)

    conn.compute.pause_server(server)
    paused = wait_status(conn, server.id, "PAUSED")
    assert paused.power_state == 3
    conn.compute.unpause_server(server)
    wait_status(conn, server.id, "ACTIVE")

    conn.compute.suspend_server(server)
    wait_status(conn, server.id, "SUSPENDED")
    assert not [
        p for p, c in qemu_processes(compute_cloud.server.data_dir).items() if server.id in c
    ]
    conn.compute.resume_server(server)
    wait_status(conn, server.id, "ACTIVE")
    assert [p for p, c in qemu_processes(compute_cloud.server.data_dir).items() if server.id in c]

    actions = [a.action for a in conn.compute.server_actions(server)]
    for expected in ("create", "stop", "start", "reboot", "pause", "unpause", "suspend", "resume"):
        assert expected in actions

    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)
    assert not [
        p for p, c in qemu_processes(compute_cloud.server.data_dir).items() if server.id in c
    ]
    assert not (compute_cloud.server.data_dir / "compute" / "instances" / server.id).exists()


def test_snapshot_boots_and_keeps_what_the_guest_wrote(
    compute_cloud: Cloud, conn: openstack.connection.Connection
) -> None:
    script = (
        "#!/bin/sh\n"
        "if [ -f /mnt/root-disk/mark ]; then echo found-mark $(cat /mnt/root-disk/mark); "
        "else echo written-$(hostname) > /mnt/root-disk/mark; sync; echo wrote-mark; fi\n"
    )
    server = create(conn, unique("snap"), script)
    wait_status(conn, server.id, "ACTIVE")
    wait_console(conn, server.id, "wrote-mark")
    image_id = conn.compute.create_server_image(server, unique("snapshot"), wait=False)
    image_id = getattr(image_id, "id", image_id)
    deadline = time.monotonic() + 120
    image = conn.image.get_image(image_id)
    while image.status != "active" and time.monotonic() < deadline:
        assert image.status in ("queued", "saving"), image.status
        time.sleep(0.5)
        image = conn.image.get_image(image_id)
    assert image.status == "active"
    assert image.disk_format == "qcow2"
    wait_status(conn, server.id, "ACTIVE")
    clone = create(conn, unique("from-snap"), script, image=image.id)
    wait_status(conn, clone.id, "ACTIVE")
    output = wait_console(conn, clone.id, "found-mark")
    assert f"found-mark written-{server.name}" in output
    for s in (server, clone):
        conn.compute.delete_server(s)
    for s in (server, clone):
        conn.compute.wait_for_delete(s, wait=60)


def test_rebuild_and_resize(compute_cloud: Cloud, conn: openstack.connection.Connection) -> None:
    bigger = compute_cloud.admin.compute.create_flavor(
        name=unique("t1.bigger"), ram=192, vcpus=1, disk=2
    )
    server = create(conn, unique("resize"), "#!/bin/sh\necho first-image\n")
    wait_status(conn, server.id, "ACTIVE")
    out = wait_console(conn, server.id, "souverain-guest: disk=")
    assert f"size={1024**3}" in out

    conn.compute.rebuild_server(server, image=tiny_id(conn), name=server.name)
    wait_status(conn, server.id, "ACTIVE")
    wait_console(conn, server.id, BOOTED, count=1)

    conn.compute.resize_server(server, bigger.id)
    resized = wait_status(conn, server.id, "VERIFY_RESIZE")
    assert resized.flavor["original_name"] == bigger.name
    out = wait_console(conn, server.id, f"size={2 * 1024**3}")
    conn.compute.revert_server_resize(server)
    reverted = wait_status(conn, server.id, "ACTIVE")
    assert reverted.flavor["original_name"] == "t1.nano"

    conn.compute.resize_server(server, bigger.id)
    wait_status(conn, server.id, "VERIFY_RESIZE")
    conn.compute.confirm_server_resize(server)
    confirmed = wait_status(conn, server.id, "ACTIVE")
    assert confirmed.flavor["ram"] == 192
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)


def test_bad_requests_leave_nothing(
    compute_cloud: Cloud, conn: openstack.connection.Connection, tenant: Tenant
) -> None:
    token = compute_cloud.token_for(tenant)
    image = tiny_id(conn)

    def post(server: dict[str, Any]) -> Any:
        body = {"server": {"name": "bad", "imageRef": image, "flavorRef": "1", "networks": "none"}}
        body["server"].update(server)
        return compute_cloud.api(
            "POST",
            "/compute/v2.1/servers",
            token=token,
            json=body,
            headers={"OpenStack-API-Version": "compute 2.74"},
        )

    before = len(list(conn.compute.servers()))
    cases = {
        "imageRef": {"imageRef": "0" * 32},
        "flavorRef": {"flavorRef": "no-such-flavor"},
        "key_name": {"key_name": "no-such-key"},
        "user_data": {"user_data": "!!not base64!!"},
        "too long": {"user_data": base64.b64encode(b"x" * 65536).decode()},
        "name": {"name": ""},
        "metadata": {"metadata": {"k": 1}},
        "zone": {"availability_zone": "elsewhere"},
    }
    for label, change in cases.items():
        response = post(change)
        assert response.status_code == 400, (label, response.text)
        assert "badRequest" in response.json(), label
    assert len(list(conn.compute.servers())) == before
    missing = compute_cloud.api("GET", "/compute/v2.1/servers/" + "0" * 36, token=token)
    assert missing.status_code == 404 and "itemNotFound" in missing.json()
    too_new = compute_cloud.api(
        "GET",
        "/compute/v2.1/servers",
        token=token,
        headers={"OpenStack-API-Version": "compute 2.999"},
    )
    assert too_new.status_code == 406


def test_another_project_sees_nothing(
    compute_cloud: Cloud, conn: openstack.connection.Connection
) -> None:
    other = compute_cloud.make_tenant("compute-other")
    theirs = compute_cloud.connect(other.user_name, other.password, other.project_name)
    conn.compute.create_keypair(name="mine")
    server = create(conn, unique("private"), key_name="mine")
    wait_status(conn, server.id, "ACTIVE")
    token = compute_cloud.token_for(other)
    assert server.id not in [s.id for s in theirs.compute.servers()]
    for method, path, body in (
        ("GET", f"/compute/v2.1/servers/{server.id}", None),
        ("PUT", f"/compute/v2.1/servers/{server.id}", {"server": {"name": "x"}}),
        ("DELETE", f"/compute/v2.1/servers/{server.id}", None),
        ("POST", f"/compute/v2.1/servers/{server.id}/action", {"os-stop": None}),
        ("POST", f"/compute/v2.1/servers/{server.id}/action", {"os-getConsoleOutput": {}}),
        ("GET", f"/compute/v2.1/servers/{server.id}/metadata", None),
        ("GET", f"/compute/v2.1/servers/{server.id}/os-instance-actions", None),
    ):
        response = compute_cloud.api(method, path, token=token, json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert "mine" not in [k.name for k in theirs.compute.keypairs()]
    keyed = compute_cloud.api(
        "POST",
        "/compute/v2.1/servers",
        token=token,
        json={
            "server": {
                "name": "x",
                "imageRef": tiny_id(conn),
                "flavorRef": "1",
                "key_name": "mine",
                "networks": "none",
            }
        },
    )
    assert keyed.status_code == 400
    listed = compute_cloud.api(
        "GET", "/compute/v2.1/servers/detail?all_tenants=1", token=token
    ).json()
    assert server.id not in [s["id"] for s in listed["servers"]]
    assert server.id in [s.id for s in compute_cloud.admin.compute.servers(all_projects=True)]
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)


def test_delete_during_build_leaves_nothing(
    compute_cloud: Cloud, conn: openstack.connection.Connection
) -> None:
    server = create(conn, unique("hasty"))
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)
    time.sleep(1)
    assert not [
        p for p, c in qemu_processes(compute_cloud.server.data_dir).items() if server.id in c
    ]
    assert not (compute_cloud.server.data_dir / "compute" / "instances" / server.id).exists()


def test_flavors_and_keypairs(
    compute_cloud: Cloud, conn: openstack.connection.Connection, tenant: Tenant
) -> None:
    names = {f.name for f in conn.compute.flavors()}
    assert {"t1.nano", "m1.small", "m1.medium"} <= names
    nano = conn.compute.find_flavor("t1.nano", ignore_missing=False)
    assert (nano.vcpus, nano.ram, nano.disk) == (1, 128, 1)
    admin = compute_cloud.admin
    private = admin.compute.create_flavor(
        name=unique("private"), ram=64, vcpus=1, disk=1, is_public=False
    )
    assert private.name not in {f.name for f in conn.compute.flavors()}
    admin.compute.flavor_add_tenant_access(private, tenant.project_id)
    assert private.name in {f.name for f in conn.compute.flavors()}
    admin.compute.create_flavor_extra_specs(private, {"hw:cpu_policy": "shared"})
    assert admin.compute.fetch_flavor_extra_specs(private).extra_specs == {
        "hw:cpu_policy": "shared"
    }
    refused = compute_cloud.api(
        "POST",
        "/compute/v2.1/flavors",
        token=compute_cloud.token_for(tenant),
        json={"flavor": {"name": "nope", "ram": 1, "vcpus": 1, "disk": 1}},
    )
    assert refused.status_code == 403
    generated = conn.compute.create_keypair(name=unique("gen"))
    assert generated.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    imported = conn.compute.create_keypair(name=unique("imp"), public_key=generated.public_key)
    assert imported.fingerprint == generated.fingerprint
    bad = compute_cloud.api(
        "POST",
        "/compute/v2.1/os-keypairs",
        token=compute_cloud.token_for(tenant),
        json={"keypair": {"name": "bad", "public_key": "ssh-rsa not-a-key"}},
    )
    assert bad.status_code == 400
    admin.compute.delete_flavor(private)


def test_microversions_and_discovery(compute_cloud: Cloud) -> None:
    root = compute_cloud.api("GET", "/compute/").json()
    legacy, version = root["versions"]  # Nova lists v2.0 first, then v2.1
    assert legacy["id"] == "v2.0" and legacy["status"] == "SUPPORTED"
    assert version["id"] == "v2.1" and version["min_version"] == "2.1"
    assert json.loads(json.dumps(version))["status"] == "CURRENT"
