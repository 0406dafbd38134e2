"""Who may say what a port is plugged into: its `device_owner` and `device_id`, and
where it is bound (`binding:host_id`, `binding:profile`: the admin's alone, as in Neutron).

Compute plugs a port into a guest and a router takes one as an interface by setting
these two fields, so a tenant who could write them could put a NIC of its own network
into another project's server or router. `compute:*` and `network:*` owners are kept
for the services (Neutron keeps `network:*` the same way, with the same 403); a tenant
may still write any other owner, which no service acts on. No database here: the rows
are the caller's to read.
"""

from __future__ import annotations

from souverain.common.context import RequestContext
from souverain.network import models as m
from souverain.network.errors import PolicyNotAuthorized
from souverain.network.schemas import PortBody

# owners the services set on the ports they plug; never taken from a tenant's request
SERVICE_PREFIXES = ("compute:", "network:")


def is_service_owner(owner: str) -> bool:
    return owner.startswith(SERVICE_PREFIXES)


def check_create(ctx: RequestContext, body: PortBody) -> None:
    """A tenant's new port names no service owner: 403, as Neutron answers for `network:*`."""
    if ctx.is_admin:
        return
    _check_bindings("create_port", body)
    owner = dict(body.texts).get("device_owner", "")
    if is_service_owner(owner):
        raise PolicyNotAuthorized(
            "(rule:create_port and rule:create_port:device_owner) is disallowed by policy"
        )


def check_update(ctx: RequestContext, row: m.Port, body: PortBody) -> None:
    """A tenant sets no service owner, and leaves the binding of a port a service plugged
    as it is (a field sent back unchanged is no change)."""
    if ctx.is_admin:
        return
    _check_bindings("update_port", body)
    given = dict(body.texts)
    owner = given.get("device_owner", row.device_owner)
    device = given.get("device_id", row.device_id)
    plugged = is_service_owner(row.device_owner)
    if owner != row.device_owner and (plugged or is_service_owner(owner)):
        field = "device_owner"
    elif device != row.device_id and plugged:
        field = "device_id"
    else:
        return
    raise PolicyNotAuthorized(
        f"(rule:update_port and rule:update_port:{field}) is disallowed by policy"
    )


def _check_bindings(rule: str, body: PortBody) -> None:
    if body.bindings:
        raise PolicyNotAuthorized(
            f"(rule:{rule} and rule:{rule}:{body.bindings[0]}) is disallowed by policy"
        )
