"""Attachments: the volume side of attach and detach, as the compute service drives them.

A volume holds at most one attachment. Compute reserves (available ->
attaching), attaches the disk to the guest, then marks it attached (-> in-use),
or unreserves on failure; detach is begin_detach (-> detaching), then detached
(-> available) or roll_back_detach (-> in-use). Each step is one move of the
status table; whatever a crash cuts short, compute's reconcile finishes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.volume import models as m
from souverain.volume.backend import VolumeLocation
from souverain.volume.encryption import VolumeKeys
from souverain.volume.rules import (
    SERVERS_PER_QUERY,
    ServerVolume,
    Shared,
    VolumeHandle,
    visible_volume,
)
from souverain.volume.state import VolumeStates

# What a reservation may keep on the row for the attach to come (an agent host's).
HELD = frozenset({"device", "attachment_id", "delete_on_termination"})


class Attachments:
    def __init__(self, shared: Shared, states: VolumeStates) -> None:
        self.shared = shared
        self.states = states

    def handle(self, volume_id: str) -> VolumeHandle:
        with self.shared.db.session() as s:
            row = s.get(m.Volume, volume_id)
            if row is None:
                raise NotFound(f"Volume {volume_id} could not be found.")
            where = self.shared.backend.location(row.id)
            project_id, key_id = row.project_id, row.encryption_key_id
            handle = VolumeHandle(
                id=row.id,
                path=where.path,
                format=opened_as(where, key_id is not None),
                size_gib=row.size,
                readonly=row.readonly,
                bootable=row.bootable,
                rbd=where.rbd,
                ceph=where.ceph,
            )
        if key_id is None:
            return handle
        # the key manager is asked outside the volume's session
        passphrase = VolumeKeys(self.shared).passphrase(project_id, key_id)
        return dataclasses.replace(handle, passphrase=passphrase.text)

    def reserve(
        self, ctx: RequestContext, volume_id: str, server_id: str, **held: Any
    ) -> VolumeHandle:
        """available -> attaching for `server_id`; `held` (device, attachment_id,
        delete_on_termination) is kept on the row while a host agent plugs it in."""
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            vid, status = row.id, row.status
        held = {k: v for k, v in held.items() if k in HELD}
        moved = status == "available" and self.states.move(
            vid, "reserve", server_id=server_id, **held
        )
        if not moved:
            with self.shared.db.session() as s:
                now_row = s.get(m.Volume, vid)
                status = now_row.status if now_row else "deleted"
            raise BadRequest(f"Volume {volume_id} is {status}; it must be available to attach.")
        try:
            return self.handle(vid)
        except Exception:  # an encrypted volume whose key cannot be read: not attached
            self.unreserve(vid)
            raise

    def attached(
        self,
        volume_id: str,
        server_id: str,
        device: str,
        attachment_id: str,
        delete_on_termination: bool = False,
    ) -> None:
        with self.shared.db.session() as s:
            seq = s.scalar(select(func.coalesce(func.max(m.Volume.attach_seq), 0))) or 0
        moved = self.states.move(
            volume_id,
            "attached",
            server_id=server_id,
            device=device,
            attachment_id=attachment_id,
            attached_at=self.shared.clock.now(),
            attach_seq=int(seq) + 1,
            delete_on_termination=delete_on_termination,
        )
        if not moved:
            raise BadRequest(f"Volume {volume_id} is not being attached.")

    def user_reserve(self, ctx: RequestContext, volume_id: str) -> None:
        """Cinder's os-reserve: an available volume held (`attaching`) for an attach to come."""
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            vid, status = row.id, row.status
        if status != "available" or not self.states.move(vid, "reserve"):
            raise BadRequest(
                f"Invalid volume: Volume {volume_id} status must be available to reserve, "
                f"but the current status is: {status}."
            )

    def user_unreserve(self, ctx: RequestContext, volume_id: str) -> None:
        """Cinder's os-unreserve: a reservation no server took, released (`available`).
        A reservation a server holds is the compute service's to finish or release."""
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            vid, status, server = row.id, row.status, row.server_id
        if status != "attaching" or server is not None or not self.states.move(vid, "unreserve"):
            raise BadRequest(
                f"Invalid volume: Volume {volume_id} is {status} and not reserved by "
                "os-reserve; detach it through the compute API (server volume attachments)."
            )

    def unreserve(self, volume_id: str) -> None:
        self.states.move(volume_id, "unreserve", server_id=None, device=None, attachment_id=None)

    def begin_detach(self, ctx: RequestContext, volume_id: str, server_id: str) -> dict[str, Any]:
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            if row.server_id != server_id or row.status not in ("in-use", "detaching"):
                raise NotFound(f"Volume {volume_id} is not attached to server {server_id}.")
            vid, device, attachment_id = row.id, row.device, row.attachment_id
        if not self.states.move(vid, "begin_detach"):
            raise BadRequest(f"Volume {volume_id} is already being detached.")
        return {
            "volume_id": vid,
            "device": device,
            "attachment_id": attachment_id,
            "server_id": server_id,
        }

    def detached(self, volume_id: str) -> None:
        self.states.move(
            volume_id,
            "detached",
            server_id=None,
            device=None,
            attachment_id=None,
            attached_at=None,
            delete_on_termination=False,
        )

    def roll_back_detach(self, volume_id: str) -> None:
        self.states.move(volume_id, "roll_back_detach")

    def attachments_of(self, server_id: str) -> list[dict[str, Any]]:
        with self.shared.db.session() as s:
            rows = list(
                s.scalars(
                    select(m.Volume)
                    .where(m.Volume.server_id == server_id)
                    .order_by(m.Volume.attach_seq, m.Volume.id)
                )
            )
            found = [(r, self.shared.backend.location(r.id)) for r in rows]
            return [
                {
                    "volume_id": r.id,
                    "device": r.device,
                    "attachment_id": r.attachment_id,
                    "path": where.path,
                    "format": opened_as(where, r.encryption_key_id is not None),
                    "rbd": where.rbd,
                    "ceph": where.ceph,
                    "readonly": r.readonly,
                    "delete_on_termination": r.delete_on_termination,
                    "status": r.status,
                }
                for r, where in found
            ]

    def volumes_of_servers(self, server_ids: Sequence[str]) -> dict[str, list[ServerVolume]]:
        """The volumes of many servers (a page of a server list) in one query per 1,000
        servers, in attach order; a server with none is absent from the answer."""
        found: dict[str, list[ServerVolume]] = {}
        ids = list(dict.fromkeys(server_ids))
        with self.shared.db.session() as s:
            for start in range(0, len(ids), SERVERS_PER_QUERY):
                rows = s.execute(
                    select(
                        m.Volume.server_id,
                        m.Volume.id,
                        m.Volume.status,
                        m.Volume.delete_on_termination,
                    )
                    .where(m.Volume.server_id.in_(ids[start : start + SERVERS_PER_QUERY]))
                    .order_by(m.Volume.attach_seq, m.Volume.id)
                )
                for server_id, volume_id, status, delete in rows:
                    found.setdefault(str(server_id), []).append(
                        ServerVolume(volume_id, status, bool(delete))
                    )
        return found


def opened_as(where: VolumeLocation, encrypted: bool) -> str:
    """The format QEMU opens a volume as: an encrypted RBD image is a bare LUKS container
    (`luks_rbd.py`); a file's LUKS is inside its qcow2."""
    return "luks" if encrypted and where.rbd is not None else where.format
