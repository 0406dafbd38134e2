"""Account and container metadata: what Swift keeps beside S3's buckets.

An account is a project; a container is one of its buckets. Rows are made on first
write. Knows nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from souverain.common.clock import Clock
from souverain.db.engine import Database
from souverain.objectstore import models as m
from souverain.objectstore.records import utcnow

# Metadata limits (Swift's defaults): a 400 names the one passed.
MAX_META_NAME = 128
MAX_META_VALUE = 256
MAX_META_COUNT = 90
MAX_META_OVERALL = 4096


class MetadataError(ValueError):
    """Metadata over one of Swift's limits; the message names it."""


@dataclass
class ContainerMeta:
    meta: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)


def check_metadata(meta: Mapping[str, str]) -> None:
    """Refuse metadata over Swift's limits on names, values, count and total size."""
    if len(meta) > MAX_META_COUNT:
        raise MetadataError(f"Too many metadata items; max {MAX_META_COUNT}")
    total = 0
    for name, value in meta.items():
        if len(name) > MAX_META_NAME:
            raise MetadataError(f"Metadata name too long: {name[:32]}...; max {MAX_META_NAME}")
        if len(value) > MAX_META_VALUE:
            raise MetadataError(f"Metadata value longer than {MAX_META_VALUE}: {name}")
        total += len(name) + len(value)
    if total > MAX_META_OVERALL:
        raise MetadataError(f"Total metadata too large; max {MAX_META_OVERALL}")


def merged(current: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """`current` with `changes` applied: an empty value or None removes the item."""
    out = dict(current)
    for name, value in changes.items():
        if value:
            out[name] = value
        else:
            out.pop(name, None)
    return out


class SwiftMetadata:
    """Reads and changes account and container metadata rows."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def account(self, project_id: str) -> dict[str, str]:
        with self.db.session() as s:
            row = s.get(m.SwiftAccount, project_id)
            return dict(row.meta) if row is not None else {}

    def update_account(self, project_id: str, changes: Mapping[str, str | None]) -> None:
        with self.db.session() as s:
            row = s.get(m.SwiftAccount, project_id)
            if row is None:
                row = m.SwiftAccount(project_id=project_id, meta={}, created_at=utcnow(self.clock))
                s.add(row)
            new = merged(row.meta, changes)
            check_metadata(new)
            row.meta = new

    def container(self, bucket_id: str) -> ContainerMeta:
        with self.db.session() as s:
            row = s.get(m.SwiftContainer, bucket_id)
            if row is None:
                return ContainerMeta()
            return ContainerMeta(dict(row.meta), dict(row.settings))

    def containers(self, bucket_ids: list[str]) -> dict[str, ContainerMeta]:
        with self.db.session() as s:
            rows = s.scalars(
                select(m.SwiftContainer).where(m.SwiftContainer.bucket_id.in_(bucket_ids))
            ).all()
            return {r.bucket_id: ContainerMeta(dict(r.meta), dict(r.settings)) for r in rows}

    def update_container(
        self,
        bucket_id: str,
        meta: Mapping[str, str | None],
        settings: Mapping[str, str | None],
    ) -> ContainerMeta:
        with self.db.session() as s:
            row = s.get(m.SwiftContainer, bucket_id)
            if row is None:
                row = m.SwiftContainer(bucket_id=bucket_id, meta={}, settings={})
                s.add(row)
            new_meta = merged(row.meta, meta)
            check_metadata(new_meta)
            row.meta = new_meta
            row.settings = merged(row.settings, settings)
            return ContainerMeta(dict(row.meta), dict(row.settings))

    # ------------------------------------------------------------------ static large objects

    def save_manifest(
        self, bucket_id: str, key: str, etag: str, segments: list[dict[str, object]]
    ) -> None:
        with self.db.session() as s:
            row = s.get(m.SwiftManifest, (bucket_id, key))
            if row is None:
                s.add(m.SwiftManifest(bucket_id=bucket_id, key=key, etag=etag, segments=segments))
            else:
                row.etag, row.segments = etag, segments

    def manifest(self, bucket_id: str, key: str, etag: str) -> list[dict[str, object]] | None:
        """The segments of the version with this etag; None when it is not a manifest."""
        with self.db.session() as s:
            row = s.get(m.SwiftManifest, (bucket_id, key))
            return list(row.segments) if row is not None and row.etag == etag else None

    def drop_manifest(self, bucket_id: str, key: str) -> None:
        with self.db.session() as s:
            row = s.get(m.SwiftManifest, (bucket_id, key))
            if row is not None:
                s.delete(row)
