"""Host aggregates (Nova's os-aggregates): an admin's named groups of compute hosts, with
metadata the scheduler matches flavors against and an optional availability zone that
makes its hosts a zone users may ask for. A host is in one zone at most: adding it to
an aggregate of another zone, or giving an aggregate a zone some of its hosts already
have another of, is refused.

The caller is the cloud's admin (the edge and the handlers check it). Nothing here
places a server (that is `scheduler.py`) or touches a host.
"""

from __future__ import annotations

import builtins
import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.compute.core import ComputeCore
from souverain.compute.models import Aggregate, AggregateHost, AggregateMetadata, ComputeHost

ZONE_KEY = "availability_zone"  # the metadata key Nova keeps the zone under
_KEY = re.compile(r"^[a-zA-Z0-9\-_:. ]{1,255}$")
_UNSET = object()


@dataclass(frozen=True)
class AggregateView:
    id: int
    uuid: str
    name: str
    availability_zone: str | None
    created_at: dt.datetime
    updated_at: dt.datetime | None
    hosts: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


def check_name(value: object, what: str = "name") -> str:
    """1-255 printable characters without leading or trailing blanks (Nova's `name`)."""
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= 255
        or value != value.strip()
        or not value.isprintable()
    ):
        raise BadRequest(
            f"Invalid input for field/attribute {what}. Value: {str(value)[:64]!r}. "
            "It must be 1 to 255 printable characters, without leading or trailing spaces."
        )
    return value


def check_zone(value: object) -> str | None:
    """A zone name (no ':', which separates a forced host), or None for no zone."""
    if value is None:
        return None
    zone = check_name(value, ZONE_KEY)
    if ":" in zone:
        raise BadRequest(
            f"Invalid input for field/attribute availability_zone. Value: {zone[:64]!r}. "
            "An availability zone name cannot contain ':'."
        )
    return zone


def check_metadata(value: object) -> dict[str, str | None]:
    """set_metadata's map: keys as Nova's, values strings up to 255 or null (removes)."""
    if not isinstance(value, dict):
        raise BadRequest("Invalid input for field/attribute metadata: an object is expected.")
    for key, item in value.items():
        if not _KEY.match(key):
            raise BadRequest(
                f"Invalid input for field/attribute metadata. Key {key[:64]!r}: 1 to 255 "
                "letters, digits, '-', '_', ':', '.' or spaces."
            )
        if item is not None and (not isinstance(item, str) or len(item) > 255):
            raise BadRequest(
                f"Invalid input for field/attribute metadata. Value of {key[:64]!r}: "
                "a string of at most 255 characters, or null to remove the key."
            )
    return dict(value)


