"""Listings of a bucket's keys and versions, in key order, rolled up by a delimiter.

Read in keyset batches of LIST_BATCH rows (never OFFSET: each batch is an index
seek), skipping a whole rolled-up group in one jump. Knows nothing of HTTP or XML.
"""

from __future__ import annotations

from sqlalchemy import select

from souverain.db.engine import Database
from souverain.objectstore.objects import VERSIONS
from souverain.objectstore.records import BucketInfo, Listing, ObjectInfo, successor
from souverain.objectstore.transactions import connect

# Listings never carry object bytes.
LISTED = [column for column in VERSIONS.c if column.name != "data"]
LIST_BATCH = 1000


class Listings:
    """Pages of a bucket's latest objects or of all its versions, read-only."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def list_objects(
        self,
        bucket: BucketInfo,
        prefix: str,
        delimiter: str,
        after: str,
        max_keys: int,
    ) -> Listing:
        """Latest live versions in key order after `after`, rolled up by `delimiter`."""
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        lower, inclusive = after, False  # where the next query starts
        last_returned = ""
        v = VERSIONS.c
        with connect(self.db) as s:
            while True:
                query = select(*LISTED).where(
                    v.bucket_id == bucket.id,
                    v.is_latest.is_(True),
                    v.key >= lower if inclusive else v.key > lower,
                )
                if prefix:
                    query = query.where(v.key >= prefix, v.key < successor(prefix))
                rows = s.execute(query.order_by(v.key).limit(LIST_BATCH)).all()
                jumped = False
                for row in rows:
                    lower, inclusive = row.key, False
                    common = ""
                    if delimiter:
                        at = row.key.find(delimiter, len(prefix))
                        if at >= 0:
                            common = row.key[: at + len(delimiter)]
                    if common:
                        # The whole group is one entry; the next query starts past it.
                        lower, inclusive, jumped = successor(common), True, True
                        if common > after:
                            if len(objects) + len(prefixes) >= max_keys:
                                return Listing(objects, prefixes, True, last_returned)
                            prefixes.append(common)
                            last_returned = common
                        break
                    if row.is_delete_marker:
                        continue
                    if len(objects) + len(prefixes) >= max_keys:
                        return Listing(objects, prefixes, True, last_returned)
                    objects.append(ObjectInfo.of(bucket.name, row))
                    last_returned = row.key
                if not jumped and len(rows) < LIST_BATCH:
                    return Listing(objects, prefixes, False, last_returned)

    def list_versions(
        self,
        bucket: BucketInfo,
        prefix: str,
        delimiter: str,
        key_marker: str,
        version_marker: str,
        max_keys: int,
    ) -> Listing:
        """Every version and delete marker, keys ascending, newest version first."""
        v = VERSIONS.c
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        with connect(self.db) as s:
            start_seq: int | None = None
            if key_marker and version_marker:
                start_seq = s.scalar(
                    select(v.seq).where(
                        v.bucket_id == bucket.id,
                        v.key == key_marker,
                        v.version_id == version_marker,
                    )
                )
            base = select(*LISTED).where(v.bucket_id == bucket.id)
            if prefix:
                base = base.where(v.key >= prefix, v.key < successor(prefix))
            # Where the next query starts (keyset, never OFFSET: each batch is an index seek):
            # after (key, seq) when a version is known, else after or at a key.
            after_key, after_seq, inclusive = key_marker, start_seq, False
            while True:
                query = base
                if after_seq is not None:
                    query = query.where(
                        (v.key > after_key) | ((v.key == after_key) & (v.seq < after_seq))
                    )
                elif after_key:
                    query = query.where(v.key >= after_key if inclusive else v.key > after_key)
                rows = s.execute(query.order_by(v.key, v.seq.desc()).limit(LIST_BATCH)).all()
                jumped = False
                for row in rows:
                    common = ""
                    if delimiter:
                        at = row.key.find(delimiter, len(prefix))
                        if at >= 0:
                            common = row.key[: at + len(delimiter)]
                    if common:
                        # The whole group is one entry; the next query starts past it.
                        if common > key_marker and (not prefixes or prefixes[-1] != common):
                            if len(objects) + len(prefixes) >= max_keys:
                                return self._versions_page(objects, prefixes)
                            prefixes.append(common)
                        after_key, after_seq, inclusive = successor(common), None, True
                        jumped = True
                        break
                    if len(objects) + len(prefixes) >= max_keys:
                        return self._versions_page(objects, prefixes)
                    objects.append(ObjectInfo.of(bucket.name, row))
                    after_key, after_seq = row.key, row.seq
                if not jumped and len(rows) < LIST_BATCH:
                    return Listing(objects, prefixes, False)

    @staticmethod
    def _versions_page(objects: list[ObjectInfo], prefixes: list[str]) -> Listing:
        last_obj = objects[-1] if objects else None
        last_prefix = prefixes[-1] if prefixes else ""
        if last_obj is not None and last_obj.key >= last_prefix:
            return Listing(objects, prefixes, True, last_obj.key, last_obj.version_id)
        return Listing(objects, prefixes, True, last_prefix, "")
