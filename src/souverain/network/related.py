"""The rows that hang off a page of network resources, one query per relation.

Listing N ports must not cost N queries for their addresses: each function here
takes the ids of a whole page and returns a dict keyed by those ids (an id with
nothing related is absent). No policy and no shaping here: the service does both.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.db.batching import id_batches
from souverain.network import models as m


def subnet_ids_by_network(s: Session, network_ids: Iterable[str]) -> dict[str, list[str]]:
    """Network id -> its subnets' ids, oldest first."""
    out: dict[str, list[str]] = {}
    for batch in id_batches(network_ids):
        rows = s.execute(
            select(m.Subnet.network_id, m.Subnet.id)
            .where(m.Subnet.network_id.in_(batch))
            .order_by(m.Subnet.created_at)
        ).all()
        for network_id, subnet_id in rows:
            out.setdefault(network_id, []).append(subnet_id)
    return out


def ips_by_port(s: Session, port_ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """Port id -> its (subnet id, address) pairs, sorted."""
    out: dict[str, list[tuple[str, str]]] = {}
    for batch in id_batches(port_ids):
        rows = s.execute(
            select(
                m.IpAllocation.port_id, m.IpAllocation.subnet_id, m.IpAllocation.ip_address
            ).where(m.IpAllocation.port_id.in_(batch))
        ).all()
        for port_id, subnet_id, address in rows:
            out.setdefault(str(port_id), []).append((str(subnet_id), str(address)))
    return {port_id: sorted(ips) for port_id, ips in out.items()}


def groups_by_port(s: Session, port_ids: Iterable[str]) -> dict[str, list[str]]:
    """Port id -> the ids of its security groups, sorted."""
    out: dict[str, list[str]] = {}
    for batch in id_batches(port_ids):
        rows = s.execute(
            select(m.PortSecurityGroup.port_id, m.PortSecurityGroup.security_group_id).where(
                m.PortSecurityGroup.port_id.in_(batch)
            )
        ).all()
        for port_id, group_id in rows:
            out.setdefault(port_id, []).append(group_id)
    return {port_id: sorted(groups) for port_id, groups in out.items()}


def rules_by_group(s: Session, group_ids: Iterable[str]) -> dict[str, list[m.SecurityGroupRule]]:
    """Security group id -> its rules, oldest first."""
    out: dict[str, list[m.SecurityGroupRule]] = {}
    for batch in id_batches(group_ids):
        rows = s.scalars(
            select(m.SecurityGroupRule)
            .where(m.SecurityGroupRule.security_group_id.in_(batch))
            .order_by(m.SecurityGroupRule.created_at, m.SecurityGroupRule.id)
        ).all()
        for rule in rows:
            out.setdefault(rule.security_group_id, []).append(rule)
    return out


def ports_by_id(s: Session, port_ids: Iterable[str]) -> dict[str, m.Port]:
    """Port id -> the port, for the ids that still exist."""
    out: dict[str, m.Port] = {}
    for batch in id_batches(port_ids):
        out.update(
            (port.id, port) for port in s.scalars(select(m.Port).where(m.Port.id.in_(batch)))
        )
    return out
