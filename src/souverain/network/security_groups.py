"""Security groups and their rules, the project's default group included.

Rules are rows here; `wiring` turns them into the one nftables transaction."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict
from souverain.common.ids import new_id
from souverain.network import models as m
from souverain.network import related
from souverain.network.core import Part
from souverain.network.errors import (
    SecurityGroupCannotRemoveDefault,
    SecurityGroupInUse,
    SecurityGroupNotFound,
    SecurityGroupRuleExists,
    SecurityGroupRuleNotFound,
)
from souverain.network.fields import (
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    PROTOCOLS,
    int_of,
    only_fields,
    owner_of,
    text_of,
)
from souverain.network.ipam import InvalidInput


@dataclass(frozen=True)
class GroupRecord:
    """A security group with its rules, oldest first."""

    row: m.SecurityGroup
    rules: list[m.SecurityGroupRule]


class SecurityGroups(Part):
    """Security groups and rules."""

    def ensure_default_group(self, project_id: str) -> str:
        """The project's `default` group, made on first use (once, whoever races)."""
        with self.db.session() as s:
            found = s.scalar(
                select(m.SecurityGroup.id).where(m.SecurityGroup.default_for_project == project_id)
            )
            if found:
                return str(found)
        try:
            with self.db.session() as s:
                now = self._now()
                group = m.SecurityGroup(
                    id=new_id(),
                    project_id=project_id,
                    name="default",
                    description="Default security group",
                    default_for_project=project_id,
                    revision_number=1,
                    created_at=now,
                    updated_at=now,
                )
                s.add(group)
                s.flush()
                for ethertype in ("IPv4", "IPv6"):
                    s.add(self._rule_row(group, "egress", ethertype))
                    s.add(self._rule_row(group, "ingress", ethertype, remote_group_id=group.id))
                return group.id
        except IntegrityError:
            return self.ensure_default_group(project_id)

    def default_group_id(self, s: Session, project_id: str) -> str:
        found = s.scalar(
            select(m.SecurityGroup.id).where(m.SecurityGroup.default_for_project == project_id)
        )
        if found is None:
            raise SecurityGroupNotFound("Security group default does not exist")
        return str(found)

    def _rule_row(
        self, group: m.SecurityGroup, direction: str, ethertype: str, **extra: Any
    ) -> m.SecurityGroupRule:
        now = self._now()
        return m.SecurityGroupRule(
            id=new_id(),
            security_group_id=group.id,
            project_id=group.project_id,
            direction=direction,
            ethertype=ethertype,
            description=extra.pop("description", ""),
            created_at=now,
            updated_at=now,
            **extra,
        )

    def record(self, s: Session, row: m.SecurityGroup) -> GroupRecord:
        return self.records(s, [row])[0]

    def records(self, s: Session, rows: Sequence[m.SecurityGroup]) -> list[GroupRecord]:
        """Many security groups with all their rules, in one query."""
        rules = related.rules_by_group(s, [r.id for r in rows])
        return [GroupRecord(r, rules.get(r.id, [])) for r in rows]

    def _group(self, s: Session, ctx: RequestContext, group_id: Any) -> m.SecurityGroup:
        row = s.get(m.SecurityGroup, group_id) if isinstance(group_id, str) else None
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise SecurityGroupNotFound(f"Security group {str(group_id)[:64]} does not exist")
        return row

    def create_security_group(self, ctx: RequestContext, body: dict[str, Any]) -> GroupRecord:
        only_fields(
            body,
            frozenset({"name", "description", "project_id", "tenant_id", "stateful", "tags"}),
            "security_group",
        )
        project_id = owner_of(ctx, body)
        name = text_of(body, "name")
        if name == "default":
            raise Conflict("Default security group already exists.")
        if project_id:
            self.ensure_default_group(project_id)
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            self.quotas.claim(s, project_id, "security_group")
            self.quotas.claim(s, project_id, "security_group_rule", 2)
            now = self._now()
            row = m.SecurityGroup(
                id=new_id(),
                project_id=project_id,
                name=name,
                description=text_of(body, "description"),
                revision_number=1,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            for ethertype in ("IPv4", "IPv6"):
                s.add(self._rule_row(row, "egress", ethertype))
            s.flush()
            return self.record(s, row)

    def get_security_group(self, ctx: RequestContext, group_id: str) -> GroupRecord:
        with self.db.session() as s:
            return self.record(s, self._group(s, ctx, group_id))

    def list_security_groups(self, ctx: RequestContext) -> list[GroupRecord]:
        if ctx.project_id:
            self.ensure_default_group(ctx.project_id)
        with self.db.session() as s:
            return self.records(s, self._owned_rows(s, ctx, m.SecurityGroup))

    def update_security_group(
        self, ctx: RequestContext, group_id: str, body: dict[str, Any]
    ) -> GroupRecord:
        only_fields(body, frozenset({"name", "description", "stateful"}), "security_group")
        with self.db.session() as s:
            row = self._group(s, ctx, group_id)
            if "name" in body:
                name = text_of(body, "name")
                if row.default_for_project and name != "default":
                    raise Conflict("Updating default security group not allowed.")
                if not row.default_for_project and name == "default":
                    raise Conflict("Default security group already exists.")
                row.name = name
            if "description" in body:
                row.description = text_of(body, "description")
            row.revision_number += 1
            row.updated_at = self._now()
            return self.record(s, row)

    def delete_security_group(self, ctx: RequestContext, group_id: str) -> None:
        with self.db.session() as s:
            row = self._group(s, ctx, group_id)
            if row.default_for_project and not ctx.is_admin:
                raise SecurityGroupCannotRemoveDefault(
                    "Insufficient rights for removing default security group."
                )
            used = s.scalar(
                select(func.count())
                .select_from(m.PortSecurityGroup)
                .where(m.PortSecurityGroup.security_group_id == row.id)
            )
            if used:
                raise SecurityGroupInUse(f"Security Group {row.id} in use.")
            s.execute(
                delete(m.SecurityGroupRule).where(m.SecurityGroupRule.security_group_id == row.id)
            )
            s.delete(row)

    RULE_FIELDS = frozenset(
        {
            "security_group_id",
            "direction",
            "ethertype",
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group_id",
            "remote_address_group_id",
            "description",
            "project_id",
            "tenant_id",
        }
    )

    def _rule_fields(self, s: Session, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        direction = body.get("direction")
        if direction not in ("ingress", "egress"):
            raise InvalidInput(
                f"Invalid input for direction. Reason: '{str(direction)[:32]}' is not in "
                "['ingress', 'egress']."
            )
        ethertype = body.get("ethertype", "IPv4")
        if ethertype not in ("IPv4", "IPv6"):
            raise InvalidInput(
                f"Invalid input for ethertype. Reason: '{str(ethertype)[:32]}' is not in "
                "['IPv4', 'IPv6']."
            )
        protocol = _protocol(body.get("protocol"))
        low = int_of(body.get("port_range_min"), "port_range_min")
        high = int_of(body.get("port_range_max"), "port_range_max")
        _check_ports(protocol, low, high)
        prefix = body.get("remote_ip_prefix")
        group_id = body.get("remote_group_id")
        if prefix is not None and group_id is not None:
            raise BadRequest("Only remote_ip_prefix or remote_group_id may be provided.")
        if prefix is not None:
            try:
                net = (
                    ipaddress.ip_network(prefix, strict=False) if isinstance(prefix, str) else None
                )
            except ValueError:
                net = None
            if net is None or len(prefix) > 64:
                raise InvalidInput(
                    f"Invalid input for remote_ip_prefix. Reason: '{str(prefix)[:32]}' is not a "
                    "valid IP prefix."
                )
            if f"IPv{net.version}" != ethertype:
                raise BadRequest(f"Conflicting value ethertype {ethertype} for CIDR {prefix}")
            prefix = str(net)
        if group_id is not None:
            group_id = self._group(s, ctx, group_id).id
        return {
            "direction": direction,
            "ethertype": ethertype,
            "protocol": protocol,
            "port_range_min": low,
            "port_range_max": high,
            "remote_ip_prefix": prefix,
            "remote_group_id": group_id,
            "description": text_of(body, "description"),
        }

    def create_security_group_rule(
        self, ctx: RequestContext, body: dict[str, Any]
    ) -> m.SecurityGroupRule:
        only_fields(body, self.RULE_FIELDS, "security_group_rule")
        with self.db.session() as s:
            group = self._group(s, ctx, body.get("security_group_id"))
            fields = self._rule_fields(s, ctx, body)
            self._lock_quota(s, group.project_id)
            self.quotas.claim(s, group.project_id, "security_group_rule")
            same = [
                r
                for r in s.scalars(
                    select(m.SecurityGroupRule).where(
                        m.SecurityGroupRule.security_group_id == group.id
                    )
                ).all()
                if _same_rule(r, fields)
            ]
            if same:
                raise SecurityGroupRuleExists(
                    f"Security group rule already exists. Rule id is {same[0].id}."
                )
            row = self._rule_row(group, **fields)
            s.add(row)
            group.revision_number += 1
            s.flush()
        self._sync_firewall_for(row.security_group_id)
        return row

    def _sync_firewall_for(self, group_id: str) -> None:
        """A group's rules changed: rewrite the firewall if a wired port carries them."""
        with self.db.session() as s:
            carried = s.scalar(
                select(func.count())
                .select_from(m.PortSecurityGroup)
                .join(m.Port, m.Port.id == m.PortSecurityGroup.port_id)
                .where(
                    m.PortSecurityGroup.security_group_id == group_id,
                    m.Port.status == "ACTIVE",
                    m.Port.host != "",
                )
            )
        if carried:
            self.wiring.sync_firewall()

    def _rule(self, s: Session, ctx: RequestContext, rule_id: Any) -> m.SecurityGroupRule:
        row = s.get(m.SecurityGroupRule, rule_id) if isinstance(rule_id, str) else None
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise SecurityGroupRuleNotFound(
                f"Security group rule {str(rule_id)[:64]} does not exist"
            )
        return row

    def get_security_group_rule(self, ctx: RequestContext, rule_id: str) -> m.SecurityGroupRule:
        with self.db.session() as s:
            return self._rule(s, ctx, rule_id)

    def list_security_group_rules(self, ctx: RequestContext) -> list[m.SecurityGroupRule]:
        if ctx.project_id:
            self.ensure_default_group(ctx.project_id)
        with self.db.session() as s:
            return list(self._owned_rows(s, ctx, m.SecurityGroupRule))

    def delete_security_group_rule(self, ctx: RequestContext, rule_id: str) -> None:
        with self.db.session() as s:
            row = self._rule(s, ctx, rule_id)
            group_id = row.security_group_id
            s.delete(row)
        self._sync_firewall_for(group_id)


def _protocol(value: Any) -> str | None:
    if value is None or value in ("any", ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 16:
        raise InvalidInput("Invalid input for protocol. Reason: a name or a number 0-255.")
    lowered = value.lower()
    if lowered in PROTOCOLS:
        return lowered
    if lowered.isdigit() and 0 <= int(lowered) <= 255:
        return str(int(lowered))
    raise InvalidInput(
        f"Security group rule protocol {value[:16]} not supported. Only protocol values "
        f"{sorted(PROTOCOLS)} and integer representations [0 to 255] are supported."
    )


def _check_ports(protocol: str | None, low: int | None, high: int | None) -> None:
    """Neutron's port range semantics: TCP-like ports 1-65535 and min <= max;
    for ICMP, min is the type and max the code (0-255), and a code needs a type."""
    if low is None and high is None:
        return
    if protocol is None:
        raise BadRequest("Must also specify protocol if port range is given.")
    if protocol in ICMP_PROTOCOLS:
        for value, name in ((low, "type"), (high, "code")):
            if value is not None and not 0 <= value <= 255:
                raise BadRequest(
                    f"Invalid value for ICMP {name} (port_range_min or port_range_max): {value}. "
                    "It must be 0 to 255."
                )
        if low is None:
            raise BadRequest(
                f"ICMP code (port-range-max) {high} is provided but ICMP type (port-range-min) "
                "is missing."
            )
        return
    if protocol not in PORT_PROTOCOLS:
        raise BadRequest(
            f"Invalid protocol {protocol} for port range, only supported for TCP, "
            "UDP, UDPLITE, SCTP and DCCP."
        )
    if low == 0 or high == 0:
        raise BadRequest("Invalid value for port 0.")
    if low is None or high is None or not 1 <= low <= high <= 65535:
        raise BadRequest(
            "For TCP/UDP protocols, port_range_min must be <= port_range_max and both between "
            "1 and 65535."
        )


def _same_rule(row: m.SecurityGroupRule, fields: dict[str, Any]) -> bool:
    keys = (
        "direction",
        "ethertype",
        "protocol",
        "port_range_min",
        "port_range_max",
        "remote_group_id",
    )
    if any(getattr(row, k) != fields[k] for k in keys):
        return False

    # Neutron treats "any address" as the same as no prefix
    def norm(prefix: str | None) -> str | None:
        return None if prefix in ("0.0.0.0/0", "::/0") else prefix

    return norm(row.remote_ip_prefix) == norm(fields["remote_ip_prefix"])
