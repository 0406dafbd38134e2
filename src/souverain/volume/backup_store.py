"""The seam to the object store that keeps volume backups: a protocol, no implementation.

A backup's chunks and its metadata document are objects in one bucket of the
volume's project, as Cinder's Swift driver keeps them in a container. The server
wires the object store behind this protocol (`objectstore/backup_objects.py`); the
volume service never reads the object store's tables.
"""

from __future__ import annotations

from typing import Protocol


class BackupStoreError(Exception):
    """The object store refused or failed; the message says why, in a user's words."""


class BackupObjects(Protocol):
    def ensure_bucket(self, project_id: str, user_id: str, bucket: str) -> None:
        """The project's bucket `bucket`, made when missing; BackupStoreError when the
        name is invalid or another project owns it."""
        ...

    def put(self, project_id: str, user_id: str, bucket: str, key: str, data: bytes) -> None: ...

    def get(self, bucket: str, key: str) -> bytes: ...

    def delete(self, project_id: str, user_id: str, bucket: str, key: str) -> None: ...


class NoObjectStore:
    """A cloud without an object store: every backup is refused with a reason."""

    def ensure_bucket(self, project_id: str, user_id: str, bucket: str) -> None:
        raise BackupStoreError("This cloud has no object store to keep backups in.")

    def put(self, project_id: str, user_id: str, bucket: str, key: str, data: bytes) -> None:
        raise BackupStoreError("This cloud has no object store to keep backups in.")

    def get(self, bucket: str, key: str) -> bytes:
        raise BackupStoreError("This cloud has no object store to keep backups in.")

    def delete(self, project_id: str, user_id: str, bucket: str, key: str) -> None:
        return None
