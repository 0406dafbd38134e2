"""Start-up recovery: no volume or snapshot left mid-way by a stop, no stray file. No HTTP.

creating/downloading -> error (with a message), deleting -> deleted,
extending/uploading -> back to available or in-use (the size as the file says).
Attachment statuses (attaching/detaching) belong to the compute service's reconcile.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update

from souverain.volume import models as m
from souverain.volume.backend import GIB, BackendError
from souverain.volume.rules import Shared
from souverain.volume.snapshots import Snapshots
from souverain.volume.state import VolumeStates
from souverain.volume.volumes import Volumes

log = logging.getLogger("souverain.volume")

INTERRUPTED = "The operation was interrupted by a restart of the volume service."
UNFINISHED = ("creating", "downloading", "deleting", "extending", "uploading")


class Recovery:
    def __init__(
        self, shared: Shared, states: VolumeStates, volumes: Volumes, snapshots: Snapshots
    ) -> None:
        self.shared = shared
        self.states = states
        self.volumes = volumes
        self.snapshots = snapshots

    def recover(self) -> None:
        with self.shared.db.session() as s:
            volumes = list(s.scalars(select(m.Volume).where(m.Volume.status.in_(UNFINISHED))))
            snapshots = list(
                s.scalars(select(m.Snapshot).where(m.Snapshot.status.in_(("creating", "deleting"))))
            )
        backend = self.shared.backend
        for vol in volumes:
            log.warning("volume %s was left %s by a stop: resolving", vol.id, vol.status)
            if vol.status in ("creating", "downloading"):
                backend.remove_volume(vol.id)
                self.states.move(
                    vol.id, "create_failed", error_message=f"Creation failed: {INTERRUPTED}"
                )
            elif vol.status == "deleting":
                self.volumes.finish_delete(vol.id)
            else:
                self._settle(vol)
        for snap in snapshots:
            if snap.status == "creating":
                backend.remove_snapshot(snap.volume_id, snap.id)
                self.states.set_snapshot(snap.id, "error", f"Snapshot failed: {INTERRUPTED}")
            else:
                self.snapshots.finish_delete(snap.id)
        self._sweep_files()

    def _settle(self, vol: m.Volume) -> None:
        """extending/uploading: back to where it came from, the size as the file says."""
        back = "in-use" if vol.server_id else "available"
        values: dict[str, Any] = {"status": back, "updated_at": self.shared.clock.now()}
        if vol.status == "extending":
            try:
                size = self.shared.backend.volume_bytes(vol.id)
                values["size"] = max(vol.size, size // GIB)
            except BackendError as exc:
                values.update(status="error", error_message=f"Extend failed: {exc}")
        with self.shared.db.session() as s:
            settled = s.execute(
                update(m.Volume)
                .where(m.Volume.id == vol.id, m.Volume.status == vol.status)
                .values(**values)
                .returning(m.Volume.id)
            ).first()
        if settled is not None and "size" in values:
            self.shared.meter.gauge(vol.project_id, "volume.gb", vol.id, values["size"])

    def _sweep_files(self) -> None:
        backend = self.shared.backend
        with self.shared.db.session() as s:
            volumes = set(s.scalars(select(m.Volume.id)))
            snapshots = set(s.scalars(select(m.Snapshot.id)))
        removed = backend.sweep_unknown(volumes, snapshots)
        if removed:
            log.info("removed %d leftover volume file(s)", removed)
