"""The API-reference check of tests/api: what it catches, and that its facts cover the core routes."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..api import response_schemas as rs
from ..api.support import TestClient

ADMIN_ONLY_HOST = "OS-EXT-SRV-ATTR:host"


def server_at_2_1() -> dict[str, Any]:
    """A server as Nova's reference documents GET /servers/{server_id} at 2.1."""
    link = [{"href": "http://x/servers/s1", "rel": "self"}]
    return {
        "server": {
            "accessIPv4": "",
            "accessIPv6": "",
            "addresses": {"net-1": [{"addr": "10.0.0.3", "version": 4, "OS-EXT-IPS:type": "x"}]},
            "config_drive": "",
            "created": "2026-01-01T00:00:00Z",
            "flavor": {"id": "f1", "links": link},
            "hostId": "",
            "id": "s1",
            "image": {"id": "i1", "links": link},
            "key_name": None,
            "links": link,
            "metadata": {"any user key": "any value"},
            "name": "vm",
            "OS-DCF:diskConfig": "AUTO",
            "OS-EXT-AZ:availability_zone": "nova",
            "OS-EXT-STS:power_state": 1,
            "OS-EXT-STS:task_state": None,
            "OS-EXT-STS:vm_state": "active",
            "os-extended-volumes:volumes_attached": [{"id": "v1"}],
            "OS-SRV-USG:launched_at": None,
            "OS-SRV-USG:terminated_at": None,
            "status": "ACTIVE",
            "tenant_id": "p1",
            "updated": "2026-01-01T00:00:00Z",
            "user_id": "u1",
        }
    }


def show_server(body: Any, version: rs.Version = (2, 1), admin: bool | None = False) -> set[str]:
    found = rs.check("compute", "GET", "/servers/s1", version, admin, 200, body)
    return {f"{v.problem}: {v.field}" for v in found}


def test_a_server_as_documented_passes() -> None:
    assert show_server(server_at_2_1()) == set()


def test_a_missing_required_field_is_reported() -> None:
    body = server_at_2_1()
    del body["server"]["status"]
    del body["server"]["flavor"]["id"]
    assert show_server(body) == {
        "missing required: server.status",
        "missing required: server.flavor.id",
    }


def test_an_undocumented_field_is_reported_at_any_depth() -> None:
    body = server_at_2_1()
    body["server"]["bogus"] = 1
    body["server"]["flavor"]["bogus"] = 2
    body["server"]["os-extended-volumes:volumes_attached"][0]["bogus"] = 3
    assert show_server(body) == {
        "undocumented: server.bogus",
        "undocumented: server.flavor.bogus",
        "undocumented: server.os-extended-volumes:volumes_attached.bogus",
    }


def test_a_field_of_a_later_microversion_is_undocumented_earlier() -> None:
    body = server_at_2_1()
    body["server"]["locked"] = False  # 2.9
    body["server"]["description"] = None  # 2.19
    assert show_server(body) == {"undocumented: server.locked", "undocumented: server.description"}


def test_a_field_required_from_a_microversion_is_required_there() -> None:
    body = server_at_2_1()
    body["server"]["os-extended-volumes:volumes_attached"][0]["delete_on_termination"] = False
    assert "missing required: server.locked" in show_server(body, (2, 9))
    body["server"]["locked"] = False
    assert "missing required: server.locked" not in show_server(body, (2, 9))


def test_a_field_the_reference_ends_is_undocumented_after() -> None:
    body = server_at_2_1()
    # 2.47 shows the flavor itself, not its id and links
    assert {"undocumented: server.flavor.id", "missing required: server.flavor.vcpus"} <= (
        show_server(body, (2, 47))
    )


def test_user_keyed_maps_are_opaque() -> None:
    body = server_at_2_1()
    body["server"]["metadata"] = {"flavor": "x", "nested": {"deep": [1]}}
    body["server"]["addresses"] = {"my network": [{"addr": "10.0.0.9", "anything": 1}]}
    assert show_server(body) == set()


