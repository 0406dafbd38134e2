"""Subnet pool bodies, and the pool fields of a subnet body, checked into typed values.

Syntax only, with Neutron's messages: whether the bounds fit the pool's prefixes, who may
share a pool or mark it default, and which CIDR a subnet gets are `subnet_pools`' to say.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from souverain.common.errors import BadRequest
from souverain.network.fields import flag_of, int_of, only_fields, text_of
from souverain.network.ipam import InvalidInput, IPNetwork

MAX_PREFIXES = 64
POOL_FIELDS = frozenset(
    {
        "name",
        "description",
        "prefixes",
        "default_prefixlen",
        "min_prefixlen",
        "max_prefixlen",
        "default_quota",
        "shared",
        "is_default",
        "address_scope_id",
        "project_id",
        "tenant_id",
        "tags",
    }
)
POOL_UPDATES = POOL_FIELDS - {"shared", "project_id", "tenant_id"}
PREFIXLENS = ("min_prefixlen", "max_prefixlen", "default_prefixlen")


@dataclass(frozen=True)
class PoolBody:
    """A subnet pool create or update body; `None`: not given."""

    owner: Any = None
    name: str | None = None
    description: str | None = None
    prefixes: list[IPNetwork] | None = None  # collapsed, one IP version
    prefixlens: tuple[tuple[str, int], ...] = ()  # the bounds given
    quota_given: bool = False
    default_quota: int | None = None
    shared: bool | None = None
    is_default: bool | None = None


@dataclass(frozen=True)
class PoolAsk:
    """A subnet body's request for space from a pool: the pool (or the default one of the
    IP version), the size, or a CIDR inside the pool."""

    subnetpool_id: Any  # None: the default pool of `ip_version`
    ip_version: int
    prefixlen: int | None
    cidr: IPNetwork | None
    rest: dict[str, Any]  # the subnet's other fields, checked once the CIDR is known


def prefixes(value: Any) -> list[IPNetwork]:
    if not isinstance(value, list) or not value or len(value) > MAX_PREFIXES:
        raise InvalidInput(
            f"Invalid input for prefixes. Reason: a list of 1 to {MAX_PREFIXES} CIDRs."
        )
    nets: list[IPNetwork] = []
    for raw in value:
        try:
            net = ipaddress.ip_network(raw, strict=True) if isinstance(raw, str) else None
        except ValueError:
            net = None
        if net is None or "/" not in raw or len(raw) > 64:
            raise InvalidInput(
                f"Invalid input for prefixes. Reason: '{str(raw)[:64]}' is not a valid IP subnet."
            )
        nets.append(net)
    if len({n.version for n in nets}) != 1:
        raise BadRequest("Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")
    return collapsed(nets)


def collapsed(nets: list[IPNetwork]) -> list[IPNetwork]:
    """Prefixes of one IP version merged where they touch, in address order."""
    merged: list[IPNetwork] = list(ipaddress.collapse_addresses(nets))  # type: ignore[type-var]
    return sorted(merged, key=lambda n: int(n.network_address))


def pool_create(body: dict[str, Any]) -> PoolBody:
    only_fields(body, POOL_FIELDS, "subnetpool")
    if "prefixes" not in body:
        raise BadRequest("Failed to parse request. Required attribute 'prefixes' not specified")
    return _pool(body)


def pool_update(body: dict[str, Any]) -> PoolBody:
    only_fields(body, POOL_UPDATES, "subnetpool")
    return _pool(body)


def _pool(body: dict[str, Any]) -> PoolBody:
    if body.get("address_scope_id") is not None:
        raise BadRequest("Address scopes are not offered here: leave address_scope_id null.")
    lens = []
    for name in PREFIXLENS:
        if body.get(name) is not None:
            value = int_of(body[name], name)
            assert value is not None
            lens.append((name, value))
    quota = int_of(body.get("default_quota"), "default_quota")
    if quota is not None and quota < 0:
        raise InvalidInput(f"Invalid input for default_quota. Reason: '{quota}' is negative.")
    return PoolBody(
        owner=body.get("project_id", body.get("tenant_id")),
        name=text_of(body, "name") if "name" in body else None,
        description=text_of(body, "description") if "description" in body else None,
        prefixes=prefixes(body["prefixes"]) if "prefixes" in body else None,
        prefixlens=tuple(lens),
        quota_given="default_quota" in body,
        default_quota=quota,
        shared=flag_of(body, "shared", False) if "shared" in body else None,
        is_default=flag_of(body, "is_default", False) if "is_default" in body else None,
    )


def pool_ask(body: dict[str, Any]) -> PoolAsk | None:
    """The pool part of a subnet create body, or None when the subnet names its own CIDR
    and no pool."""
    pool_id = body.get("subnetpool_id")
    use_default = flag_of(body, "use_default_subnetpool", False)
    if pool_id is None and not use_default:
        if "prefixlen" in body:
            raise BadRequest("Bad subnets request: prefixlen needs a subnetpool_id.")
        return None
    if pool_id is not None and use_default:
        raise BadRequest(
            "Bad subnets request: subnetpool_id and use_default_subnetpool cannot both be "
            "specified."
        )
    version = int_of(body.get("ip_version", 4), "ip_version")
    if version not in (4, 6):
        raise InvalidInput(f"Invalid input for ip_version. Reason: '{version}' is not 4 or 6.")
    cidr = None
    if body.get("cidr") is not None:
        raw = body["cidr"]
        try:
            cidr = ipaddress.ip_network(raw, strict=True) if isinstance(raw, str) else None
        except ValueError:
            cidr = None
        if cidr is None or "/" not in raw or cidr.version != version:
            raise InvalidInput(f"Invalid input for cidr. Reason: '{str(raw)[:64]}'.")
    if cidr is not None and "prefixlen" in body:
        raise BadRequest("Bad subnets request: cidr and prefixlen must not be supplied together.")
    rest = {
        k: v
        for k, v in body.items()
        if k not in ("subnetpool_id", "use_default_subnetpool", "prefixlen", "cidr")
    }
    return PoolAsk(
        subnetpool_id=pool_id,
        ip_version=version,
        prefixlen=int_of(body.get("prefixlen"), "prefixlen"),
        cidr=cidr,
        rest=rest,
    )
