"""The object expirer: deletes objects whose X-Delete-At has passed, so that S3 and
the bills stop seeing them too (Swift's reads already hide them). Knows nothing of HTTP.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, select

from souverain.objectstore import models as m
from souverain.objectstore.errors import S3Error
from souverain.objectstore.policy import Principal
from souverain.objectstore.records import BucketInfo
from souverain.objectstore.service import ObjectStoreService

BATCH = 500


class Expirer:
    def __init__(self, service: ObjectStoreService) -> None:
        self.service = service

    def schedule(self, bucket_id: str, key: str, delete_at: int | None) -> None:
        """Note when a key is due (None: never, as after a POST without X-Delete-At)."""
        with self.service.db.session() as s:
            row = s.get(m.SwiftExpiring, (bucket_id, key))
            if delete_at is None:
                if row is not None:
                    s.delete(row)
            elif row is None:
                s.add(m.SwiftExpiring(bucket_id=bucket_id, key=key, delete_at=delete_at))
            else:
                row.delete_at = delete_at

    def expire_due(self, now: float | None = None) -> int:
        """Delete one batch of due objects; how many went."""
        now = time.time() if now is None else now
        e, b = m.SwiftExpiring, m.Bucket
        with self.service.db.session() as s:
            due = s.execute(
                select(e.bucket_id, e.key, e.delete_at, b.name)
                .join(b, b.id == e.bucket_id)
                .where(e.delete_at <= int(now))
                .order_by(e.delete_at)
                .limit(BATCH)
            ).all()
        gone = 0
        for bucket_id, key, delete_at, name in due:
            gone += self._expire(name, key, delete_at)
            with self.service.db.session() as s:
                s.execute(
                    delete(e).where(
                        e.bucket_id == bucket_id, e.key == key, e.delete_at == delete_at
                    )
                )
        return gone

    def _expire(self, bucket_name: str, key: str, delete_at: int) -> int:
        try:
            bucket: BucketInfo = self.service.bucket(bucket_name)
            obj = self.service.head_object(bucket, key)
        except S3Error:
            return 0
        if obj.headers.get("x-delete-at") != str(delete_at):
            return 0  # rewritten since: not this expiry's to delete
        who = Principal("swift-expirer", bucket.project_id, frozenset({"member"}))
        self.service.delete_object(who, bucket, key)
        return 1
