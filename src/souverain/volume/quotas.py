"""Volume quotas: a project's limits, what it uses, and the claim every create makes. No HTTP.

Quotas (volumes, gigabytes = volumes + snapshots, snapshots) are checked and
the new row inserted in one transaction that first locks the project's
`volume_quotas` row (`common.quota.lock_quota_row`), so concurrent creates in
any number of processes serialise on the project and cannot overshoot.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden
from souverain.common.quota import effective_limits, lock_quota_row
from souverain.common.tenancy import may_act_on
from souverain.volume import models as m
from souverain.volume.rules import QuotaExceeded, QuotaSet, Shared

# Cinder's defaults for the backup quotas (not in the settings yet)
BACKUP_DEFAULTS = {"backups": 10, "backup_gigabytes": 1000}


class Quotas:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def defaults(self) -> dict[str, int]:
        settings = self.shared.settings
        return {
            "volumes": settings.quota_volumes,
            "gigabytes": settings.quota_gigabytes,
            "snapshots": settings.quota_snapshots,
            **BACKUP_DEFAULTS,
            "per_volume_gigabytes": -1,  # only the operator's cap (max_volume_gib)
        }

    def limits_of(self, s: Session, project_id: str) -> dict[str, int]:
        return effective_limits(s, m.VolumeQuota, project_id, self.defaults())

    @staticmethod
    def usage_of(s: Session, project_id: str) -> dict[str, int]:
        count, vol_gb = s.execute(
            select(func.count(m.Volume.id), func.coalesce(func.sum(m.Volume.size), 0)).where(
                m.Volume.project_id == project_id
            )
        ).one()
        snaps, snap_gb = s.execute(
            select(func.count(m.Snapshot.id), func.coalesce(func.sum(m.Snapshot.size), 0)).where(
                m.Snapshot.project_id == project_id
            )
        ).one()
        backups, backup_gb = s.execute(
            select(
                func.count(m.VolumeBackup.id), func.coalesce(func.sum(m.VolumeBackup.size), 0)
            ).where(m.VolumeBackup.project_id == project_id)
        ).one()
        return {
            "volumes": int(count),
            "gigabytes": int(vol_gb) + int(snap_gb),
            "snapshots": int(snaps),
            "backups": int(backups),
            "backup_gigabytes": int(backup_gb),
        }

    def lock(self, s: Session, project_id: str) -> None:
        """Take the project's quota row for this transaction (see the module's note)."""
        lock_quota_row(s, m.VolumeQuota, project_id, self.shared.clock.now())

    def claim(
        self, s: Session, project_id: str, volumes: int = 0, gigabytes: int = 0, snapshots: int = 0
    ) -> None:
        """Refuse (413) what would exceed the project's quota; call after `lock`."""
        limits = self.limits_of(s, project_id)
        used = self.usage_of(s, project_id)
        if volumes and 0 <= limits["volumes"] < used["volumes"] + volumes:
            raise QuotaExceeded(
                f"VolumeLimitExceeded: Maximum number of volumes allowed ({limits['volumes']}) "
                "exceeded for quota 'volumes'."
            )
        if snapshots and 0 <= limits["snapshots"] < used["snapshots"] + snapshots:
            raise QuotaExceeded(
                f"SnapshotLimitExceeded: Maximum number of snapshots allowed "
                f"({limits['snapshots']}) exceeded for quota 'snapshots'."
            )
        if gigabytes and 0 <= limits["gigabytes"] < used["gigabytes"] + gigabytes:
            raise QuotaExceeded(
                "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
                f"gigabytes quota. Requested {gigabytes}G, quota is {limits['gigabytes']}G and "
                f"{used['gigabytes']}G has been consumed."
            )

    def check_volume_size(self, s: Session, project_id: str, size: int) -> None:
        """Refuse (413) a volume larger than the project's per_volume_gigabytes."""
        largest = self.limits_of(s, project_id)["per_volume_gigabytes"]
        if 0 <= largest < size:
            raise QuotaExceeded(
                f"VolumeSizeExceedsLimit: Requested volume size {size}G is larger than maximum "
                f"allowed limit {largest}G; ask an admin to raise per_volume_gigabytes."
            )

    def _quota_set(
        self, project_id: str, limits: dict[str, int], used: dict[str, int] | None
    ) -> QuotaSet:
        settings = self.shared.settings
        largest = limits.get("per_volume_gigabytes", -1)
        if not 0 <= largest <= settings.max_volume_gib:  # the operator's cap bounds it
            largest = settings.max_volume_gib
        return QuotaSet(project_id, limits, used, settings.default_type, largest)

    def show(self, ctx: RequestContext, project_id: str, usage: bool) -> QuotaSet:
        if not may_act_on(ctx, project_id):
            raise Forbidden("Policy doesn't allow this operation: only your own project's quotas.")
        with self.shared.db.session() as s:
            limits = self.limits_of(s, project_id)
            used = self.usage_of(s, project_id)
        return self._quota_set(project_id, limits, used if usage else None)

    def show_defaults(self, project_id: str) -> QuotaSet:
        return self._quota_set(project_id, self.defaults(), None)

    def usage(self, ctx: RequestContext) -> QuotaSet:
        """The caller's project: its limits and what it uses (`GET /limits`)."""
        project_id = ctx.project_id or ""
        with self.shared.db.session() as s:
            limits = self.limits_of(s, project_id)
            used = self.usage_of(s, project_id)
        return self._quota_set(project_id, limits, used)

    def update(self, ctx: RequestContext, project_id: str, changes: dict[str, int]) -> QuotaSet:
        if not ctx.is_admin:
            raise Forbidden("Policy doesn't allow volume_extension:quotas:update to be performed.")
        _check_project(project_id)
        with self.shared.db.session() as s:
            self.lock(s, project_id)
            row = s.get(m.VolumeQuota, project_id)
            assert row is not None
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = self.shared.clock.now()
        return self.show(ctx, project_id, usage=False)

    def reset(self, ctx: RequestContext, project_id: str) -> None:
        """Back to the configured defaults; the row stays, as the lock of later claims."""
        if not ctx.is_admin:
            raise Forbidden("Policy doesn't allow volume_extension:quotas:delete to be performed.")
        _check_project(project_id)
        with self.shared.db.session() as s:
            self.lock(s, project_id)
            row = s.get(m.VolumeQuota, project_id)
            assert row is not None
            row.volumes = row.gigabytes = row.snapshots = None
            row.backups = row.backup_gigabytes = row.per_volume_gigabytes = None
            row.updated_at = self.shared.clock.now()


def _check_project(project_id: str) -> None:
    if not project_id or len(project_id) > 64:
        raise BadRequest("Invalid project id.")
