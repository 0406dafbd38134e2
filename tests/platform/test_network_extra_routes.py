"""A router's extra routes on the real kernel: written into its namespace as routes of their own,
followed by real TCP traffic, replaced and removed with the router's state, and refused
when a next hop is on none of the router's networks."""

from __future__ import annotations

import pytest

from souverain.network.dataplane import DataplaneError
from souverain.network.router_routes import RTPROT_EXTRA

from . import test_routing
from .test_routing import _SKIP, Lab, _run

pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")
lab = test_routing.lab  # the routing tests' lab: a data plane with its own prefix, cleaned up
BEHIND = "192.168.77.1"  # an address reached only through the next hop


def _static_routes(lab: Lab, router_id: str) -> str:
    namespace = lab.routing.router_namespace(router_id)
    return _run("ip", "-n", namespace, "-4", "route", "show", "proto", str(RTPROT_EXTRA)).stdout


def test_extra_route_carries_traffic_through_its_next_hop_and_goes_away(lab: Lab) -> None:
    lab.public()
    tenant = lab.tenant(1)
    hop = lab.guest(tenant.network_id, "10.0.0.20")  # a guest routing for 192.168.77.0/24
    _run("ip", "-n", hop, "addr", "add", f"{BEHIND}/32", "dev", "lo")
    lab.serve(BEHIND, hop)
    lab.ensure(tenant)
    assert lab.connect(BEHIND, tenant.guest, timeout=1) is None, "no route yet"

    route = ("192.168.77.0/24", "10.0.0.20")
    lab.routing.ensure_router(tenant.router_id, tenant.gateway, [tenant.interface], [], [route])
    lab.routing.ensure_router(tenant.router_id, tenant.gateway, [tenant.interface], [], [route])
    shown = _static_routes(lab, tenant.router_id)
    assert (
        shown.strip()
        == "192.168.77.0/24 via 10.0.0.20 dev " + f"qr-{tenant.interface.port_id[:11]}"
    )
    assert lab.connect(BEHIND, tenant.guest) == tenant.guest_ip

    moved = ("192.168.77.0/24", "10.0.0.30")
    lab.routing.ensure_router(tenant.router_id, tenant.gateway, [tenant.interface], [], [moved])
    assert "via 10.0.0.30" in _static_routes(lab, tenant.router_id)
    assert lab.connect(BEHIND, tenant.guest, timeout=1) is None

    lab.ensure(tenant)  # no routes
    namespace = lab.routing.router_namespace(tenant.router_id)
    assert _static_routes(lab, tenant.router_id) == ""
    default = _run("ip", "-n", namespace, "-4", "route", "show", "default").stdout
    assert f"via {lab.host_ip}" in default, "the gateway's default route is not an extra route"


def test_reconcile_restores_extra_routes(lab: Lab) -> None:
    lab.public()
    tenant = lab.tenant(2)
    namespace = lab.routing.router_namespace(tenant.router_id)
    route = ("192.168.78.0/24", "10.0.0.20")
    lab.routing.ensure_router(tenant.router_id, tenant.gateway, [tenant.interface], [], [route])
    _run("ip", "-n", namespace, "route", "del", "192.168.78.0/24")
    _run("ip", "-n", namespace, "route", "add", "192.168.99.0/24", "via", "10.0.0.21", "proto",
         str(RTPROT_EXTRA))  # fmt: skip
    state = {tenant.router_id: (tenant.gateway, [tenant.interface], [])}
    lab.routing.reconcile(state, {tenant.router_id: [route]})
    assert (
        _static_routes(lab, tenant.router_id).split(" dev ")[0] == "192.168.78.0/24 via 10.0.0.20"
    )


def test_an_unconnected_next_hop_is_refused_before_the_host_changes(lab: Lab) -> None:
    lab.public()
    tenant = lab.tenant(3)
    lab.ensure(tenant)
    for bad in [("192.168.79.0/24", "10.9.9.9"), ("192.168.79.1/24", "10.0.0.20"),
                ("192.168.79.0/24", "fe80::1")]:  # fmt: skip
        with pytest.raises(DataplaneError):
            lab.routing.ensure_router(
                tenant.router_id, tenant.gateway, [tenant.interface], [], [bad]
            )
    assert _static_routes(lab, tenant.router_id) == ""
