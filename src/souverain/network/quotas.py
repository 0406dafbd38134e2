"""Network quotas: the limits, the usage, and the claim every create makes.

A claim runs after `_lock_quota` in the creating transaction, so concurrent creates
cannot overshoot a limit; nothing here creates or deletes a resource."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.quota import effective_limits
from souverain.common.tenancy import may_act_on
from souverain.network import models as m
from souverain.network.core import Part
from souverain.network.errors import OverQuota, PolicyNotAuthorized
from souverain.network.fields import QUOTA_RESOURCES, check_id, int_of
from souverain.network.ipam import InvalidInput


class Quotas(Part):
    """Per-project limits on each network resource, and the checks against them."""

    def default_limits(self) -> dict[str, int]:
        st = self.settings
        return {
            "network": st.quota_networks,
            "subnet": st.quota_subnets,
            "port": st.quota_ports,
            "router": st.quota_routers,
            "floatingip": st.quota_floatingips,
            "security_group": st.quota_security_groups,
            "security_group_rule": st.quota_security_group_rules,
            "subnetpool": st.quota_subnetpools,
        }

    def _limits_of(self, s: Session, project_id: str) -> dict[str, int]:
        return effective_limits(s, m.NetworkQuota, project_id, self.default_limits())

    def _usage_of(self, s: Session, project_id: str) -> dict[str, int]:
        def count(model: Any) -> int:
            return int(
                s.scalar(
                    select(func.count()).select_from(model).where(model.project_id == project_id)
                )
                or 0
            )

        return {
            "network": count(m.Network),
            "subnet": count(m.Subnet),
            "port": count(m.Port),
            "router": count(m.Router),
            "floatingip": count(m.FloatingIp),
            "security_group": count(m.SecurityGroup),
            "security_group_rule": count(m.SecurityGroupRule),
            "subnetpool": count(m.SubnetPool),
        }

    def claim(self, s: Session, project_id: str, resource: str, count: int = 1) -> None:
        """Refuse (409 OverQuota) what would pass the limit; call after `_lock_quota`."""
        if not project_id:
            return
        limit = self._limits_of(s, project_id)[resource]
        if limit < 0:
            return
        used = self._usage_of(s, project_id)[resource]
        if used + count > limit:
            raise OverQuota(f"Quota exceeded for resources: ['{resource}'].")

    def _quota_scope(self, ctx: RequestContext, project_id: str) -> None:
        if not may_act_on(ctx, project_id):
            raise PolicyNotAuthorized("rule:get_quota is disallowed by policy")

    def quota_of(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        self._quota_scope(ctx, project_id)
        with self.db.session() as s:
            return self._limits_of(s, project_id)

    def quota_details(self, ctx: RequestContext, project_id: str) -> dict[str, Any]:
        self._quota_scope(ctx, project_id)
        with self.db.session() as s:
            limits, used = self._limits_of(s, project_id), self._usage_of(s, project_id)
        return {k: {"limit": limits[k], "used": used[k], "reserved": 0} for k in QUOTA_RESOURCES}

    def list_quotas(self, ctx: RequestContext) -> list[dict[str, Any]]:
        if not ctx.is_admin:
            raise PolicyNotAuthorized("rule:get_quota is disallowed by policy")
        with self.db.session() as s:
            ids = s.scalars(select(m.NetworkQuota.project_id)).all()
            out = []
            for pid in ids:
                row = s.get(m.NetworkQuota, pid)
                if row is not None and any(getattr(row, k) is not None for k in QUOTA_RESOURCES):
                    out.append({**self._limits_of(s, pid), "project_id": pid, "tenant_id": pid})
            return out

    def update_quota(
        self, ctx: RequestContext, project_id: str, changes: dict[str, Any]
    ) -> dict[str, int]:
        if not ctx.is_admin:
            raise PolicyNotAuthorized("rule:update_quota is disallowed by policy")
        check_id(project_id, "project_id")
        clean: dict[str, int] = {}
        for key, value in changes.items():
            if key not in QUOTA_RESOURCES:
                raise BadRequest(f"Unrecognized attribute(s) '{str(key)[:64]}'")
            number = int_of(value, key)
            if number is None or number < -1:
                raise InvalidInput(f"Invalid input for {key}. Reason: '{value}' is not -1 or more.")
            clean[key] = number
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            row = s.get(m.NetworkQuota, project_id)
            assert row is not None
            for key, number in clean.items():
                setattr(row, key, number)
            row.updated_at = self._now()
            s.flush()
            return self._limits_of(s, project_id)

    def reset_quota(self, ctx: RequestContext, project_id: str) -> None:
        if not ctx.is_admin:
            raise PolicyNotAuthorized("rule:delete_quota is disallowed by policy")
        with self.db.session() as s:
            row = s.get(m.NetworkQuota, project_id)
            if row is not None:
                for key in QUOTA_RESOURCES:
                    setattr(row, key, None)
