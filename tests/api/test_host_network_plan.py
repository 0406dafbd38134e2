"""The network part of a host agent's assignment with overlay vxlan (network/host_plan.py
through compute's internal API): each host gets its own ports, its segments and its firewall
input, and nothing of other hosts' ports beyond the MACs of its own networks and the member
IPs its rules name (node authorization). A change elsewhere that alters a host's plan alters
its digest, and waking the host bumps its revision."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from souverain import server
from souverain.common.clock import Clock
from souverain.compute.agents import with_network
from souverain.network.host_plan import HostPlans, tunnel_endpoints

from .support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient, settings_for
from .test_networks import Neutron

NODE = ("netnode", "10.71.0.1")
ADDRESSES = {"hv1": "10.71.0.11", "hv2": "10.71.0.12", "hv3": "10.71.0.13"}


@pytest.fixture(scope="module")
def vx(database_backend: str) -> Iterator[Cloud]:
    root = Path(tempfile.mkdtemp(prefix="souverain-api-plan-"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            settings = settings_for(root / "data")
            settings.network.overlay = "vxlan"
            settings.network.node_name, settings.network.node_address = NODE
            built = server.prepare(settings, clock=Clock(SteppingClock().now))
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                yield Cloud(client, built)
        finally:
            built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tokens(vx: Cloud) -> dict[str, str]:
    agents = vx.platform.compute.agents
    made = {name: agents.enroll(name) for name in ADDRESSES}
    for name, address in ADDRESSES.items():
        beat = {"address": address, "vcpus": 4, "memory_mib": 4096, "disk_gib": 10}
        response = vx.client.post(
            f"/internal/v1/hosts/{name}/heartbeat", json=beat, headers={"X-Auth-Token": made[name]}
        )
        assert response.status_code == 200, response.text
    return made


def _network(vx: Cloud, token: str, host: str) -> dict[str, Any]:
    response = vx.client.get(
        f"/internal/v1/hosts/{host}/assignments", headers={"X-Auth-Token": token}
    )
    assert response.status_code == 200, response.text
    network: dict[str, Any] = response.json()["network"]
    return network


def _guest_port(vx: Cloud, caller: Neutron, network_id: str, host: str, group: str) -> Any:
    ctx = vx.platform.identity.validate(caller.token)
    assert ctx is not None
    server_id = str(uuid.uuid4())
    net = vx.platform.network
    port = net.create_port_for_server(
        ctx.context(""), server_id=server_id, network_id=network_id, security_groups=[group]
    )
    return net.bind_port(port["id"], server_id, host)


@pytest.fixture(scope="module")
def topology(vx: Cloud, tokens: dict[str, str]) -> dict[str, Any]:
    """Project A: a1 on hv1, a2 on hv2 (same network, a group whose rule names itself);
    project B: the same CIDR, b1 on hv2; nothing on hv3."""
    a_user, b_user = vx.member(), vx.member()
    a = Neutron(vx, a_user.token, a_user.project_id)
    b = Neutron(vx, b_user.token, b_user.project_id)
    net_a, _ = a.network_with_subnet("10.9.0.0/24")
    net_b, _ = b.network_with_subnet("10.9.0.0/24")
    group_a = a.create("sg", name="pingers")
    a.create(
        "rule",
        security_group_id=group_a["id"],
        direction="ingress",
        protocol="icmp",
        remote_group_id=group_a["id"],
    )
    group_b = b.create("sg", name="quiet")
    return {
        "net_a": net_a,
        "net_b": net_b,
        "group_a": group_a["id"],
        "a": a,
        "a1": _guest_port(vx, a, net_a, "hv1", group_a["id"]),
        "a2": _guest_port(vx, a, net_a, "hv2", group_a["id"]),
        "b1": _guest_port(vx, b, net_b, "hv2", group_b["id"]),
    }


def test_a_host_gets_its_ports_its_segments_and_its_rules(
    vx: Cloud, tokens: dict[str, str], topology: dict[str, Any]
) -> None:
    a1, a2 = topology["a1"], topology["a2"]
    plan = _network(vx, tokens["hv1"], "hv1")
    assert [f["port_id"] for f in plan["filters"]] == [a1["id"]]
    (own,) = plan["filters"]
    assert own["mac"] == a1["mac_address"]
    assert own["ips"] == [a1["fixed_ips"][0]["ip_address"]]
    assert {r["protocol"] for r in own["rules"] if r["direction"] == "ingress"} == {"icmp"}
    assert [z["network_id"] for z in plan["zones"]] == [topology["net_a"]]
    (segment,) = plan["segments"]
    assert segment["network_id"] == topology["net_a"] and segment["mtu"] == 1450
    assert segment["remotes"] == [ADDRESSES["hv2"]]
    assert segment["macs"] == {a2["mac_address"]: ADDRESSES["hv2"]}
    ips = sorted(p["fixed_ips"][0]["ip_address"] for p in (a1, a2))
    assert plan["groups"] == {topology["group_a"]: ips}


def test_a_host_never_sees_ports_or_rules_of_other_hosts_or_networks(
    vx: Cloud, tokens: dict[str, str], topology: dict[str, Any]
) -> None:
    b1, a2 = topology["b1"], topology["a2"]
    text = json.dumps(_network(vx, tokens["hv1"], "hv1"))
    for secret in (b1["id"], b1["mac_address"], topology["net_b"], a2["id"]):
        assert secret not in text
    assert _network(vx, tokens["hv3"], "hv3") == {
        "segments": [],
        "zones": [],
        "filters": [],
        "groups": {},
        "digest": _network(vx, tokens["hv3"], "hv3")["digest"],
    }
    on_hv2 = _network(vx, tokens["hv2"], "hv2")
    assert {f["port_id"] for f in on_hv2["filters"]} == {a2["id"], b1["id"]}
    by_net = {s["network_id"]: s for s in on_hv2["segments"]}
    assert by_net[topology["net_b"]]["remotes"] == []  # b1 alone: B's segment goes nowhere
    assert by_net[topology["net_a"]]["remotes"] == [ADDRESSES["hv1"]]
    assert by_net[topology["net_a"]]["vni"] != by_net[topology["net_b"]]["vni"]


def test_another_hosts_plan_is_403(vx: Cloud, tokens: dict[str, str]) -> None:
    response = vx.client.get(
        "/internal/v1/hosts/hv2/assignments", headers={"X-Auth-Token": tokens["hv1"]}
    )
    assert response.status_code == 403
    assert "network" not in response.text


def test_the_network_nodes_dhcp_port_is_a_remote_of_the_hosts(
    vx: Cloud, tokens: dict[str, str], topology: dict[str, Any]
) -> None:
    a = topology["a"]
    net, _ = a.network_with_subnet("10.10.0.0/24")
    dhcp = a.create("port", network_id=net)
    vx.platform.network.bind_port(dhcp["id"], f"dhcp-{net}", NODE[0])
    _guest_port(vx, a, net, "hv3", topology["group_a"])
    (segment,) = _network(vx, tokens["hv3"], "hv3")["segments"]
    assert segment["remotes"] == [NODE[1]]
    assert segment["macs"] == {dhcp["mac_address"]: NODE[1]}


def test_a_rule_change_changes_the_plans_digest_and_waking_bumps_the_revision(
    vx: Cloud, tokens: dict[str, str], topology: dict[str, Any]
) -> None:
    before = _network(vx, tokens["hv1"], "hv1")["digest"]
    rule = topology["a"].create(
        "rule", security_group_id=topology["group_a"], direction="ingress", protocol="tcp"
    )
    assert _network(vx, tokens["hv1"], "hv1")["digest"] != before
    assert topology["a"].delete(f"/security-group-rules/{rule['id']}").status_code == 204
    assert _network(vx, tokens["hv1"], "hv1")["digest"] == before
    agents = vx.platform.compute.agents
    revision = agents.revision("hv1")
    agents.wake({"hv1", "not-a-host"})
    assert agents.revision("hv1") == revision + 1


def test_servers_get_only_their_own_ports_from_the_plan() -> None:
    servers = [
        {"id": "s1", "networks": "ports"},
        {"id": "s2", "networks": "none"},
        {"id": "s3", "networks": "ports"},
    ]
    plan = {"servers": {"s1": [{"id": "p1"}], "s9": [{"id": "p9"}]}, "segments": []}
    assert with_network(servers, plan) == {"segments": []}
    assert servers[0]["ports"] == [{"id": "p1"}]
    assert "ports" not in servers[1] and servers[2]["ports"] == []
    assert with_network([{"id": "s1", "networks": "ports"}], None) is None


@pytest.mark.parametrize(
    "address", ["not-an-ip", "0.0.0.0", "::", "239.1.1.1", "10.0.0.1; rm -rf /", 7]
)
def test_a_hosts_hostile_underlay_address_is_400_and_kept_out(
    vx: Cloud, tokens: dict[str, str], address: Any
) -> None:
    response = vx.client.post(
        "/internal/v1/hosts/hv3/heartbeat",
        json={"address": address},
        headers={"X-Auth-Token": tokens["hv3"]},
    )
    assert response.status_code == 400, response.text
    assert "address" in response.text
    assert vx.platform.compute.agents.addresses()["hv3"] == ADDRESSES["hv3"]


def test_only_unicast_ipv4_addresses_end_tunnels() -> None:
    found = {"a": "10.1.0.1", "b": "fe80::1", "c": "127.0.0.1", "d": "junk", "e": "10.1.0.2"}
    assert tunnel_endpoints(found) == {"a": "10.1.0.1", "e": "10.1.0.2"}


def test_a_server_moving_in_is_planned_on_its_destination_only(
    vx: Cloud, topology: dict[str, Any]
) -> None:
    """A live migration's destination (hv3) gets the moving server's taps, filter and
    segment before the guest arrives; the source keeps them until it has; nobody else
    gets them."""
    a1 = topology["a1"]
    server_id = a1["device_id"]
    plans = HostPlans(vx.platform.db, lambda: dict(ADDRESSES))
    before = plans.plan("hv3")  # what other tests may have put there stays as it was
    moving = plans.plan("hv3", frozenset({server_id}))
    assert [p["id"] for p in moving["servers"][server_id]] == [a1["id"]]
    filters = {f["port_id"] for f in before["filters"]}
    assert {f["port_id"] for f in moving["filters"]} == filters | {a1["id"]}
    segment = next(s for s in moving["segments"] if s["network_id"] == topology["net_a"])
    assert a1["mac_address"] not in segment["macs"]  # its own now, not the source's
    assert ADDRESSES["hv2"] in segment["remotes"]  # a2's host
    assert ADDRESSES["hv1"] not in segment["remotes"]  # a1 was its only port there
    assert a1["id"] not in filters and before["digest"] != moving["digest"]
    # the source still has it; a server id that names nothing adds nothing
    assert a1["id"] in {f["port_id"] for f in plans.plan("hv1")["filters"]}
    nothing = plans.plan("hv3", frozenset({str(uuid.uuid4())}))
    assert nothing["digest"] == before["digest"]
