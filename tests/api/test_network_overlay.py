"""Networks with overlay vxlan: the MTU, the VNI range, the admin's provider attributes, and
the overlay plan read from real rows (ports bound to hosts by the compute interface)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from souverain import server
from souverain.common.clock import Clock
from souverain.network.overlay_plan import OverlayPlan, plan_segments

from .support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient, settings_for
from .test_networks import Neutron, neutron_error

SEGMENTS = (5000, 5009)  # the public network takes the first
HOSTS = {"host-a": "10.60.0.1", "host-b": "10.60.0.2", "host-c": "10.60.0.3"}


@pytest.fixture(scope="module")
def vx_cloud(database_backend: str) -> Iterator[Cloud]:
    root = Path(tempfile.mkdtemp(prefix="souverain-api-vx-"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            settings = settings_for(root / "data")
            settings.network.overlay = "vxlan"
            settings.network.underlay_mtu = 1500
            settings.network.segment_min, settings.network.segment_max = SEGMENTS
            built = server.prepare(settings, clock=Clock(SteppingClock().now))
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                yield Cloud(client, built)
        finally:
            built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def me(vx_cloud: Cloud) -> Neutron:
    member = vx_cloud.member()
    return Neutron(vx_cloud, member.token, member.project_id)


@pytest.fixture
def admin(vx_cloud: Cloud) -> Neutron:
    return Neutron(vx_cloud, vx_cloud.admin_token, vx_cloud.admin_project_id)


def _network(caller: Neutron, network_id: str) -> dict[str, Any]:
    response = caller.get(f"/networks/{network_id}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()["network"]
    return view


def _delete_all(caller: Neutron, ids: list[str]) -> None:
    for network_id in ids:
        assert caller.delete(f"/networks/{network_id}").status_code == 204


def test_tenant_networks_leave_room_for_the_vxlan_header(me: Neutron, admin: Neutron) -> None:
    net = me.create("network", name="n")
    assert net["mtu"] == 1450
    message = neutron_error(
        me.post("/networks", {"network": {"name": "big", "mtu": 1500}}), 400, "InvalidInput"
    )
    assert "maximum is 1450" in message
    small = me.create("network", name="small", mtu=1400)
    assert small["mtu"] == 1400
    public = admin.get("/networks?name=public").json()["networks"][0]
    assert public["mtu"] == 1500  # the hosts' own link, no tunnel
    _delete_all(me, [net["id"], small["id"]])


def test_admin_sees_the_vni_and_no_one_else_does(
    vx_cloud: Cloud, me: Neutron, admin: Neutron
) -> None:
    net = me.create("network", name="mine")
    assert not any(k.startswith("provider:") for k in net)
    assert not any(k.startswith("provider:") for k in _network(me, net["id"]))
    listed = me.get("/networks").json()["networks"]
    assert listed and not any(k.startswith("provider:") for n in listed for k in n)
    reader = vx_cloud.member("reader", project_id=me.project_id)
    seen = Neutron(vx_cloud, reader.token, me.project_id)
    assert "provider:segmentation_id" not in _network(seen, net["id"])
    only = me.get(f"/networks/{net['id']}?fields=provider:segmentation_id").json()["network"]
    assert "provider:segmentation_id" not in only
    stranger = vx_cloud.member()
    outside = Neutron(vx_cloud, stranger.token, stranger.project_id)
    neutron_error(outside.get(f"/networks/{net['id']}"), 404, "NetworkNotFound")
    shown = _network(admin, net["id"])
    assert shown["provider:network_type"] == "vxlan"
    assert shown["provider:physical_network"] is None
    assert SEGMENTS[0] < shown["provider:segmentation_id"] <= SEGMENTS[1]
    vni = shown["provider:segmentation_id"]
    probe = me.get(f"/networks?provider:segmentation_id={vni}")
    neutron_error(probe, 400, "HTTPBadRequest")  # no filtering on what one cannot see
    found = admin.get(f"/networks?provider:segmentation_id={vni}").json()["networks"]
    assert [n["id"] for n in found] == [net["id"]]
    public = admin.get("/networks?name=public").json()["networks"][0]
    assert public["provider:network_type"] == "flat"
    assert public["provider:segmentation_id"] is None
    _delete_all(me, [net["id"]])


def test_vnis_are_unique_from_the_range_until_it_is_spent(me: Neutron, admin: Neutron) -> None:
    made = []
    for i in range(SEGMENTS[1] - SEGMENTS[0] + 1):
        response = me.post("/networks", {"network": {"name": f"n{i}"}})
        if response.status_code != 201:
            message = neutron_error(response, 503, "NoNetworkAvailable")
            assert "No tenant network is available" in message
            break
        made.append(response.json()["network"]["id"])
    else:
        pytest.fail("the range never ran out")
    before = len(me.get("/networks").json()["networks"])
    vnis = [_network(admin, n)["provider:segmentation_id"] for n in made]
    assert made and len(set(vnis)) == len(vnis)
    assert all(SEGMENTS[0] < v <= SEGMENTS[1] for v in vnis)
    neutron_error(me.post("/networks", {"network": {"name": "x"}}), 503, "NoNetworkAvailable")
    assert len(me.get("/networks").json()["networks"]) == before  # nothing half-made
    _delete_all(me, made[:1])
    again = me.create("network", name="again")
    assert _network(admin, again["id"])["provider:segmentation_id"] == vnis[0]
    _delete_all(me, [*made[1:], again["id"]])


def test_without_overlay_networks_are_local_at_full_mtu(shared_cloud: Cloud) -> None:
    member = shared_cloud.member()
    me = Neutron(shared_cloud, member.token, member.project_id)
    admin = Neutron(shared_cloud, shared_cloud.admin_token, shared_cloud.admin_project_id)
    net = me.create("network", name="plain")
    assert net["mtu"] == 1500 and "provider:network_type" not in net
    shown = _network(admin, net["id"])
    assert shown["provider:network_type"] == "local"
    assert shown["provider:segmentation_id"] is None


# ---------------------------------------------------------------------- the plan from rows


def _bound_port(vx_cloud: Cloud, me: Neutron, network_id: str, host: str) -> dict[str, Any]:
    port = me.create("port", network_id=network_id)
    vx_cloud.platform.network.bind_port(port["id"], f"srv-{port['id'][:8]}", host)
    return port


def _plan(vx_cloud: Cloud, host: str, addresses: dict[str, str] = HOSTS) -> dict[str, Any]:
    with vx_cloud.platform.db.session() as s:
        segments = plan_segments(s, host, addresses, lambda n: f"br-{n[:8]}")
    return {segment.network_id: segment for segment in segments}


def test_plan_joins_the_hosts_with_ports_on_each_network(
    vx_cloud: Cloud, me: Neutron, admin: Neutron
) -> None:
    net_a, _ = me.network_with_subnet("10.1.0.0/24")
    net_b, _ = me.network_with_subnet("10.1.0.0/24")  # the same CIDR: told apart by VNI
    a1 = _bound_port(vx_cloud, me, net_a, "host-a")
    a2 = _bound_port(vx_cloud, me, net_a, "host-b")
    a3 = _bound_port(vx_cloud, me, net_a, "host-c")
    b2 = _bound_port(vx_cloud, me, net_b, "host-b")
    me.create("port", network_id=net_b)  # unbound: on no host, in no plan
    on_a = _plan(vx_cloud, "host-a")
    assert set(on_a) == {net_a}  # host-a has no port on net_b: no segment of it
    seg = on_a[net_a]
    assert seg.vni == _network(admin, net_a)["provider:segmentation_id"]
    assert seg.bridge == f"br-{net_a[:8]}"
    assert seg.remotes == {HOSTS["host-b"], HOSTS["host-c"]}
    assert dict(seg.macs) == {
        a2["mac_address"]: HOSTS["host-b"],
        a3["mac_address"]: HOSTS["host-c"],
    }
    assert a1["mac_address"] not in seg.macs
    on_b = _plan(vx_cloud, "host-b")
    assert set(on_b) == {net_a, net_b}
    assert on_b[net_b].remotes == frozenset() and dict(on_b[net_b].macs) == {}
    assert on_b[net_a].vni != on_b[net_b].vni
    assert b2["mac_address"] not in on_b[net_a].macs
    assert _plan(vx_cloud, "host-z") == {} and _plan(vx_cloud, "") == {}


def test_plan_follows_unbinding_and_unknown_hosts(vx_cloud: Cloud, me: Neutron) -> None:
    net, _ = me.network_with_subnet("10.2.0.0/24")
    _bound_port(vx_cloud, me, net, "host-a")
    moving = _bound_port(vx_cloud, me, net, "host-b")
    _bound_port(vx_cloud, me, net, "host-new")  # no address known for it yet
    assert _plan(vx_cloud, "host-a")[net].remotes == {HOSTS["host-b"]}
    vx_cloud.platform.network.release_port(moving["id"])
    seg = _plan(vx_cloud, "host-a")[net]
    assert seg.remotes == frozenset() and dict(seg.macs) == {}
    plan = OverlayPlan(vx_cloud.platform.db, lambda: HOSTS, lambda n: f"br-{n[:8]}")
    assert [s for s in plan.segments("host-a") if s.network_id == net] == [seg]


def test_network_data_json_gives_the_guest_the_segment_mtu(vx_cloud: Cloud, me: Neutron) -> None:
    net, _ = me.network_with_subnet("10.3.0.0/24")
    view = vx_cloud.platform.identity.validate(me.token)
    assert view is not None
    vx_cloud.platform.network.create_port_for_server(
        view.context(""), server_id="srv-mtu", network_id=net
    )
    guests = vx_cloud.platform.compute._guests  # the config drive's author, as a build uses it
    doc = guests._ports_network_doc("srv-mtu", me.project_id)
    assert [link["mtu"] for link in doc["links"]] == [1450]