def test_admin_only_fields_are_never_required_and_hidden_from_others() -> None:
    body = server_at_2_1()
    assert show_server(body, admin=True) == set()  # documented required, but admin-only
    body["server"][ADMIN_ONLY_HOST] = "host-1"
    assert show_server(body, admin=True) == set()
    assert show_server(body, admin=None) == set()  # caller unknown: allowed
    assert show_server(body, admin=False) == {
        f"admin-only (caller is no admin): server.{ADMIN_ONLY_HOST}"
    }


def test_the_most_literal_route_wins() -> None:
    detail = rs.find_route("compute", "GET", "/servers/detail")
    one = rs.find_route("compute", "GET", "/servers/abc")
    assert detail is not None and detail.template == "/servers/detail"
    assert one is not None and one.template == "/servers/{server_id}"
    assert rs.find_route("compute", "GET", "/no-such-collection/x/y/z") is None


def test_platform_paths_map_to_the_references_paths() -> None:
    cases = {
        "/compute/v2.1/servers/abc": ("compute", "/servers/abc"),
        "/compute/v2.1": ("compute", "/v2.1"),
        "/volume/v3/p1/volumes": ("volume", "/v3/p1/volumes"),
        "/network/v2.0/ports": ("network", "/v2.0/ports"),
        "/image/v2/images/i1": ("image", "/v2/images/i1"),
        "/identity/v3/auth/tokens": ("identity", "/v3/auth/tokens"),
    }
    for path, (service, ref_path) in cases.items():
        found = rs.api_for(path)
        assert found is not None, path
        assert (found[0].service, found[1]) == (service, ref_path)
    assert rs.api_for("/billing/v1/accounts") is None


def test_the_microversion_is_negotiated_like_the_servers_do() -> None:
    compute, volume, network = rs.APIS[0], rs.APIS[1], rs.APIS[2]
    assert rs.negotiated(compute, {}, None) == (2, 1)
    assert rs.negotiated(compute, {"x-openstack-nova-api-version": "2.47"}, None) == (2, 47)
    assert rs.negotiated(compute, {"openstack-api-version": "volume 3.5, compute 2.9"}, None) == (
        2,
        9,
    )
    assert rs.negotiated(compute, {"openstack-api-version": "compute latest"}, "compute 2.100") == (
        2,
        100,
    )
    assert rs.negotiated(volume, {}, None) == (3, 0)
    assert rs.negotiated(volume, {"openstack-api-version": "block-storage 3.27"}, None) == (3, 27)
    assert rs.negotiated(network, {"openstack-api-version": "compute 2.9"}, None) == rs.UNVERSIONED


def test_cinder_paths_without_a_project_are_checked_as_the_reference_writes_them() -> None:
    body = {"volumes": [{"id": "v1", "links": [], "name": "x", "bogus": 1}]}
    found = rs.check_exchange("GET", "/volume/v3/volumes", {}, 200, {}, body, is_admin=False)
    assert [(v.template, v.field) for v in found] == [("/v3/{project_id}/volumes", "volumes.bogus")]


def test_errors_and_services_without_a_reference_are_not_checked() -> None:
    assert rs.check_exchange("GET", "/compute/v2.1/servers/x", {}, 404, {}, {"a": 1}, None) == []
    assert rs.check_exchange("GET", "/billing/v1/accounts", {}, 200, {}, {"a": 1}, None) == []


