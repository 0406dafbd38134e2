"""Volume backups' objects, kept through the object store's own service methods.

Implements the volume service's `BackupObjects` seam (wired in `server.py`): every
write goes through `put_object`/`delete_object` as the project's member would, so
bucket quotas, usage and metering count backups like any other object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from souverain.objectstore.encryption import apply_seal, blob_writer
from souverain.objectstore.errors import S3Error
from souverain.objectstore.policy import Principal
from souverain.objectstore.records import NewObject
from souverain.volume.backup_store import BackupStoreError

if TYPE_CHECKING:
    from souverain.objectstore.service import ObjectStoreService


class StoreRefused(BackupStoreError):
    """What the object store said, for the volume service to show its user."""


class BackupObjectStore:
    def __init__(self, service: ObjectStoreService) -> None:
        self.service = service

    @staticmethod
    def _who(project_id: str, user_id: str) -> Principal:
        return Principal(user_id, project_id, frozenset({"member"}))

    def ensure_bucket(self, project_id: str, user_id: str, bucket: str) -> None:
        try:
            info = self.service.bucket(bucket)
        except S3Error as exc:
            if exc.code != "NoSuchBucket":
                raise StoreRefused(exc.message) from None
            try:
                self.service.create_bucket(self._who(project_id, user_id), bucket, None)
            except S3Error as created:
                if created.code != "BucketAlreadyOwnedByYou":
                    raise StoreRefused(f"Container {bucket}: {created.message}") from None
            return
        if info.project_id != project_id:
            raise StoreRefused(
                f"Container {bucket} belongs to another project: choose another container name."
            )

    def put(self, project_id: str, user_id: str, bucket: str, key: str, data: bytes) -> None:
        target = self.service.bucket(bucket)
        seal = self.service.sealer.default(target)  # the container's default encryption
        writer = blob_writer(self.service.store, seal)
        try:
            writer.write(data)
            blob_id = writer.commit()
        except BaseException:
            writer.abort()
            raise
        new = NewObject(
            size=len(data),
            etag=writer.digests.hex("md5"),
            segments=[[blob_id, len(data)]],
            headers={"content-type": "application/octet-stream"},
        )
        apply_seal(new, seal)
        try:
            self.service.put_object(self._who(project_id, user_id), target, key, new)
        except S3Error as exc:
            self.service.store.delete([blob_id])
            raise StoreRefused(exc.message) from None

    def get(self, bucket: str, key: str) -> bytes:
        try:
            obj = self.service.head_object(self.service.bucket(bucket), key)
        except S3Error as exc:
            raise StoreRefused(f"Backup object {key} is missing: {exc.message}") from None
        reader = self.service.reader(obj)
        try:
            return b"".join(reader.chunks(0, obj.size - 1)) if obj.size else b""
        finally:
            reader.close()

    def delete(self, project_id: str, user_id: str, bucket: str, key: str) -> None:
        try:
            self.service.delete_object(
                self._who(project_id, user_id), self.service.bucket(bucket), key
            )
        except S3Error as exc:
            if exc.code not in ("NoSuchBucket", "NoSuchKey"):
                raise StoreRefused(exc.message) from None
