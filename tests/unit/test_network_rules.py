"""Port and router rules, on the network service itself: a SQLite file, no data plane, no HTTP.

Each test names the rule it proves; each would fail if the rule broke (an address
given twice, a router joining overlapping subnets, a floating IP with no way out).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.config import NetworkSettings
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from souverain.identity.service import IdentityPolicySettings, IdentityService
from souverain.identity.tokens import KeyRepository, TokenFormatter
from souverain.network import schemas, views
from souverain.network.errors import (
    ExternalGatewayForFloatingIPNotFound,
    IpAddressAlreadyAllocated,
    IpAddressGenerationFailure,
    PolicyNotAuthorized,
    PortInUse,
    RouterExternalGatewayInUseByFloatingIp,
    RouterInterfaceInUseByFloatingIP,
    RouterInUse,
)
from souverain.network.ipam import InvalidInput
from souverain.network.service import NetworkService

OWNER = RequestContext(
    user_id="u1", user_domain_id="default", roles=frozenset({"member"}), project_id="p1"
)
OTHER = RequestContext(
    user_id="u2", user_domain_id="default", roles=frozenset({"member"}), project_id="p2"
)
# an admin's project-scoped token: network resources belong to projects, so an admin
# without a project must name one (tests/security covers that refusal)
ADMIN = RequestContext(
    user_id="a", user_domain_id="default", roles=frozenset({"admin"}), project_id="p-admin"
)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[NetworkService]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    db = Database(engine)
    identity = IdentityService(
        db,
        TokenFormatter(KeyRepository(tmp_path / "keys")),
        base64.urlsafe_b64encode(b"0" * 32),
        IdentityPolicySettings(bcrypt_rounds=4),
    )
    built = NetworkService(db, identity, Clock(), NetworkSettings(dataplane=False))
    built.set_up()  # the operator's external network `public`, 172.24.4.0/24
    yield built
    engine.dispose()


def _subnet(service: NetworkService, cidr: str, **extra: Any) -> dict[str, Any]:
    return _subnet_of(service, OWNER, cidr, **extra)


def _subnet_of(
    service: NetworkService, ctx: RequestContext, cidr: str, **extra: Any
) -> dict[str, Any]:
    net = service.networks.create_network(ctx, schemas.network({"name": f"net-{cidr}"}))
    body = {"network_id": net.row.id, "cidr": cidr, "ip_version": 4, **extra}
    return views.subnet(service.networks.create_subnet(ctx, schemas.subnet_create(body)))


def _port(service: NetworkService, subnet: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"network_id": subnet["network_id"], **extra}
    return views.port(service.ports.create_port(OWNER, schemas.port_create(body)))


def _public_id(service: NetworkService) -> str:
    (public,) = [n.row.id for n in service.networks.list_networks(ADMIN) if n.row.external]
    return public


def _router(service: NetworkService, gateway: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "r"}
    if gateway:
        body["external_gateway_info"] = {"network_id": _public_id(service)}
    return views.router(service.routers.create_router(OWNER, schemas.router_create(body)))


def _on(subnet: dict[str, Any]) -> schemas.InterfaceBody:
    return schemas.router_interface({"subnet_id": subnet["id"]})


# ---------------------------------------------------------------------- ports


def test_ports_take_the_pool_addresses_in_order_after_the_gateway(
    service: NetworkService,
) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    first, second = _port(service, subnet), _port(service, subnet)
    assert first["fixed_ips"] == [{"subnet_id": subnet["id"], "ip_address": "10.1.0.2"}]
    assert second["fixed_ips"][0]["ip_address"] == "10.1.0.3"


def test_a_requested_address_is_found_in_its_subnet(service: NetworkService) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    port = _port(service, subnet, fixed_ips=[{"ip_address": "10.1.0.50"}])
    assert port["fixed_ips"] == [{"subnet_id": subnet["id"], "ip_address": "10.1.0.50"}]


def test_an_address_already_held_is_refused(service: NetworkService) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    _port(service, subnet, fixed_ips=[{"ip_address": "10.1.0.50"}])
    with pytest.raises(IpAddressAlreadyAllocated) as refused:
        _port(service, subnet, fixed_ips=[{"ip_address": "10.1.0.50"}])
    assert refused.value.status == 409
    assert refused.value.message == (
        f"IP address 10.1.0.50 already allocated in subnet {subnet['id']}"
    )


def test_an_address_of_no_subnet_of_the_network_is_refused(service: NetworkService) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    with pytest.raises(InvalidInput) as refused:
        _port(service, subnet, fixed_ips=[{"ip_address": "10.9.0.5"}])
    assert "IP address 10.9.0.5 is not a valid IP" in refused.value.message


def test_a_full_pool_refuses_the_next_port_and_a_freed_address_comes_back(
    service: NetworkService,
) -> None:
    subnet = _subnet(service, "10.1.0.0/29")  # .2 to .6 once the gateway .1 is set aside
    ports = [_port(service, subnet) for _ in range(5)]
    with pytest.raises(IpAddressGenerationFailure):
        _port(service, subnet)
    service.ports.delete_port(OWNER, ports[2]["id"])
    again = _port(service, subnet)
    assert again["fixed_ips"][0]["ip_address"] == ports[2]["fixed_ips"][0]["ip_address"]


def test_device_owner_and_id_are_what_the_caller_set(service: NetworkService) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    port = _port(service, subnet, device_owner="appliance:lb", device_id="server-1")
    assert (port["device_owner"], port["device_id"]) == ("appliance:lb", "server-1")
    changed = service.ports.update_port(
        OWNER, port["id"], schemas.port_update({"device_id": "server-2"})
    )
    assert (changed.row.device_owner, changed.row.device_id) == ("appliance:lb", "server-2")


# ---------------------------------------------------------------------- binding


@pytest.mark.parametrize("owner", ["compute:nova", "compute:az-1", "network:dhcp", "network:x"])
def test_a_tenant_cannot_name_a_service_as_device_owner(
    service: NetworkService, owner: str
) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    with pytest.raises(PolicyNotAuthorized) as refused:
        _port(service, subnet, device_owner=owner, device_id="server-1")
    assert refused.value.status == 403
    assert refused.value.message == (
        "(rule:create_port and rule:create_port:device_owner) is disallowed by policy"
    )
    port = _port(service, subnet)
    with pytest.raises(PolicyNotAuthorized) as refused:
        service.ports.update_port(OWNER, port["id"], schemas.port_update({"device_owner": owner}))
    assert refused.value.message == (
        "(rule:update_port and rule:update_port:device_owner) is disallowed by policy"
    )
    assert service.ports.get_port(OWNER, port["id"]).row.device_owner == ""


def test_an_admin_may_name_a_service_as_device_owner(service: NetworkService) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    body = {"network_id": subnet["network_id"], "device_owner": "compute:nova", "device_id": "s"}
    port = service.ports.create_port(ADMIN, schemas.port_create(body))
    assert (port.row.device_owner, port.row.device_id) == ("compute:nova", "s")


def test_a_tenant_cannot_rebind_a_port_a_service_plugged(service: NetworkService) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    router = _router(service, gateway=False)
    interface = service.routers.add_router_interface(OWNER, router["id"], _on(subnet)).port
    for body, field in (
        ({"device_id": "another-router"}, "device_id"),
        ({"device_owner": ""}, "device_owner"),
        ({"device_owner": "appliance:lb", "device_id": ""}, "device_owner"),
    ):
        with pytest.raises(PolicyNotAuthorized) as refused:
            service.ports.update_port(OWNER, interface.id, schemas.port_update(body))
        assert refused.value.message == (
            f"(rule:update_port and rule:update_port:{field}) is disallowed by policy"
        )
    same = {"device_owner": "network:router_interface", "device_id": router["id"], "name": "n"}
    kept = service.ports.update_port(OWNER, interface.id, schemas.port_update(same)).row
    assert (kept.device_id, kept.name) == (router["id"], "n")


def test_compute_sees_only_ports_of_the_servers_project(service: NetworkService) -> None:
    own = service.create_port_for_server(OWNER, server_id="victim")
    theirs = _subnet_of(service, OTHER, "10.7.0.0/24")
    # another project names the server as device: allowed as free text, never plugged
    body = {"network_id": theirs["network_id"], "device_id": "victim"}
    free = service.ports.create_port(OTHER, schemas.port_create(body))
    forged = {**body, "device_owner": "compute:nova", "project_id": "p2"}
    by_admin = service.ports.create_port(ADMIN, schemas.port_create(forged))
    assert [p["id"] for p in service.ports_of("victim", "p1")] == [own["id"]]
    service.release_ports_of("victim", "p1")
    assert service.ports_of("victim", "p1") == []
    for row in (free.row, by_admin.row):
        kept = service.ports.get_port(ADMIN, row.id).row
        assert kept.device_id == "victim" and kept.project_id == "p2"


def test_a_port_of_another_project_is_not_usable_for_a_server(service: NetworkService) -> None:
    theirs = _subnet_of(service, OTHER, "10.7.0.0/24")
    port = service.ports.create_port(
        OTHER, schemas.port_create({"network_id": theirs["network_id"]})
    )
    with pytest.raises(NotFound):
        service.create_port_for_server(OWNER, port_id=port.row.id, server_id="victim")
    with pytest.raises(BadRequest) as refused:
        service.create_port_for_server(
            ADMIN, port_id=port.row.id, server_id="victim", project_id="p1"
        )
    assert refused.value.message == f"Port {port.row.id} not usable for instance victim."
    assert service.ports.get_port(ADMIN, port.row.id).row.device_id == ""


def test_a_port_an_admin_makes_for_a_server_belongs_to_the_servers_project(
    service: NetworkService,
) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    made = service.create_port_for_server(
        ADMIN, network_id=subnet["network_id"], server_id="victim", project_id="p1"
    )
    assert made["project_id"] == "p1"
    assert [p["id"] for p in service.ports_of("victim", "p1")] == [made["id"]]


def test_a_router_interface_port_cannot_be_deleted_through_ports(
    service: NetworkService,
) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    router = _router(service, gateway=False)
    info = service.routers.add_router_interface(OWNER, router["id"], _on(subnet))
    with pytest.raises(PortInUse) as refused:
        service.ports.delete_port(OWNER, info.port.id)
    assert refused.value.message == (
        f"Port {info.port.id} cannot be deleted directly via the port API: has device "
        "owner network:router_interface."
    )
    port = service.ports.get_port(OWNER, info.port.id)
    assert port.ips == [(subnet["id"], "10.1.0.1")]  # the subnet's gateway


# ---------------------------------------------------------------------- routers


def test_a_router_refuses_a_subnet_overlapping_one_it_has(service: NetworkService) -> None:
    first, second = _subnet(service, "10.2.0.0/24"), _subnet(service, "10.2.0.0/25")
    router = _router(service, gateway=False)
    service.routers.add_router_interface(OWNER, router["id"], _on(first))
    with pytest.raises(BadRequest) as refused:
        service.routers.add_router_interface(OWNER, router["id"], _on(second))
    assert refused.value.message == (
        f"Bad router request: Cidr 10.2.0.0/25 of subnet {second['id']} overlaps with cidr "
        f"10.2.0.0/24 of subnet {first['id']}."
    )


def test_a_router_refuses_the_same_subnet_twice(service: NetworkService) -> None:
    subnet = _subnet(service, "10.2.0.0/24")
    router = _router(service, gateway=False)
    service.routers.add_router_interface(OWNER, router["id"], _on(subnet))
    with pytest.raises(BadRequest, match="Router already has a port on subnet"):
        service.routers.add_router_interface(OWNER, router["id"], _on(subnet))


def test_a_subnet_without_a_gateway_cannot_be_a_router_interface(
    service: NetworkService,
) -> None:
    subnet = _subnet(service, "10.3.0.0/24", gateway_ip=None)
    router = _router(service, gateway=False)
    with pytest.raises(BadRequest) as refused:
        service.routers.add_router_interface(OWNER, router["id"], _on(subnet))
    assert refused.value.message == (
        "Bad router request: Subnet for router interface must have a gateway IP."
    )


def test_a_router_with_an_interface_is_in_use_until_the_interface_goes(
    service: NetworkService,
) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    router = _router(service, gateway=True)
    service.routers.add_router_interface(OWNER, router["id"], _on(subnet))
    with pytest.raises(RouterInUse) as refused:
        service.routers.delete_router(OWNER, router["id"])
    assert refused.value.message == f"Router {router['id']} still has ports"
    service.routers.remove_router_interface(OWNER, router["id"], _on(subnet))
    service.routers.delete_router(OWNER, router["id"])


def test_a_floating_ip_needs_a_router_with_both_an_interface_and_a_gateway(
    service: NetworkService,
) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    port = _port(service, subnet)
    public = _public_id(service)
    body = {"floating_network_id": public, "port_id": port["id"]}
    interface_only = _router(service, gateway=False)
    service.routers.add_router_interface(OWNER, interface_only["id"], _on(subnet))
    with pytest.raises(ExternalGatewayForFloatingIPNotFound) as refused:
        service.floating_ips.create_floating_ip(OWNER, schemas.floating_create(body))
    assert refused.value.message == (
        f"External network {public} is not reachable from subnet {subnet['id']}. Therefore, "
        f"cannot associate Port {port['id']} with a Floating IP."
    )
    service.routers.update_router(
        OWNER,
        interface_only["id"],
        schemas.router_update({"external_gateway_info": {"network_id": public}}),
    )
    fip = service.floating_ips.create_floating_ip(OWNER, schemas.floating_create(body)).row
    assert fip.router_id == interface_only["id"]
    assert fip.fixed_ip_address == port["fixed_ips"][0]["ip_address"]


def test_a_gateway_alone_does_not_reach_a_subnet_the_router_is_not_on(
    service: NetworkService,
) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    port = _port(service, subnet)
    _router(service, gateway=True)
    body = {"floating_network_id": _public_id(service), "port_id": port["id"]}
    with pytest.raises(ExternalGatewayForFloatingIPNotFound):
        service.floating_ips.create_floating_ip(OWNER, schemas.floating_create(body))


def test_what_a_floating_ip_goes_through_cannot_be_taken_from_it(
    service: NetworkService,
) -> None:
    subnet = _subnet(service, "10.1.0.0/24")
    port = _port(service, subnet)
    router = _router(service, gateway=True)
    service.routers.add_router_interface(OWNER, router["id"], _on(subnet))
    body = {"floating_network_id": _public_id(service), "port_id": port["id"]}
    fip = service.floating_ips.create_floating_ip(OWNER, schemas.floating_create(body)).row
    with pytest.raises(RouterInterfaceInUseByFloatingIP):
        service.routers.remove_router_interface(OWNER, router["id"], _on(subnet))
    with pytest.raises(RouterExternalGatewayInUseByFloatingIp):
        service.routers.update_router(
            OWNER, router["id"], schemas.router_update({"external_gateway_info": {}})
        )
    service.floating_ips.update_floating_ip(
        OWNER, fip.id, schemas.floating_update({"port_id": None})
    )
    service.routers.remove_router_interface(OWNER, router["id"], _on(subnet))


def test_a_floating_ip_never_goes_through_another_projects_router(
    service: NetworkService,
) -> None:
    """On a shared subnet, the router another project put there is not this project's way
    out: its floating IP finds no gateway rather than borrowing (and billing) that router."""
    body = {"name": "shared", "shared": True, "project_id": "p1"}
    net = service.networks.create_network(ADMIN, schemas.network(body)).row
    cidr = {"network_id": net.id, "cidr": "10.8.0.0/24", "ip_version": 4}
    subnet = views.subnet(service.networks.create_subnet(OWNER, schemas.subnet_create(cidr)))
    router = _router(service, gateway=True)
    service.routers.add_router_interface(OWNER, router["id"], _on(subnet))
    theirs = service.ports.create_port(OTHER, schemas.port_create({"network_id": net.id}))
    wanted = {"floating_network_id": _public_id(service), "port_id": theirs.row.id}
    with pytest.raises(ExternalGatewayForFloatingIPNotFound):
        service.floating_ips.create_floating_ip(OTHER, schemas.floating_create(wanted))
    mine = _port(service, subnet)
    wanted["port_id"] = mine["id"]
    fip = service.floating_ips.create_floating_ip(OWNER, schemas.floating_create(wanted)).row
    assert fip.router_id == router["id"]


def test_a_router_takes_no_interface_port_of_another_project(service: NetworkService) -> None:
    theirs = _subnet_of(service, OTHER, "10.7.0.0/24")
    port = service.ports.create_port(
        OTHER, schemas.port_create({"network_id": theirs["network_id"]})
    )
    router = _router(service, gateway=False)
    by_port = schemas.router_interface({"port_id": port.row.id})
    with pytest.raises(NotFound):
        service.routers.add_router_interface(OWNER, router["id"], by_port)
    with pytest.raises(NotFound):
        service.routers.add_router_interface(OTHER, router["id"], by_port)
    assert service.ports.get_port(ADMIN, port.row.id).row.device_id == ""
