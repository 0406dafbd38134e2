"""Compute quotas: the limits a project is held to and what counts against them.

Creates lock the project's quota row (INSERT .. ON CONFLICT DO NOTHING, then SELECT ..
FOR UPDATE) in the transaction that inserts the servers, as the volume and network
services do: concurrent creates in any number of processes cannot overshoot.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden
from souverain.common.quota import effective_limits, lock_quota_row
from souverain.common.tenancy import may_act_on
from souverain.compute.core import ComputeCore
from souverain.compute.models import ComputeQuota, Keypair, Server

# The quotas a project is held to (defaults in settings, overrides in `compute_quotas`).
QUOTA_RESOURCES = ("instances", "cores", "ram", "key_pairs", "metadata_items")


def _scope(ctx: RequestContext, project_id: str) -> None:
    if not may_act_on(ctx, project_id):
        raise Forbidden("Policy doesn't allow os_compute_api:os-quota-sets:show to be performed.")


def metadata_over_quota(limit: int) -> str:
    """Nova's words (MetadataLimitExceeded) for a server's metadata over the quota."""
    return f"Maximum number of metadata items exceeds {limit}"


def _servers_held(s: Session, project_id: str) -> dict[str, int]:
    count, cores, ram = s.execute(
        select(
            func.count(Server.id),
            func.coalesce(func.sum(Server.vcpus), 0),
            func.coalesce(func.sum(Server.memory_mib), 0),
        ).where(Server.project_id == project_id, Server.deleted.is_(False))
    ).one()
    return {"instances": int(count), "cores": int(cores), "ram": int(ram)}


class Quotas:
    def __init__(self, core: ComputeCore) -> None:
        self.core = core
        self.db = core.db

    def default_quotas(self) -> dict[str, int]:
        st = self.core.settings
        return {
            "instances": st.quota_instances,
            "cores": st.quota_cores,
            "ram": st.quota_ram,
            "key_pairs": st.quota_key_pairs,
            "metadata_items": st.quota_metadata_items,
        }

    def limits_of(self, s: Session, project_id: str) -> dict[str, int]:
        return effective_limits(s, ComputeQuota, project_id, self.default_quotas())

    @staticmethod
    def usage_of(s: Session, project_id: str, user_id: str) -> dict[str, int]:
        """What counts against each limit; key pairs are the caller's (Nova's are per user)."""
        keys = s.scalar(select(func.count()).where(Keypair.user_id == user_id)) if user_id else 0
        return {**_servers_held(s, project_id), "key_pairs": int(keys or 0), "metadata_items": 0}

    def lock(self, s: Session, project_id: str) -> None:
        """Take the project's quota row for this transaction (see the module's note)."""
        lock_quota_row(s, ComputeQuota, project_id, self.core.now())

    def quota_limits(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        """The project's effective limits; a member sees only its own project's."""
        _scope(ctx, project_id)
        with self.db.session() as s:
            return self.limits_of(s, project_id)

    def quota_usage(
        self, ctx: RequestContext, project_id: str
    ) -> tuple[dict[str, int], dict[str, int]]:
        """(limits, in use) of the project."""
        _scope(ctx, project_id)
        with self.db.session() as s:
            user_id = ctx.user_id if project_id == ctx.project_id else ""
            return self.limits_of(s, project_id), self.usage_of(s, project_id, user_id)

    def update_quota(
        self, ctx: RequestContext, project_id: str, changes: dict[str, int], force: bool
    ) -> dict[str, int]:
        """Set overrides (validated at the edge); below what is in use needs `force`."""
        if not ctx.is_admin:
            raise Forbidden(
                "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed."
            )
        if not project_id or len(project_id) > 64:
            raise BadRequest("Invalid project id.")
        with self.db.session() as s:
            self.lock(s, project_id)
            if not force:
                used = self.usage_of(s, project_id, "")
                for key, value in changes.items():
                    if key in ("instances", "cores", "ram") and 0 <= value < used[key]:
                        raise BadRequest(
                            f"Quota limit {value} for {key} must be greater than or equal to "
                            f"already used and reserved {used[key]}."
                        )
            row = s.get(ComputeQuota, project_id)
            assert row is not None
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = self.core.now()
            s.flush()
            return self.limits_of(s, project_id)

    def reset_quota(self, ctx: RequestContext, project_id: str) -> None:
        """Back to the configured defaults."""
        if not ctx.is_admin:
            raise Forbidden(
                "Policy doesn't allow os_compute_api:os-quota-sets:delete to be performed."
            )
        with self.db.session() as s:
            row = s.get(ComputeQuota, project_id)
            if row is not None:
                s.delete(row)

    def servers_that_fit(
        self,
        s: Session,
        project_id: str,
        min_count: int,
        max_count: int,
        metadata_items: int,
        flavor: dict[str, Any],
    ) -> int:
        """How many servers of this flavor the project's quota admits (at most
        `max_count`); 403 if not `min_count`."""
        limits = self.limits_of(s, project_id)
        if 0 <= limits["metadata_items"] < metadata_items:
            raise Forbidden(metadata_over_quota(limits["metadata_items"]))
        in_use = _servers_held(s, project_id)
        each = {"instances": 1, "cores": int(flavor["vcpus"]), "ram": int(flavor["ram"])}
        fit = max_count
        for resource in ("instances", "cores", "ram"):
            limit = limits[resource]
            if limit < 0:
                continue
            room = (limit - in_use[resource]) // each[resource] if each[resource] else fit
            if room < min_count:
                requested = each[resource] * min_count
                raise Forbidden(
                    f"Quota exceeded for {resource}: Requested {requested}, but already used "
                    f"{in_use[resource]} of {limit} {resource}"
                )
            fit = min(fit, room)
        return fit
