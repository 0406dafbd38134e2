"""An agent host's network plan is checked whole before the kernel is touched (`apply`
checks with `check` first; these tests call only `check`, which touches nothing): a plan that
does not hold (hostile or broken: a bad VNI, a remote that is this host, a multicast MAC,
an id that names no tap, an MTU out of range, a rule nftables would refuse, a member that
is no address) is refused with NetworkFailure at the check, never half-applied. The
kernel side itself is tried in tests/platform/test_multihost_network.py."""

from __future__ import annotations

import copy
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from souverain.agent.network import AgentNetwork, NetworkFailure, guest_ports, tap_mac
from souverain.config import ConfigError, load_settings
from souverain.network.host import host_network
from souverain.network.host_plan import plan_digest

LOCAL = "10.80.0.11"
NET, PORT, GROUP = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
RULE = {
    "direction": "ingress",
    "ethertype": "IPv4",
    "protocol": "icmp",
    "port_min": None,
    "port_max": None,
    "remote_prefix": None,
    "remote_group": GROUP,
}
PLAN: dict[str, Any] = {
    "segments": [
        {
            "network_id": NET,
            "vni": 4001,
            "mtu": 1450,
            "remotes": ["10.80.0.1"],
            "macs": {"fa:16:3e:00:00:02": "10.80.0.1"},
        }
    ],
    "zones": [{"network_id": NET, "zone": 4001}],
    "filters": [
        {
            "port_id": PORT,
            "network_id": NET,
            "mac": "fa:16:3e:00:00:01",
            "ips": ["10.9.0.11"],
            "allowed_pairs": [],
            "rules": [RULE],
        }
    ],
    "groups": {GROUP: ["10.9.0.11", "10.9.0.12"]},
}
SERVERS = [
    {
        "id": "s1",
        "desired": "running",
        "ports": [{"id": PORT, "network_id": NET, "mac": "fa:16:3e:00:00:01", "mtu": 1450}],
    }
]


@pytest.fixture
def network(tmp_path: Path) -> AgentNetwork:
    return AgentNetwork(host_network(tmp_path / "data", make_run_dir=False), LOCAL)


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    plan = copy.deepcopy(PLAN)
    node: Any = plan
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return plan


def test_a_sound_plan_passes_the_check(network: AgentNetwork) -> None:
    wanted = network.check(PLAN, SERVERS)
    assert wanted.mtus == {NET: 1450}
    assert wanted.taps == {NET: [(PORT, "fe:16:3e:00:00:01")]}
    assert [s.bridge for s in wanted.segments] == [network.host.dataplane.bridge_name(NET)]
    assert [f.ifname for f in wanted.filters] == [network.tap_name(PORT)]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["segments", 0, "vni"], 0),
        (["segments", 0, "vni"], 1 << 24),
        (["segments", 0, "vni"], "many"),
        (["segments", 0, "remotes"], [LOCAL]),  # this host as its own remote
        (["segments", 0, "remotes"], ["0.0.0.0"]),
        (["segments", 0, "macs"], {"01:00:5e:00:00:01": "10.80.0.1"}),  # multicast
        (["segments", 0, "macs"], {"fa:16:3e:00:00:09": "10.80.0.99"}),  # not a remote
        (["segments", 0, "network_id"], "../../etc"),
        (["segments", 0, "mtu"], 100000),
        (["segments"], "not a list of segments"),
        (["zones", 0, "zone"], "z"),
        (["filters", 0, "port_id"], "eth0; rm -rf /"),
        (["filters", 0, "mac"], "not-a-mac"),
        (["filters", 0, "ips"], ["10.9.0.11/33"]),
        (["filters", 0, "rules"], [{**RULE, "protocol": "bogus"}]),
        (["filters", 0, "rules"], [{**RULE, "sneaky": 1}]),
        (["groups"], {GROUP: ["not an address"]}),
    ],
)
def test_a_plan_that_does_not_hold_is_refused_before_the_kernel(
    network: AgentNetwork, path: list[Any], value: Any
) -> None:
    with pytest.raises(NetworkFailure, match="does not hold"):
        network.check(_with(path, value), SERVERS)


@pytest.mark.parametrize(
    "port",
    [
        {"id": "x", "network_id": NET, "mac": "fa:16:3e:00:00:01", "mtu": 1450},
        {"id": PORT, "network_id": NET, "mac": "fa:16:3e:00:00:01", "mtu": True},
        {"id": PORT, "network_id": NET, "mtu": 1450},
    ],
)
def test_a_bad_port_of_a_server_is_refused_before_the_kernel(
    network: AgentNetwork, port: dict[str, Any]
) -> None:
    with pytest.raises(NetworkFailure, match="does not hold"):
        network.check(PLAN, [{"id": "s1", "desired": "running", "ports": [port]}])


def test_guests_being_removed_keep_no_taps() -> None:
    servers = [*SERVERS, {"id": "s2", "desired": "absent", "ports": [{"id": "gone"}]}]
    assert [p["id"] for p in guest_ports(servers)] == [PORT]
    assert tap_mac("fa:16:3e:00:00:01") == "fe:16:3e:00:00:01"


def test_a_plans_digest_follows_its_content() -> None:
    assert plan_digest(PLAN) == plan_digest(copy.deepcopy(PLAN))
    assert plan_digest(PLAN) == plan_digest({**PLAN, "digest": "ignored"})
    assert plan_digest(PLAN) != plan_digest(_with(["groups", GROUP], ["10.9.0.11"]))


def test_a_network_node_that_runs_guests_keeps_one_host_name() -> None:
    env = {"SOUVERAIN_NETWORK__OVERLAY": "vxlan", "SOUVERAIN_NETWORK__NODE_NAME": "elsewhere"}
    with pytest.raises(ConfigError, match=r"network\.node_name 'elsewhere'"):
        load_settings(environ=env)
    apart = load_settings(environ={**env, "SOUVERAIN_COMPUTE__LOCAL_HOST": "false"})
    assert apart.network.node_name == "elsewhere"
    same = {**env, "SOUVERAIN_NETWORK__NODE_NAME": socket.gethostname()}
    assert load_settings(environ=same).network.node_name == socket.gethostname()
    assert load_settings(environ={**env, "SOUVERAIN_NETWORK__OVERLAY": "none"})
