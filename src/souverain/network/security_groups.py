"""Security groups and their rules, the project's default group included.

Rules are rows here; `wiring` turns them into the one nftables transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import Conflict
from souverain.common.ids import new_id
from souverain.common.tenancy import may_act_on
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
from souverain.network.fields import owner_named
from souverain.network.schemas import GroupBody, RuleBody


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
        if row is None or not may_act_on(ctx, row.project_id):
            raise SecurityGroupNotFound(f"Security group {str(group_id)[:64]} does not exist")
        return row

    def create_security_group(self, ctx: RequestContext, body: GroupBody) -> GroupRecord:
        project_id = owner_named(ctx, body.owner)
        name = body.name or ""
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
                description=body.description or "",
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
        self, ctx: RequestContext, group_id: str, body: GroupBody
    ) -> GroupRecord:
        with self.db.session() as s:
            row = self._group(s, ctx, group_id)
            if body.name is not None:
                name = body.name
                if row.default_for_project and name != "default":
                    raise Conflict("Updating default security group not allowed.")
                if not row.default_for_project and name == "default":
                    raise Conflict("Default security group already exists.")
                row.name = name
            if body.description is not None:
                row.description = body.description
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

    def _rule_fields(self, s: Session, ctx: RequestContext, body: RuleBody) -> dict[str, Any]:
        """The rule's columns; a remote group must be one the caller may see."""
        group_id = body.remote_group_id
        if group_id is not None:
            group_id = self._group(s, ctx, group_id).id
        return {
            "direction": body.direction,
            "ethertype": body.ethertype,
            "protocol": body.protocol,
            "port_range_min": body.port_range_min,
            "port_range_max": body.port_range_max,
            "remote_ip_prefix": body.remote_ip_prefix,
            "remote_group_id": group_id,
            "description": body.description,
        }

    def create_security_group_rule(
        self, ctx: RequestContext, body: RuleBody
    ) -> m.SecurityGroupRule:
        with self.db.session() as s:
            group = self._group(s, ctx, body.security_group_id)
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
        if row is None or not may_act_on(ctx, row.project_id):
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