@pytest.mark.parametrize(
    ("service", "method", "path", "field"),
    [
        ("compute", "GET", "/servers", "servers.id"),
        ("compute", "GET", "/servers/detail", "servers.status"),
        ("compute", "POST", "/servers", "server.id"),
        ("compute", "GET", "/flavors/{flavor_id}", "flavor.ram"),
        ("volume", "GET", "/v3/{project_id}/volumes/{volume_id}", "volume.status"),
        ("volume", "POST", "/v3/{project_id}/volumes", "volume.id"),
        ("volume", "GET", "/v3/{project_id}/snapshots/{snapshot_id}", "snapshot.volume_id"),
        ("network", "GET", "/v2.0/networks/{network_id}", "network.id"),
        ("network", "GET", "/v2.0/ports", "ports.fixed_ips"),
        ("network", "POST", "/v2.0/subnets", "subnet.cidr"),
        ("image", "GET", "/v2/images/{image_id}", "status"),
        ("image", "GET", "/v2/images", "images"),
        ("identity", "POST", "/v3/auth/tokens", "token.expires_at"),
        ("identity", "GET", "/v3/projects/{project_id}", "project.id"),
    ],
)
def test_the_generated_facts_cover_the_core_routes(
    service: str, method: str, path: str, field: str
) -> None:
    routes = [r for r in rs.routes_of(service) if (r.method, r.template) == (method, path)]
    assert routes, f"{service} {method} {path} missing: rerun scripts/apiref-schemas"
    documented = {
        (p, f["required"]) for v in routes[0].variants for f in v["fields"] for p in f["paths"]
    }
    assert (field, True) in documented


def test_every_known_gap_names_a_documented_route_and_says_why() -> None:
    gaps = tomllib.loads(rs.KNOWN_GAPS.read_text()).get("gap", [])
    for gap in gaps:
        assert set(gap) == {"service", "method", "path", "field", "reason"}, gap
        assert gap["reason"].strip(), gap
        routes = [
            r
            for r in rs.routes_of(gap["service"])
            if (r.method, r.template) == (gap["method"], gap["path"])
        ]
        assert routes, f"known gap on a route the reference does not have: {gap}"


def test_a_listed_gap_is_not_reported() -> None:
    body = server_at_2_1()
    body["server"]["bogus"] = 1
    gap = ("compute", "GET", "/servers/{server_id}", "server.bogus")
    assert (
        rs.check("compute", "GET", "/servers/s1", (2, 1), None, 200, body, frozenset({gap})) == []
    )
    assert rs.check("compute", "GET", "/servers/s1", (2, 1), None, 200, body, frozenset()) != []


def test_a_fields_query_makes_no_field_required_but_still_no_field_undocumented() -> None:
    body: dict[str, dict[str, Any]] = {"network": {"id": "n1"}}
    path = "/network/v2.0/networks/n1"
    assert rs.check_exchange("GET", path, {}, 200, {}, body, None, "fields=id", frozenset()) == []
    missing = rs.check_exchange("GET", path, {}, 200, {}, body, None, "", frozenset())
    assert "network.status" in {v.field for v in missing}
    body["network"]["bogus"] = 1
    extra = rs.check_exchange("GET", path, {}, 200, {}, body, None, "fields=id", frozenset())
    assert [v.field for v in extra] == ["network.bogus"]


def test_objects_that_keep_the_callers_attributes_accept_them() -> None:
    image = {"id": "i1", "status": "queued", "hw_disk_bus": "scsi"}
    found = rs.check("image", "GET", "/v2/images/i1", rs.UNVERSIONED, None, 200, image, frozenset())
    assert "hw_disk_bus" not in {v.field for v in found}
    assert "id" not in {v.field for v in found}


def _answering(body: dict[str, Any]) -> Starlette:
    async def answer(request: Request) -> JSONResponse:
        return JSONResponse(body)

    return Starlette(routes=[Route("/compute/v2.1/os-keypairs", answer)])


def test_the_api_tests_client_fails_on_a_response_that_breaks_the_reference() -> None:
    broken = r"GET /os-keypairs at microversion 2.1.*'bogus'"
    with (
        TestClient(_answering({"keypairs": [], "bogus": 1})) as client,
        pytest.raises(AssertionError, match=broken),
    ):
        client.get("/compute/v2.1/os-keypairs")
    with TestClient(_answering({"keypairs": []})) as client:
        assert client.get("/compute/v2.1/os-keypairs").status_code == 200
