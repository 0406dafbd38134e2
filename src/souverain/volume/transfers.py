"""Volume transfers: a project offers a volume, another accepts it with the key. No HTTP.

Creating a transfer moves an available volume to `awaiting-transfer` and answers a
random key once; only a salted hash of it is kept. Whoever holds the transfer's id and
key accepts it into their own project: the volume (and, unless `no_snapshots`, its
snapshots) changes project within the new project's quota, and the offer ends. Deleting
the transfer returns the volume to `available`. A project sees only its own offers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from souverain.common.audit import note_target_project
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound
from souverain.common.tenancy import may_act_on
from souverain.volume import models as m
from souverain.volume.quotas import Quotas
from souverain.volume.rules import UUID_RE, Shared, visible_volume

KEY_BYTES = 8  # 16 hex characters, as Cinder's keys


@dataclass(frozen=True)
class TransferCreate:
    volume_id: str
    name: str | None
    no_snapshots: bool = False


@dataclass(frozen=True)
class Transfer:
    """A transfer as shown; `auth_key` only in the answer to its creation."""

    id: str
    volume_id: str
    name: str | None
    created_at: dt.datetime
    source_project_id: str
    destination_project_id: str | None
    accepted: bool
    no_snapshots: bool
    auth_key: str | None = None


def _hash(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}{key}".encode()).hexdigest()


def _record(row: m.VolumeTransfer, auth_key: str | None = None) -> Transfer:
    return Transfer(
        row.id,
        row.volume_id,
        row.name,
        row.created_at,
        row.source_project_id,
        row.destination_project_id,
        row.accepted,
        row.no_snapshots,
        auth_key,
    )


class Transfers:
    def __init__(self, shared: Shared, quotas: Quotas) -> None:
        self.shared = shared
        self.quotas = quotas

    def _find(self, s: Session, transfer_id: str) -> m.VolumeTransfer:
        row = s.get(m.VolumeTransfer, transfer_id.lower()) if UUID_RE.match(transfer_id) else None
        if row is None:
            raise NotFound(f"Transfer {transfer_id[:64]} could not be found.")
        return row

    def _own(self, s: Session, ctx: RequestContext, transfer_id: str) -> m.VolumeTransfer:
        row = self._find(s, transfer_id)
        if not may_act_on(ctx, row.source_project_id):
            raise NotFound(f"Transfer {transfer_id[:64]} could not be found.")
        return row

    def create(self, ctx: RequestContext, req: TransferCreate) -> Transfer:
        key = secrets.token_hex(KEY_BYTES)
        salt = secrets.token_hex(8)
        with self.shared.db.session() as s:
            vol = visible_volume(s, ctx, req.volume_id)
            if vol.status != "available":
                raise BadRequest(
                    f"Invalid volume: Volume {req.volume_id} is {vol.status}; only an available "
                    "volume can be transferred (detach it first)."
                )
            if vol.encryption_key_id is not None:
                raise BadRequest(
                    f"Invalid volume: Volume {req.volume_id} is encrypted; its key belongs to "
                    "this project in the key manager, so it cannot be transferred."
                )
            if req.no_snapshots and s.scalar(
                select(func.count(m.Snapshot.id)).where(m.Snapshot.volume_id == vol.id)
            ):
                raise BadRequest(
                    f"Invalid volume: Volume {req.volume_id} has snapshots; transfer it with "
                    "them (no_snapshots false) or delete them first."
                )
            moved = s.execute(
                update(m.Volume)
                .where(m.Volume.id == vol.id, m.Volume.status == "available")
                .values(status="awaiting-transfer", updated_at=self.shared.clock.now())
                .returning(m.Volume.id)
            ).first()
            if moved is None:
                raise BadRequest(f"Invalid volume: Volume {req.volume_id} changed; try again.")
            row = m.VolumeTransfer(
                id=str(uuid.uuid4()),
                volume_id=vol.id,
                name=req.name,
                salt=salt,
                crypt_hash=_hash(salt, key),
                source_project_id=vol.project_id,
                destination_project_id=None,
                accepted=False,
                no_snapshots=req.no_snapshots,
                created_at=self.shared.clock.now(),
            )
            s.add(row)
            s.flush()
            return _record(row, key)

    def list_visible(self, ctx: RequestContext, all_tenants: bool = False) -> list[Transfer]:
        with self.shared.db.session() as s:
            stmt = select(m.VolumeTransfer).where(m.VolumeTransfer.accepted.is_(False))
            if not (ctx.is_admin and all_tenants):
                stmt = stmt.where(m.VolumeTransfer.source_project_id == (ctx.project_id or ""))
            stmt = stmt.order_by(m.VolumeTransfer.created_at.desc())
            return [_record(r) for r in s.scalars(stmt)]

    def get(self, ctx: RequestContext, transfer_id: str) -> Transfer:
        with self.shared.db.session() as s:
            return _record(self._own(s, ctx, transfer_id))

    def delete(self, ctx: RequestContext, transfer_id: str) -> None:
        with self.shared.db.session() as s:
            row = self._own(s, ctx, transfer_id)
            s.execute(
                update(m.Volume)
                .where(m.Volume.id == row.volume_id, m.Volume.status == "awaiting-transfer")
                .values(status="available", updated_at=self.shared.clock.now())
            )
            s.delete(row)

    def accept(self, ctx: RequestContext, transfer_id: str, auth_key: str) -> Transfer:
        """Into the caller's project, within its quota; a wrong key is a 400 as in Cinder."""
        if not ctx.project_id:
            raise Forbidden("A transfer is accepted into a project: use a project-scoped token.")
        with self.shared.db.session() as s:
            row = self._find(s, transfer_id)
            if not hmac.compare_digest(row.crypt_hash, _hash(row.salt, auth_key)):
                raise BadRequest(
                    f"Invalid auth key: Attempt to transfer {transfer_id} with invalid auth key."
                )
            vol = s.get(m.Volume, row.volume_id)
            if vol is None or vol.status != "awaiting-transfer":
                raise BadRequest(f"Invalid volume: the volume of transfer {transfer_id} moved.")
            note_target_project(vol.project_id)  # the giving project's owners see it go
            snaps = list(s.scalars(select(m.Snapshot).where(m.Snapshot.volume_id == vol.id)))
            source, size = vol.project_id, vol.size
            self.quotas.lock(s, ctx.project_id)
            self.quotas.claim(
                s,
                ctx.project_id,
                volumes=1,
                gigabytes=size + sum(x.size for x in snaps),
                snapshots=len(snaps),
            )
            now = self.shared.clock.now()
            vol.project_id, vol.user_id = ctx.project_id, ctx.user_id
            vol.status, vol.updated_at = "available", now
            for snap in snaps:
                snap.project_id, snap.user_id, snap.updated_at = ctx.project_id, ctx.user_id, now
            record = _record(row)
            s.delete(row)
        self._meter(source, ctx.project_id, vol.id, size, [(x.id, x.size) for x in snaps])
        return record

    def _meter(
        self, source: str, dest: str, volume_id: str, size: int, snaps: list[tuple[str, int]]
    ) -> None:
        """The billing follows the volume: it ends for the giver, starts for the taker."""
        meter = self.shared.meter
        meter.gauge(source, "volume.gb", volume_id, 0)
        meter.gauge(dest, "volume.gb", volume_id, size)
        for snap_id, snap_size in snaps:
            meter.gauge(source, "snapshot.gb", snap_id, 0)
            meter.gauge(dest, "snapshot.gb", snap_id, snap_size)
