"""Subnet pools: address space a project carves subnets from, and the carving.

Rows only. A pool's prefixes are kept collapsed; a subnet allocated from a pool carries the
pool's id, so the pool's free space is its prefixes minus those subnets. Carving happens
inside the subnet's own transaction, after the project's quota row is locked and with the
pool's row locked, so two subnets never get the same space.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.ids import new_id
from souverain.common.tenancy import may_act_on
from souverain.network import models as m
from souverain.network.core import Part
from souverain.network.errors import (
    PolicyNotAuthorized,
    SubnetAllocationError,
    SubnetPoolInUse,
    SubnetPoolNotFound,
)
from souverain.network.fields import owner_named
from souverain.network.ipam import IPNetwork
from souverain.network.schemas_pools import PoolAsk, PoolBody, collapsed

DEFAULT_MIN = {4: 8, 6: 64}  # Neutron's default minimum prefix lengths
QUOTA_UNIT_BITS = {4: 32, 6: 64}  # a v4 pool's quota counts addresses, a v6 pool's /64s


class IllegalPrefixBounds(BadRequest):
    title = "IllegalSubnetPoolPrefixBounds"


class IllegalPrefixUpdate(BadRequest):
    title = "IllegalSubnetPoolPrefixUpdate"


def _bounds(version: int, given: dict[str, int], current: m.SubnetPool | None) -> dict[str, int]:
    """min <= default <= max <= the address's bits, with Neutron's defaults and message."""
    bits = 32 if version == 4 else 128
    low = given.get("min_prefixlen", current.min_prefixlen if current else DEFAULT_MIN[version])
    high = given.get("max_prefixlen", current.max_prefixlen if current else bits)
    default = given.get("default_prefixlen", current.default_prefixlen if current else low)
    checks = (
        ("min_prefixlen", low, "max_prefixlen", high, low > high),
        ("max_prefixlen", high, "ip_version_max", bits, high > bits),
        ("default_prefixlen", default, "min_prefixlen", low, default < low),
        ("default_prefixlen", default, "max_prefixlen", high, default > high),
        ("min_prefixlen", low, "0", 0, low < 0),
    )
    for name, value, base, limit, broken in checks:
        if broken:
            raise IllegalPrefixBounds(f"Illegal prefix bounds: {name}={value}, {base}={limit}.")
    return {"min_prefixlen": low, "max_prefixlen": high, "default_prefixlen": default}


def free_blocks(prefixes: Sequence[IPNetwork], used: Sequence[IPNetwork]) -> list[IPNetwork]:
    """The pool's space not yet allocated, as CIDRs in address order (bounded by the
    allocations, not by the pool's size)."""
    free: list[IPNetwork] = list(prefixes)
    for taken in used:
        after: list[IPNetwork] = []
        for block in free:
            if not block.overlaps(taken):
                after.append(block)
            elif not taken.supernet_of(block):  # type: ignore[arg-type]
                after.extend(block.address_exclude(taken))  # type: ignore[arg-type]
        free = after
    return sorted(free, key=lambda n: int(n.network_address))


