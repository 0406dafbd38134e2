"""Object bytes: the blob store interface the objectstore rooms use, and its local-disk
implementation (the other one, in RADOS, is `rados_store`).

A blob is written to `tmp/`, fsynced, renamed into `blobs/xx/<id>` and its
directory fsynced before anyone may point at it. Paths never derive from object
keys. This module knows nothing of buckets, keys or HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import crc32c

from souverain.common.ids import new_id
from souverain.objectstore.crc64nvme import Crc64Nvme

CHUNK = 1024 * 1024
# What a blob writer takes. A writer must not keep it past the call: the caller may reuse
# the buffer (the sealing writer seals into one of its own).
Data = bytes | bytearray | memoryview
_BLOB_ID = re.compile(r"^[0-9a-f]{32}$")
CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


class StorageFull(Exception):
    """The disk has no room for these bytes; what was written so far is gone."""


class _Hash(Protocol):
    def update(self, data: Data, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc:
    """zlib/crc32c running checksums behind the hashlib interface."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn
        self._value = 0

    def update(self, data: Data, /) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


def new_hash(algorithm: str) -> _Hash:
    if algorithm == "crc32":
        return _Crc(zlib.crc32)
    if algorithm == "crc32c":
        return _Crc(crc32c.crc32c)
    if algorithm == "crc64nvme":
        return Crc64Nvme()
    return hashlib.new(algorithm)  # md5, sha1, sha256


class Digests:
    """MD5 (the ETag) and any other digests asked for, over the same bytes in one pass."""

    def __init__(self, algorithms: Iterable[str] = ()) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.others: dict[str, _Hash] = {a: new_hash(a) for a in algorithms if a != "md5"}
        self.size = 0

    def update(self, data: Data) -> None:
        self.md5.update(data)
        for digest in self.others.values():
            digest.update(data)
        self.size += len(data)

    def hex(self, algorithm: str) -> str:
        return self.md5.hexdigest() if algorithm == "md5" else self.others[algorithm].digest().hex()

    def b64(self, algorithm: str) -> str:
        raw = self.md5.digest() if algorithm == "md5" else self.others[algorithm].digest()
        return base64.b64encode(raw).decode()


class BlobWriter(Protocol):
    """One blob being written; `commit` makes it durable, `abort` leaves nothing behind."""

    blob_id: str
    digests: Digests

    @property
    def size(self) -> int: ...
    def write(self, data: Data) -> None: ...
    def commit(self) -> str: ...
    def abort(self) -> None: ...


class SegmentReader(Protocol):
    """Reads bytes `start`..`end` (inclusive) across an object's segments, then closes."""

    def chunks(self, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]: ...
    def close(self) -> None: ...


class BlobStore(Protocol):
    """Where object bytes live (local files or RADOS); blob ids are the store's own.
    `blocking_reads`: opening and reading may wait on the network (RADOS), so the S3 GET
    does it off the event loop; a local file is read in place."""

    blocking_reads: bool

    def setup(self) -> None: ...
    def writer(self, algorithms: Iterable[str] = ()) -> BlobWriter: ...
    def delete(self, blob_ids: Iterable[str]) -> None: ...
    def open_segments(self, segments: Sequence[Sequence[Any]]) -> SegmentReader: ...
    def sweep(self, referenced: set[str]) -> int: ...
    def close(self) -> None: ...


class FileBlobWriter:
    """One blob being written to a file; `commit` fsyncs and renames it into place."""

    def __init__(self, store: FileBlobStore, algorithms: Iterable[str] = ()) -> None:
        self.store = store
        self.blob_id = new_id()
        self.digests = Digests(algorithms)
        self._tmp = store.tmp / self.blob_id
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._open = True

    @property
    def size(self) -> int:
        return self.digests.size

    def write(self, data: Data) -> None:
        self.digests.update(data)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(str(exc)) from None
            raise

    def commit(self) -> str:
        """fsync, rename into place, fsync the directory; return the blob id."""
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._open = False
            final = self.store.path(self.blob_id)
            os.rename(self._tmp, final)
            self.store.sync_dir(final.parent)
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(str(exc)) from None
            raise
        return self.blob_id

    def abort(self) -> None:
        if self._open:
            os.close(self._fd)
            self._open = False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class FileBlobStore:
    """Blobs as files under `root` (the default backend)."""

    blocking_reads = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"

    def setup(self) -> None:
        for folder in (self.root, self.blobs, self.tmp):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for i in range(256):
            (self.blobs / f"{i:02x}").mkdir(exist_ok=True, mode=0o700)

    def path(self, blob_id: str) -> Path:
        if not _BLOB_ID.match(blob_id):  # ids come from our own rows; refuse anything else
            raise ValueError("not a blob id")
        return self.blobs / blob_id[:2] / blob_id

    def writer(self, algorithms: Iterable[str] = ()) -> FileBlobWriter:
        return FileBlobWriter(self, algorithms)

    @staticmethod
    def sync_dir(folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def delete(self, blob_ids: Iterable[str]) -> None:
        for blob_id in blob_ids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(blob_id))

    def open_segments(self, segments: Sequence[Sequence[Any]]) -> FileSegmentReader:
        return FileSegmentReader(self, segments)

    def sweep(self, referenced: set[str]) -> int:
        """Remove interrupted uploads and blobs no row points at; how many files went."""
        removed = 0
        for entry in os.scandir(self.tmp):
            os.unlink(entry.path)
            removed += 1
        for folder in os.scandir(self.blobs):
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder.path):
                if entry.name not in referenced:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def close(self) -> None:
        """Nothing held open between requests."""


class FileSegmentReader:
    """Reads a byte range across an object's segment files.

    Every segment file is opened at once, so an overwrite or delete that unlinks
    them mid-download does not cut the download short.
    """

    def __init__(self, store: FileBlobStore, segments: Sequence[Sequence[Any]]) -> None:
        self._fds: list[tuple[int, int]] = []
        try:
            for blob_id, size in segments:
                self._fds.append((os.open(store.path(blob_id), os.O_RDONLY | os.O_CLOEXEC), size))
        except OSError:
            self.close()
            raise

    def chunks(self, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
        """Bytes from `start` to `end` inclusive."""
        offset = 0
        for fd, size in self._fds:
            seg_start, seg_end = offset, offset + size - 1
            offset += size
            if seg_end < start or seg_start > end:
                continue
            pos = max(start, seg_start) - seg_start
            stop = min(end, seg_end) - seg_start + 1
            while pos < stop:
                data = os.pread(fd, min(chunk, stop - pos), pos)
                if not data:
                    raise OSError(errno.EIO, "blob shorter than its recorded size")
                pos += len(data)
                yield data

    def close(self) -> None:
        for fd, _size in self._fds:
            os.close(fd)
        self._fds = []


class InlineReader:
    """The same reading interface over a small object's bytes kept in the database."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def chunks(self, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
        view = memoryview(self._data)
        for offset in range(start, end + 1, chunk):
            yield bytes(view[offset : min(end + 1, offset + chunk)])

    def close(self) -> None:
        self._data = b""