class Aggregates:
    def __init__(self, core: ComputeCore) -> None:
        self.core = core
        self.db = core.db

    # ------------------------------------------------------------------ reads

    def list(self) -> builtins.list[AggregateView]:
        with self.db.session() as s:
            rows = s.scalars(select(Aggregate).order_by(Aggregate.id)).all()
            return [self._view(s, row) for row in rows]

    def get(self, aggregate_id: str) -> AggregateView:
        with self.db.session() as s:
            return self._view(s, self._row(s, aggregate_id))

    @staticmethod
    def _row(s: Session, aggregate_id: str, lock: bool = False) -> Aggregate:
        """The aggregate of that id; any other id (not a number, too long) is not found,
        as in Nova."""
        row = None
        if aggregate_id.isdigit() and len(aggregate_id) <= 18:
            query = select(Aggregate).where(Aggregate.id == int(aggregate_id))
            row = s.scalars(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFound(f"Aggregate {aggregate_id[:64]} could not be found.")
        return row

    @staticmethod
    def _view(s: Session, row: Aggregate) -> AggregateView:
        hosts = s.scalars(
            select(AggregateHost.host)
            .where(AggregateHost.aggregate_id == row.id)
            .order_by(AggregateHost.host)
        ).all()
        meta = {
            m.key: m.value
            for m in s.scalars(
                select(AggregateMetadata).where(AggregateMetadata.aggregate_id == row.id)
            )
        }
        if row.availability_zone is not None:
            meta[ZONE_KEY] = row.availability_zone
        return AggregateView(
            row.id,
            row.uuid,
            row.name,
            row.availability_zone,
            row.created_at,
            row.updated_at,
            list(hosts),
            meta,
        )

    # ------------------------------------------------------------------ writes

    def create(self, name: str, zone: str | None) -> AggregateView:
        with self.db.session() as s:
            self._name_free(s, name, None)
            row = Aggregate(
                uuid=str(uuid.uuid4()),
                name=name,
                availability_zone=zone,
                created_at=self.core.now(),
                updated_at=None,
            )
            s.add(row)
            s.flush()
            return self._view(s, row)

    def update(self, aggregate_id: str, name: str | None, zone: object = _UNSET) -> AggregateView:
        """A new name and/or zone (None: no zone); `zone` left out keeps it."""
        with self.db.session() as s:
            row = self._row(s, aggregate_id, lock=True)
            if name is not None:
                self._name_free(s, name, row.id)
                row.name = name
            if zone is not _UNSET:
                self._zone_fits_hosts(s, row, check_zone(zone))
                row.availability_zone = check_zone(zone)
            row.updated_at = self.core.now()
            s.flush()
            return self._view(s, row)

    def delete(self, aggregate_id: str) -> None:
        with self.db.session() as s:
            row = self._row(s, aggregate_id, lock=True)
            if s.scalars(
                select(AggregateHost.host).where(AggregateHost.aggregate_id == row.id)
            ).first():
                raise BadRequest(
                    f"Cannot perform action 'delete' on aggregate {row.id}. Reason: Host "
                    "aggregate is not empty: remove its hosts first."
                )
            s.execute(delete(AggregateMetadata).where(AggregateMetadata.aggregate_id == row.id))
            s.delete(row)

    def add_host(self, aggregate_id: str, host: str) -> AggregateView:
        with self.db.session() as s:
            row = self._row(s, aggregate_id, lock=True)
            self._known_host(s, host)
            if s.get(AggregateHost, (row.id, host)) is not None:
                raise Conflict(f"Aggregate {row.id} already has host {host}.")
            others = self._zones_of(s, host, row.id)
            if row.availability_zone is not None and others - {row.availability_zone}:
                raise Conflict(
                    f"Cannot add host {host} to aggregate {row.id}. Reason: the host is "
                    f"already in availability zone(s) {', '.join(sorted(others))}; a host "
                    "is in one zone at most."
                )
            s.add(AggregateHost(aggregate_id=row.id, host=host))
            row.updated_at = self.core.now()
            s.flush()
            return self._view(s, row)

    def remove_host(self, aggregate_id: str, host: str) -> AggregateView:
        with self.db.session() as s:
            row = self._row(s, aggregate_id, lock=True)
            self._known_host(s, host)
            member = s.get(AggregateHost, (row.id, host))
            if member is None:
                raise NotFound(f"Aggregate {row.id} has no host {host}.")
            s.delete(member)
            row.updated_at = self.core.now()
            s.flush()
            return self._view(s, row)

    def set_metadata(self, aggregate_id: str, changes: Mapping[str, str | None]) -> AggregateView:
        """Keys set, or removed when null; `availability_zone` moves the aggregate's zone."""
        with self.db.session() as s:
            row = self._row(s, aggregate_id, lock=True)
            if ZONE_KEY in changes:
                zone = check_zone(changes[ZONE_KEY])
                self._zone_fits_hosts(s, row, zone)
                row.availability_zone = zone
            for key, value in changes.items():
                if key == ZONE_KEY:
                    continue
                item = s.get(AggregateMetadata, (row.id, key))
                if value is None:
                    if item is not None:
                        s.delete(item)
                elif item is None:
                    s.add(AggregateMetadata(aggregate_id=row.id, key=key, value=value))
                else:
                    item.value = value
            row.updated_at = self.core.now()
            s.flush()
            return self._view(s, row)

    # ------------------------------------------------------------------ rules

    @staticmethod
    def _name_free(s: Session, name: str, own_id: int | None) -> None:
        taken = s.scalars(select(Aggregate.id).where(Aggregate.name == name)).first()
        if taken is not None and taken != own_id:
            raise Conflict(f"Aggregate {name} already exists.")

    @staticmethod
    def _known_host(s: Session, host: str) -> None:
        if len(host) > 255 or s.get(ComputeHost, host) is None:
            raise NotFound(f"Compute host {host[:255]} could not be found.")

    @staticmethod
    def _zones_of(s: Session, host: str, except_id: int) -> set[str]:
        """The zones the host's other aggregates give it."""
        zones = s.scalars(
            select(Aggregate.availability_zone)
            .join(AggregateHost, AggregateHost.aggregate_id == Aggregate.id)
            .where(AggregateHost.host == host, Aggregate.id != except_id)
        ).all()
        return {z for z in zones if z is not None}

    def _zone_fits_hosts(self, s: Session, row: Aggregate, zone: str | None) -> None:
        if zone is None:
            return
        for host in s.scalars(
            select(AggregateHost.host).where(AggregateHost.aggregate_id == row.id)
        ):
            others = self._zones_of(s, host, row.id) - {zone}
            if others:
                raise BadRequest(
                    f"Cannot update aggregate {row.id}. Reason: its host {host} is already "
                    f"in availability zone(s) {', '.join(sorted(others))}; a host is in one "
                    "zone at most."
                )
