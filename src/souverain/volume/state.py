"""The volume status machine: Cinder's statuses, the allowed moves as data, one
compare-and-set per move. No HTTP.

Every change of status is an UPDATE naming the statuses it may start from, so
two callers racing for one volume cannot both win. Long operations run between
two moves; a crash between them leaves a transitional status that recovery
resolves at the next start.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from souverain.volume import models as m
from souverain.volume.rules import Shared

VOLUME_STATUSES = (
    "creating",
    "available",
    "reserved",
    "attaching",
    "in-use",
    "detaching",
    "extending",
    "deleting",
    "error",
    "error_deleting",
    "error_extending",
    "downloading",
    "uploading",
    "awaiting-transfer",
    "maintenance",
)
SNAPSHOT_STATUSES = (
    "creating",
    "available",
    "deleting",
    "error",
    "error_deleting",
    "backing-up",
)
ATTACHED = ("reserved", "attaching", "in-use", "detaching")

# Each move: the statuses it may start from, and where it goes.
MOVES: dict[str, tuple[frozenset[str], str]] = {
    "created": (frozenset({"creating", "downloading"}), "available"),
    "create_failed": (frozenset({"creating", "downloading"}), "error"),
    "reserve": (frozenset({"available"}), "attaching"),
    "attached": (frozenset({"attaching", "reserved"}), "in-use"),
    "unreserve": (frozenset({"attaching", "reserved"}), "available"),
    "begin_detach": (frozenset({"in-use"}), "detaching"),
    "detached": (frozenset({"detaching"}), "available"),
    "roll_back_detach": (frozenset({"detaching"}), "in-use"),
    "extend": (frozenset({"available"}), "extending"),
    "extend_attached": (frozenset({"in-use"}), "extending"),
    "extended": (frozenset({"extending"}), "available"),
    "extended_attached": (frozenset({"extending"}), "in-use"),
    "upload": (frozenset({"available"}), "uploading"),
    "uploaded": (frozenset({"uploading"}), "available"),
    "offer": (frozenset({"available"}), "awaiting-transfer"),
    "withdraw": (frozenset({"awaiting-transfer"}), "available"),
    "delete": (frozenset({"available", "error", "error_extending", "error_deleting"}), "deleting"),
    "force_delete": (frozenset(VOLUME_STATUSES) - {"deleting"}, "deleting"),
}
DELETABLE = MOVES["delete"][0]


class VolumeStates:
    """The compare-and-set changes of a volume's or a snapshot's status."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def move(self, volume_id: str, move: str, **values: Any) -> bool:
        """One compare-and-set status change; False if the volume was not in a start status."""
        sources, target = MOVES[move]
        with self.shared.db.session() as s:
            done = s.execute(
                update(m.Volume)
                .where(m.Volume.id == volume_id, m.Volume.status.in_(sources))
                .values(status=target, updated_at=self.shared.clock.now(), **values)
                .returning(m.Volume.id)
            ).first()
        return done is not None

    def set_snapshot(self, snapshot_id: str, status: str, message: str | None = None) -> None:
        with self.shared.db.session() as s:
            s.execute(
                update(m.Snapshot)
                .where(m.Snapshot.id == snapshot_id)
                .values(status=status, error_message=message, updated_at=self.shared.clock.now())
            )
