"""The object store's `DataKeyHolder`: which data keys its versions and multipart uploads
keep wrapped under a project key (SSE-S3), so the key manager never destroys a project key
one of them still needs. It reads wrapped heads only, never a key, and changes nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from souverain.db.engine import Database
from souverain.objectstore.encryption import SSE_S3
from souverain.objectstore.models import ObjectVersion, Upload


class StoredDataKeys:
    def __init__(self, db: Database) -> None:
        self.db = db

    def wrapped_key_heads(self, size: int) -> set[bytes]:
        heads: set[bytes] = set()
        with self.db.session() as s:
            for table in (ObjectVersion, Upload):
                query = (
                    select(func.substr(table.sse_wrapped, 1, size))
                    .where(table.sse_mode == SSE_S3, table.sse_wrapped.is_not(None))
                    .distinct()
                )
                heads.update(bytes(head) for head in s.scalars(query).all() if head)
        return heads
