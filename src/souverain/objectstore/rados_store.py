"""Object bytes in a RADOS pool: the same blob interface as the files in `store`, for a
cloud whose objectstore runs on Ceph (`objectstore.backend = "rados"`).

A blob is cut into RADOS objects `<blob_id>.<n>` of at most `rados_stripe_bytes`; stripe 0
also carries the blob's layout (size, stripe size, stripe count) as an xattr, written in
the same atomic operation as its bytes. `commit` returns only once every stripe write is
acknowledged, and RADOS acknowledges a write only when every replica (or every chunk of an
erasure-coded pool) has it: that is the durability rule the files' fsync gives elsewhere.
Reads fetch only the stripes a range covers, a few reads ahead. Like `store`, this module
knows nothing of buckets, keys or HTTP, and never shells out to the `rados` CLI.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from souverain.common.ceph import CephConnection, StorageUnavailable, bindings, translated
from souverain.common.ids import new_id
from souverain.objectstore.store import CHUNK, Data, Digests, StorageFull

LAYOUT_XATTR = "souverain.blob"
STRIPE_UNIT = 64 * 1024  # stripe sizes are multiples of this
IN_FLIGHT = 8  # stripe writes one upload keeps in flight (8 x 4 MiB: ~150 MB/s on the bench)
READ_AHEAD = 3  # reads one download keeps in flight
READ_PIECE = 4 * 1024**2  # the most one read asks for
PREFETCH = 256 * 1024  # read when a reader opens: proves the blob is there and the cluster up
_FULL = {errno.ENOSPC, errno.EDQUOT}
_AWAY = {errno.ETIMEDOUT, errno.ESHUTDOWN, errno.ENOTCONN, errno.ECONNREFUSED, errno.EINTR}


def stripe_name(blob_id: str, n: int) -> str:
    return f"{blob_id}.{n}"


def new_blob_id(stripe_bytes: int) -> str:
    """32 hex digits, the last 4 the stripe size in 64 KiB units: a reader knows the layout
    from the id (no round trip), whatever `rados_stripe_bytes` says today."""
    return f"{new_id()[:28]}{stripe_bytes // STRIPE_UNIT:04x}"


def stripe_of(blob_id: str) -> int:
    return int(blob_id[28:32], 16) * STRIPE_UNIT


def failure(code: int, what: str) -> Exception:
    """The exception for a failed RADOS operation's (positive) errno."""
    if code in _FULL:
        return StorageFull(f"the storage cluster refused {what}: {os.strerror(code)}")
    if code in _AWAY:
        return StorageUnavailable()
    return OSError(code, f"RADOS {what} failed: {os.strerror(code)}")


@contextlib.contextmanager
def rados_errors(what: str) -> Iterator[None]:
    """Synchronous rados calls: full → StorageFull, away → StorageUnavailable."""
    with translated():
        try:
            yield
        except StorageUnavailable:
            raise
        except Exception as exc:
            if type(exc).__module__ == "rados" and getattr(exc, "errno", None) in _FULL:
                raise failure(exc.errno, what) from exc  # type: ignore[attr-defined]
            raise


def _settle(completion: Any, what: str) -> None:
    completion.wait_for_complete_and_cb()
    code = completion.get_return_value()
    if code < 0:
        raise failure(-code, what)