class SubnetPools(Part):
    """Subnet pools, and subnets' CIDRs taken from them."""

    def pool(self, s: Session, ctx: RequestContext, pool_id: Any) -> m.SubnetPool:
        row = s.get(m.SubnetPool, pool_id) if isinstance(pool_id, str) else None
        if row is None or not (ctx.is_admin or row.shared or row.project_id == ctx.project_id):
            raise SubnetPoolNotFound(f"Subnet pool {str(pool_id)[:64]} could not be found.")
        return row

    def _owned(self, s: Session, ctx: RequestContext, pool_id: str) -> m.SubnetPool:
        row = self.pool(s, ctx, pool_id)
        if not may_act_on(ctx, row.project_id):
            raise PolicyNotAuthorized("The request is disallowed by policy for this subnet pool.")
        return row

    def _admin_flags(self, ctx: RequestContext, body: PoolBody) -> None:
        for name, value in (("shared", body.shared), ("is_default", body.is_default)):
            if value and not ctx.is_admin:
                raise PolicyNotAuthorized(f"rule:create_subnetpool:{name} is disallowed by policy")

    def _one_default(self, s: Session, row: m.SubnetPool) -> None:
        if not row.is_default:
            return
        other = s.scalar(
            select(m.SubnetPool.id).where(
                m.SubnetPool.is_default,
                m.SubnetPool.ip_version == row.ip_version,
                m.SubnetPool.id != row.id,
            )
        )
        if other is not None:
            raise BadRequest(
                f"Invalid input for operation: A default subnetpool for this IP family has "
                f"already been set. Only one default may exist per IP family ({other})."
            )

    def create_pool(self, ctx: RequestContext, body: PoolBody) -> m.SubnetPool:
        self._admin_flags(ctx, body)
        project_id = owner_named(ctx, body.owner)
        assert body.prefixes is not None
        version = body.prefixes[0].version
        bounds = _bounds(version, dict(body.prefixlens), None)
        now = self._now()
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            self.quotas.claim(s, project_id, "subnetpool")
            row = m.SubnetPool(
                id=new_id(),
                project_id=project_id,
                name=body.name or "",
                description=body.description or "",
                ip_version=version,
                prefixes=[str(p) for p in body.prefixes],
                default_quota=body.default_quota,
                shared=bool(body.shared),
                is_default=bool(body.is_default),
                revision_number=1,
                created_at=now,
                updated_at=now,
                **bounds,
            )
            self._one_default(s, row)
            s.add(row)
            s.flush()
            return row

    def get_pool(self, ctx: RequestContext, pool_id: str) -> m.SubnetPool:
        with self.db.session() as s:
            return self.pool(s, ctx, pool_id)

    def list_pools(self, ctx: RequestContext) -> list[m.SubnetPool]:
        with self.db.session() as s:
            stmt = select(m.SubnetPool)
            if not ctx.is_admin:
                stmt = stmt.where(
                    (m.SubnetPool.project_id == (ctx.project_id or "")) | m.SubnetPool.shared
                )
            return list(s.scalars(stmt).all())

    def update_pool(self, ctx: RequestContext, pool_id: str, body: PoolBody) -> m.SubnetPool:
        if body.is_default is not None and not ctx.is_admin:
            raise PolicyNotAuthorized("rule:update_subnetpool:is_default is disallowed by policy")
        with self.db.session() as s:
            row = self._owned(s, ctx, pool_id)
            if body.prefixes is not None:
                self._grow(row, body.prefixes)
            bounds = _bounds(row.ip_version, dict(body.prefixlens), row)
            if bounds["min_prefixlen"] > row.min_prefixlen:
                raise IllegalPrefixBounds(
                    f"Illegal prefix bounds: min_prefixlen={bounds['min_prefixlen']}, "
                    f"min_prefixlen={row.min_prefixlen}: the minimum cannot grow."
                )
            for name, value in bounds.items():
                setattr(row, name, value)
            if body.name is not None:
                row.name = body.name
            if body.description is not None:
                row.description = body.description
            if body.quota_given:
                row.default_quota = body.default_quota
            if body.is_default is not None:
                row.is_default = body.is_default
                self._one_default(s, row)
            row.revision_number += 1
            row.updated_at = self._now()
            s.flush()
            return row

    def _grow(self, row: m.SubnetPool, wanted: list[IPNetwork]) -> None:
        """Prefixes only grow: every address of the pool stays in it."""
        if wanted[0].version != row.ip_version:
            raise IllegalPrefixUpdate(
                "Illegal update to prefixes: the IP version of a subnet pool cannot change."
            )
        for old in row.prefixes:
            net = ipaddress.ip_network(old)
            if not any(net.subnet_of(new) for new in wanted):  # type: ignore[arg-type]
                raise IllegalPrefixUpdate(
                    f"Illegal update to prefixes: {old} is not in the new prefixes; existing "
                    "prefixes must be a subset of the new prefixes."
                )
        row.prefixes = [str(p) for p in wanted]

    def add_prefixes(
        self, ctx: RequestContext, pool_id: str, prefixes: list[IPNetwork]
    ) -> list[str]:
        """The pool grows by `prefixes` (kept collapsed); its prefixes after."""
        with self.db.session() as s:
            row = self._owned(s, ctx, pool_id)
            if prefixes[0].version != row.ip_version:
                raise IllegalPrefixUpdate(
                    "Illegal update to prefixes: the IP version of a subnet pool cannot change."
                )
            old = [ipaddress.ip_network(p) for p in row.prefixes]
            self._grow(row, collapsed([*old, *prefixes]))
            return self._touched(row)

    def remove_prefixes(
        self, ctx: RequestContext, pool_id: str, prefixes: list[IPNetwork]
    ) -> list[str]:
        """The pool loses `prefixes`, unless a subnet allocated from it lies there."""
        with self.db.session() as s:
            row = self._owned(s, ctx, pool_id)
            if prefixes[0].version != row.ip_version:
                raise IllegalPrefixUpdate(
                    "Illegal update to prefixes: the IP version of a subnet pool cannot change."
                )
            remaining = free_blocks([ipaddress.ip_network(p) for p in row.prefixes], prefixes)
            if not remaining:
                raise IllegalPrefixUpdate(
                    "Illegal update to prefixes: a subnet pool keeps at least one prefix."
                )
            for cidr in s.scalars(
                select(m.Subnet.cidr).where(m.Subnet.subnetpool_id == row.id)
            ).all():
                net = ipaddress.ip_network(cidr)
                if not any(net.subnet_of(b) for b in remaining):  # type: ignore[arg-type]
                    raise IllegalPrefixUpdate(
                        f"Illegal update to prefixes: subnet {cidr} is allocated from a prefix "
                        "being removed; delete it first."
                    )
            row.prefixes = [str(p) for p in collapsed(remaining)]
            return self._touched(row)

    def _touched(self, row: m.SubnetPool) -> list[str]:
        row.revision_number += 1
        row.updated_at = self._now()
        return list(row.prefixes)

    def delete_pool(self, ctx: RequestContext, pool_id: str) -> None:
        with self.db.session() as s:
            row = self._owned(s, ctx, pool_id)
            used = s.scalar(
                select(func.count()).select_from(m.Subnet).where(m.Subnet.subnetpool_id == row.id)
            )
            if used:
                raise SubnetPoolInUse(
                    f"Unable to complete operation on subnet pool {row.id}. Subnet pool has "
                    "existing allocations."
                )
            s.delete(row)

    # ------------------------------------------------------------------ carving

    def carve(
        self, s: Session, ctx: RequestContext, ask: PoolAsk, project_id: str
    ) -> tuple[m.SubnetPool, IPNetwork]:
        """The pool asked for (locked) and the CIDR the new subnet gets from it."""
        row = self._asked_pool(s, ctx, ask)
        if row.ip_version != ask.ip_version:
            raise BadRequest(
                f"Bad subnets request: Cannot allocate IPv{ask.ip_version} subnet from "
                f"IPv{row.ip_version} subnet pool."
            )
        length = ask.cidr.prefixlen if ask.cidr is not None else ask.prefixlen
        if length is None:
            length = row.default_prefixlen
        if length > row.max_prefixlen:
            raise SubnetAllocationError(
                f"Unable to allocate subnet with prefix length {length}, maximum allowed "
                f"prefix is {row.max_prefixlen}."
            )
        if length < row.min_prefixlen:
            raise SubnetAllocationError(
                f"Unable to allocate subnet with prefix length {length}, minimum allowed "
                f"prefix is {row.min_prefixlen}."
            )
        used = [
            ipaddress.ip_network(c)
            for c in s.scalars(select(m.Subnet.cidr).where(m.Subnet.subnetpool_id == row.id)).all()
        ]
        self._check_quota(s, row, project_id, length)
        free = free_blocks([ipaddress.ip_network(p) for p in row.prefixes], used)
        if ask.cidr is not None:
            if not any(ask.cidr.subnet_of(b) for b in free):  # type: ignore[arg-type]
                raise SubnetAllocationError(
                    "Cannot allocate requested subnet from the available set of prefixes."
                )
            return row, ask.cidr
        for block in free:
            if block.prefixlen <= length:
                first = ipaddress.ip_network(f"{block.network_address}/{length}")
                return row, first
        raise SubnetAllocationError(
            f"Failed to allocate subnet: Insufficient prefix space to allocate subnet size "
            f"/{length}."
        )

    def _asked_pool(self, s: Session, ctx: RequestContext, ask: PoolAsk) -> m.SubnetPool:
        pool_id = ask.subnetpool_id
        if pool_id is None:
            pool_id = s.scalar(
                select(m.SubnetPool.id).where(
                    m.SubnetPool.is_default, m.SubnetPool.ip_version == ask.ip_version
                )
            )
            if pool_id is None:
                raise BadRequest(
                    f"Bad subnets request: No default subnetpool found for IPv{ask.ip_version}."
                )
        visible = self.pool(s, ctx, pool_id)
        locked = s.scalars(
            select(m.SubnetPool).where(m.SubnetPool.id == visible.id).with_for_update()
        ).one()
        return locked

    def _check_quota(self, s: Session, row: m.SubnetPool, project_id: str, length: int) -> None:
        """A pool's `default_quota` caps what one project holds of it (Neutron's units)."""
        if row.default_quota is None:
            return
        unit = QUOTA_UNIT_BITS[row.ip_version]
        held = sum(
            2 ** (unit - min(unit, ipaddress.ip_network(c).prefixlen))
            for c in s.scalars(
                select(m.Subnet.cidr).where(
                    m.Subnet.subnetpool_id == row.id, m.Subnet.project_id == project_id
                )
            ).all()
        )
        if held + 2 ** (unit - min(unit, length)) > row.default_quota:
            raise SubnetAllocationError("Per-tenant subnet pool prefix quota exceeded.")
