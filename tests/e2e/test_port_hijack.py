"""Another project cannot plug its port into your server: with the real `openstack` CLI,
project B names A's server as the device of a port on B's network; the port is refused
when it claims compute's owner and ignored when it does not, and A's server, hard
rebooted (its NICs rebuilt from its ports), has no NIC on B's network.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.e2e.conftest import Cloud, unique
from tests.e2e.test_compute import create, wait_console, wait_status
from tests.host_cleanup import qemu_processes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="bridges, taps and network namespaces need root"
)


def _qemu_of(cloud: Cloud, server_id: str) -> dict[int, str]:
    return {p: c for p, c in qemu_processes(cloud.server.data_dir).items() if server_id in c}


def _network(cloud: Cloud, cli: str, cidr: str) -> dict[str, str]:
    net: dict[str, str] = cloud.cli_json("network", "create", unique("net"), cloud=cli)
    cloud.cli_ok(
        "subnet", "create", "--network", net["id"], "--subnet-range", cidr, unique("sub"),
        cloud=cli,
    )  # fmt: skip
    return net


def test_another_projects_port_never_becomes_a_nic_of_the_server(
    compute_cloud: Cloud,
) -> None:
    victim = compute_cloud.make_tenant("hijack-victim")
    thief = compute_cloud.make_tenant("hijack-thief")
    conn = compute_cloud.connect(victim.user_name, victim.password, victim.project_name)
    own = _network(compute_cloud, victim.cloud_name, "10.71.0.0/24")
    theirs = _network(compute_cloud, thief.cloud_name, "10.72.0.0/24")
    server = create(conn, unique("victim"), networks=[{"uuid": own["id"]}])
    wait_status(conn, server.id, "ACTIVE")
    wait_console(conn, server.id, "souverain-guest: ready")

    refused = compute_cloud.cli_fails(
        "port", "create", "--network", theirs["id"], "--device", server.id,
        "--device-owner", "compute:nova", unique("hijack"), cloud=thief.cloud_name,
    )  # fmt: skip
    assert "403" in refused, refused
    assert "disallowed by policy" in refused, refused
    # without compute's owner the device id is the thief's own free text: allowed, ignored
    free = compute_cloud.cli_json(
        "port", "create", "--network", theirs["id"], "--device", server.id, unique("free"),
        cloud=thief.cloud_name,
    )  # fmt: skip
    assert free["device_id"] == server.id and free["device_owner"] in ("", None)

    (before,) = _qemu_of(compute_cloud, server.id)
    compute_cloud.cli_ok("server", "reboot", "--hard", server.id, cloud=victim.cloud_name)
    deadline = time.monotonic() + 90
    while set(_qemu_of(compute_cloud, server.id)) in (set(), {before}):
        assert time.monotonic() < deadline, "the guest was not started again"
        time.sleep(0.3)
    wait_status(conn, server.id, "ACTIVE")
    wait_console(conn, server.id, "souverain-guest: ready", count=2)

    shown = compute_cloud.cli_json("server", "show", server.id, cloud=victim.cloud_name)
    assert theirs["name"] not in str(shown["addresses"]), shown["addresses"]
    assert own["name"] in str(shown["addresses"]), shown["addresses"]
    listed = compute_cloud.cli_json("port", "list", "--server", server.id, cloud=victim.cloud_name)
    (mine,) = listed
    assert mine["ID"] != free["id"]
    # the admin sees both ports naming the server as device; only the victim's is plugged
    everyone = compute_cloud.cli_json("port", "list", "--server", server.id)
    assert {p["ID"] for p in everyone} == {mine["ID"], free["id"]}
    (cmdline,) = _qemu_of(compute_cloud, server.id).values()
    assert cmdline.count("virtio-net-pci") == 1, cmdline
    assert f"mac={mine['MAC Address']}" in cmdline
    assert f"mac={free['mac_address']}" not in cmdline
    assert (
        compute_cloud.cli_json("port", "show", free["id"], cloud=thief.cloud_name)["status"]
        == "DOWN"
    )

    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)
    # the victim's server going does not touch the thief's port either
    kept = compute_cloud.cli_json("port", "show", free["id"], cloud=thief.cloud_name)
    assert kept["device_id"] == server.id
    compute_cloud.cli_ok("port", "delete", free["id"], cloud=thief.cloud_name)
    compute_cloud.cli_ok("network", "delete", theirs["id"], cloud=thief.cloud_name)
    compute_cloud.cli_ok("network", "delete", own["id"], cloud=victim.cloud_name)