class RadosBlobWriter:
    """One blob being written as stripes; `commit` waits for every acknowledgement."""

    def __init__(self, store: RadosBlobStore, algorithms: Iterable[str] = ()) -> None:
        self.blob_id = new_blob_id(store.stripe_bytes)
        self.digests = Digests(algorithms)
        self._ioctx = store.ioctx()
        self._stripe = store.stripe_bytes
        self._pieces: list[bytes] = []  # bytes not yet handed to RADOS
        self._buffered = 0
        self._count = 0  # stripes handed to RADOS so far
        self._first = b""  # stripe 0 goes with the layout, at commit
        self._pending: deque[Any] = deque()
        self._open = True

    @property
    def size(self) -> int:
        return self.digests.size

    def write(self, data: Data) -> None:
        self.digests.update(data)
        self._pieces.append(bytes(data))  # kept past the call: a copy unless already bytes
        self._buffered += len(data)
        try:
            while self._buffered >= self._stripe:
                joined = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
                self._put(joined[: self._stripe] if len(joined) > self._stripe else joined)
                rest = joined[self._stripe :]
                self._pieces, self._buffered = ([rest] if rest else []), len(rest)
        except BaseException:
            self.abort()
            raise

    def _put(self, piece: bytes) -> None:
        n = self._count
        self._count += 1
        if n == 0:
            self._first = piece
            return
        while len(self._pending) >= IN_FLIGHT:
            _settle(self._pending.popleft(), "a stripe write")
        with rados_errors("a stripe write"):
            self._pending.append(self._ioctx.aio_write_full(stripe_name(self.blob_id, n), piece))

    def commit(self) -> str:
        """Write what is left and stripe 0 with the layout; return once all are acked."""
        try:
            if self._buffered or self._count == 0:
                self._put(b"".join(self._pieces))
                self._pieces, self._buffered = [], 0
            layout = {"size": self.size, "stripe": self._stripe, "stripes": self._count}
            with rados_errors("a stripe write"):
                op = self._ioctx.create_write_op()
                try:
                    op.write_full(self._first)
                    op.set_xattr(LAYOUT_XATTR, json.dumps(layout).encode())
                    first = self._ioctx.operate_aio_write_op(op, stripe_name(self.blob_id, 0))
                finally:
                    self._ioctx.release_write_op(op)
            self._pending.append(first)
            while self._pending:
                _settle(self._pending.popleft(), "a stripe write")
        except StorageUnavailable:
            self.abort(remove=False)  # answer 503 now; the sweep removes what was written
            raise
        except BaseException:
            self.abort()
            raise
        self._open = False
        self._first = b""
        return self.blob_id

    def abort(self, remove: bool = True) -> None:
        """Remove every stripe written; what the cluster cannot remove now the sweep will."""
        if not self._open:
            return
        self._open = False
        while self._pending:  # in flight together: this waits one op timeout at most
            with contextlib.suppress(Exception):
                self._pending.popleft().wait_for_complete_and_cb()
        if remove:
            with contextlib.suppress(Exception):
                _remove_stripes(self._ioctx, self.blob_id, self._count)
        self._pieces, self._buffered = [], 0
        self._first = b""


def _remove_stripes(ioctx: Any, blob_id: str, count: int) -> None:
    """Remove stripes 1 .. `count-1` together, then stripe 0 (holding the layout a retried
    delete needs); a stripe already gone is fine."""
    for batch in (range(1, count), range(min(count, 1))):
        removals = [ioctx.aio_remove(stripe_name(blob_id, n)) for n in batch]
        for completion in removals:
            completion.wait_for_complete_and_cb()
            code = completion.get_return_value()
            if code < 0 and -code != errno.ENOENT:
                raise failure(-code, "a stripe removal")


class RadosSegmentReader:
    """Reads a byte range across an object's blobs, `READ_AHEAD` reads in flight.

    Opening reads the object's first bytes, so a missing blob or an unreachable cluster
    fails the request before any header is sent; a read from the start uses them."""

    def __init__(self, store: RadosBlobStore, segments: Sequence[Sequence[Any]]) -> None:
        self._ioctx = store.ioctx()
        self._segments = [(str(blob_id), int(size)) for blob_id, size in segments]
        self._head = b""
        if self._segments and self._segments[0][1] > 0:
            blob_id, size = self._segments[0]
            length = min(size, stripe_of(blob_id), PREFETCH)
            self._head = self._collect(*self._read(stripe_name(blob_id, 0), 0, length))

    def _pieces(self, start: int, end: int, chunk: int) -> Iterator[tuple[str, int, int]]:
        """(RADOS object, offset in it, length) for bytes `start`..`end`, in order."""
        offset = 0
        for blob_id, size in self._segments:
            seg_start, seg_end = offset, offset + size - 1
            offset += size
            if seg_end < start or seg_start > end:
                continue
            stripe = stripe_of(blob_id)
            pos = max(start, seg_start) - seg_start
            stop = min(end, seg_end) - seg_start + 1
            while pos < stop:
                n, within = divmod(pos, stripe)
                length = min(max(chunk, READ_PIECE), stop - pos, stripe - within)
                yield stripe_name(blob_id, n), within, length
                pos += length

    def chunks(self, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
        """Bytes from `start` to `end` inclusive."""
        window: deque[tuple[Any, list[bytes | None], int]] = deque()
        head, self._head = self._head, b""
        if start == 0 and head:  # what the open read already
            yield head[: end + 1]
            start = len(head)
            if start > end:
                return
        try:
            for name, within, length in self._pieces(start, end, chunk):
                window.append(self._read(name, within, length))
                if len(window) >= READ_AHEAD:
                    yield self._collect(*window.popleft())
            while window:
                yield self._collect(*window.popleft())
        finally:
            for completion, _box, _length in window:  # a client gone mid-body
                with contextlib.suppress(Exception):
                    completion.wait_for_complete_and_cb()

    def _read(self, name: str, within: int, length: int) -> tuple[Any, list[bytes | None], int]:
        box: list[bytes | None] = [None]

        def done(_completion: Any, data: bytes | None) -> None:
            box[0] = data

        with rados_errors("a read"):
            completion = self._ioctx.aio_read(name, length, within, oncomplete=done)
        return completion, box, length

    @staticmethod
    def _collect(completion: Any, box: list[bytes | None], length: int) -> bytes:
        _settle(completion, "a read")
        data = box[0]
        if data is None or len(data) != length:
            raise OSError(errno.EIO, "a blob stripe is shorter than its recorded size")
        return data

    def close(self) -> None:
        self._segments = []
        self._head = b""


class RadosBlobStore:
    """Blobs as striped RADOS objects in one pool of the cluster `connection` reaches."""

    blocking_reads = True

    def __init__(
        self,
        connection: CephConnection,
        pool: str,
        stripe_bytes: int = 4 * 1024**2,
        ec_profile: str = "",
        sweep_grace: float = 3600.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.connection = connection
        self.pool = pool
        self.stripe_bytes = stripe_bytes
        self.ec_profile = ec_profile
        self.sweep_grace = sweep_grace
        self._now = now
        self._lock = threading.Lock()
        self._ctx: Any = None
        self._ctx_of: Any = None  # the librados handle `_ctx` was opened on
        self._ctx_pid = 0

    def setup(self) -> None:
        """Create the pool when it does not exist (replicated, or erasure-coded with
        `ec_profile`); an existing pool is used as it is."""
        with translated():
            ensure_pool(self.connection.rados(), self.pool, self.ec_profile)
        self.ioctx()

    def ioctx(self) -> Any:
        """This process's I/O context on the pool (librados' is thread-safe)."""
        with self._lock, translated():
            handle = self.connection.rados()
            if self._ctx is None or self._ctx_of is not handle:
                try:
                    self._ctx = handle.open_ioctx(self.pool)
                except bindings("rados").ObjectNotFound:
                    raise RuntimeError(
                        f"the RADOS pool {self.pool!r} (objectstore.rados_pool) does not exist: "
                        "restart Souverain to create it, or create it with `ceph osd pool create`"
                    ) from None
                # a full pool or cluster answers ENOSPC/EDQUOT at once (StorageFull) instead
                # of holding the write until it has room, and still takes deletes that free it
                self._ctx.set_osdmap_full_try()
                self._ctx_of = handle
                self._ctx_pid = os.getpid()
            return self._ctx

    def writer(self, algorithms: Iterable[str] = ()) -> RadosBlobWriter:
        return RadosBlobWriter(self, algorithms)

    def delete(self, blob_ids: Iterable[str]) -> None:
        ioctx = self.ioctx()
        for blob_id in blob_ids:
            try:
                with rados_errors("a read"):
                    raw = ioctx.get_xattr(stripe_name(blob_id, 0), LAYOUT_XATTR)
            except bindings("rados").ObjectNotFound:
                continue  # gone already; stray stripes of a torn delete go at the sweep
            _remove_stripes(ioctx, blob_id, int(json.loads(raw)["stripes"]))

    def open_segments(self, segments: Sequence[Sequence[Any]]) -> RadosSegmentReader:
        return RadosSegmentReader(self, segments)

    def sweep(self, referenced: set[str]) -> int:
        """Remove the stripes of blobs no row points at and older than `sweep_grace`
        (younger ones may be an upload another node is about to commit); how many went."""
        ioctx = self.ioctx()
        orphans: dict[str, list[str]] = {}
        with rados_errors("a listing"):
            for entry in ioctx.list_objects():
                blob_id, _, n = entry.key.rpartition(".")
                if blob_id and n.isdigit() and blob_id not in referenced:
                    orphans.setdefault(blob_id, []).append(entry.key)
        removed = 0
        for names in orphans.values():
            if self._young(ioctx, names):
                continue
            for name in names:
                with contextlib.suppress(bindings("rados").ObjectNotFound), rados_errors("sweep"):
                    ioctx.remove_object(name)
                    removed += 1
        return removed

    def _young(self, ioctx: Any, names: list[str]) -> bool:
        newest = 0.0
        for name in names:
            with contextlib.suppress(bindings("rados").ObjectNotFound), rados_errors("sweep"):
                _size, mtime = ioctx.stat(name)  # the binding gives local time
                newest = max(newest, time.mktime(mtime))
        return self._now() - newest < self.sweep_grace

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None and self._ctx_pid == os.getpid():
                with contextlib.suppress(Exception):
                    self._ctx.close()
            self._ctx = None
            self._ctx_of = None


def ensure_pool(cluster: Any, pool: str, ec_profile: str) -> None:
    """Create `pool` when missing: replicated (the cluster's default size), or erasure-coded
    with `ec_profile` (a profile's name, or `k=..,m=..` pairs made into the profile
    `souverain-<pool>`); tagged for the application "rados". An existing pool is kept."""
    if cluster.pool_exists(pool):
        return
    if not ec_profile:
        _mon(cluster, pool, {"prefix": "osd pool create", "pool": pool, "pool_type": "replicated"})
    else:
        profile = ec_profile
        if "=" in ec_profile:
            profile = f"souverain-{pool}"
            pairs = ec_profile.split(",")
            _mon(cluster, pool, {"prefix": "osd erasure-code-profile set", "name": profile,
                                 "profile": pairs})  # fmt: skip
        _mon(cluster, pool, {"prefix": "osd pool create", "pool": pool, "pool_type": "erasure",
                             "erasure_code_profile": profile})  # fmt: skip
    _mon(cluster, pool, {"prefix": "osd pool application enable", "pool": pool, "app": "rados"})


def _mon(cluster: Any, pool: str, command: dict[str, Any]) -> None:
    code, _out, message = cluster.mon_command(json.dumps(command), b"")
    if code != 0:
        raise RuntimeError(
            f"cannot create the RADOS pool {pool!r} (objectstore.rados_pool): "
            f"`{command['prefix']}` answered {os.strerror(-code)}: {message.strip()}. Create "
            "the pool yourself (`ceph osd pool create`), fix objectstore.rados_ec_profile, or "
            "give ceph.user the monitor capability to create pools"
        )
