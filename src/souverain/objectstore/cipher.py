"""The sealed format of encrypted object bytes: AES-256-GCM over fixed plaintext chunks.

A sealed segment (one blob, one multipart part, or an inline object's bytes) is an
8-byte random nonce prefix, then every chunk of `CHUNK` plaintext bytes (the last may
be shorter, and a zero-length segment has one empty chunk) as ciphertext plus its
16-byte tag. Chunk `i` is sealed with the nonce `prefix || i` and associated data that
names the format, the part number and `i` and whether the chunk is the last one: a
chunk moved, swapped with another part's or cut off fails to open. The data key is the
object version's own (a new one per PUT, copy or upload), so chunks of two objects
never open under each other's key.

Segment sizes kept in object rows stay plaintext sizes; `sealed_size` gives the bytes
stored. This module only transforms bytes: it never sees a key's wrapping, never stores
or logs a key, and knows nothing of HTTP or rows.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from souverain.objectstore.store import CHUNK as READ_CHUNK
from souverain.objectstore.store import BlobWriter, Data, Digests

CHUNK = 64 * 1024
TAG = 16
PREFIX = 8
SEALED_CHUNK = CHUNK + TAG
_AAD = struct.Struct(">8sIIB")
_FORMAT = b"souv-se1"


class SealBroken(OSError):
    """Stored bytes did not open under their key: tampered with, reordered or cut short."""


class _Reader(Protocol):
    def chunks(self, start: int, end: int, chunk: int = ...) -> Iterator[bytes]: ...
    def close(self) -> None: ...


def chunk_count(plain: int) -> int:
    return max(1, -(-plain // CHUNK))


def sealed_size(plain: int) -> int:
    """The bytes stored for a segment of `plain` plaintext bytes."""
    return PREFIX + plain + TAG * chunk_count(plain)


def _aad(part: int, index: int, last: bool) -> bytes:
    return _AAD.pack(_FORMAT, part, index, last)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


class _SizeOnly(Digests):
    """The wrapped writer's digests: only the size (ETag and checksums are the plaintext's,
    computed by the sealing writer; hashing ciphertext again would halve throughput)."""

    def update(self, data: Data) -> None:
        self.size += len(data)


def seal(key: bytes, data: bytes, part: int = 0) -> bytes:
    """A whole small segment sealed at once (inline objects)."""
    aead = AESGCM(key)
    prefix = os.urandom(PREFIX)
    out = [prefix]
    view = memoryview(data)
    count = chunk_count(len(data))
    for index in range(count):
        piece = view[index * CHUNK : (index + 1) * CHUNK]
        last = index == count - 1
        out.append(aead.encrypt(_nonce(prefix, index), piece, _aad(part, index, last)))
    return b"".join(out)


class SealingWriter:
    """A BlobWriter that seals what it is given before the wrapped writer stores it.

    `digests` and `size` are the plaintext's (the ETag, the checksums a client sent);
    memory stays bounded by one buffer of what the caller writes plus one chunk."""

    def __init__(
        self, inner: BlobWriter, key: bytes, part: int = 0, algorithms: Iterable[str] = ()
    ) -> None:
        self.inner = inner
        inner.digests = _SizeOnly()
        self.blob_id = inner.blob_id
        self.digests = Digests(algorithms)
        self._aead = AESGCM(key)
        self._part = part
        self._prefix = os.urandom(PREFIX)
        self._index = 0
        self._held = bytearray()  # the plaintext of the chunk not sealed yet
        self._out = bytearray()  # sealed bytes on their way to the wrapped writer
        self._started = False

    @property
    def size(self) -> int:
        return self.digests.size

    def _seal(self, pieces: Sequence[bytes | bytearray | memoryview], last_at: int) -> None:
        """Seal `pieces` (whole chunks, but for the last one at commit) into the writer's
        own buffer, then hand that to the wrapped writer in one write. `encrypt_into`
        works without the GIL: the event loop runs beside the thread that writes."""
        head = b"" if self._started else self._prefix
        self._started = True
        total = len(head) + sum(len(piece) + TAG for piece in pieces)
        if len(self._out) < total:
            self._out = bytearray(total)
        with memoryview(self._out) as out:
            out[: len(head)] = head
            at = len(head)
            for piece in pieces:
                index = self._index
                aad = _aad(self._part, index, index == last_at)
                end = at + len(piece) + TAG
                self._aead.encrypt_into(_nonce(self._prefix, index), piece, aad, out[at:end])
                at = end
                self._index += 1
            self.inner.write(out[:total])

    def write(self, data: Data) -> None:
        self.digests.update(data)
        rest = memoryview(data)
        pieces: list[bytes | bytearray | memoryview] = []
        if self._held:  # fill the chunk held back first
            take = CHUNK - len(self._held)
            self._held += rest[:take]
            rest = rest[take:]
            if not rest:
                return
            pieces.append(self._held)
        # Keep at least one byte back: the last chunk is only known at commit.
        full = (len(rest) - 1) // CHUNK
        pieces += [rest[n * CHUNK : (n + 1) * CHUNK] for n in range(full)]
        if pieces:
            self._seal(pieces, -1)
        self._held = bytearray(rest[full * CHUNK :])

    def commit(self) -> str:
        self._seal([self._held], self._index)
        self._held = bytearray()
        return self.inner.commit()

    def abort(self) -> None:
        self._held = bytearray()
        self.inner.abort()


class OpeningReader:
    """Reads plaintext `start`..`end` (inclusive) across sealed segments, opening only the
    chunks the range covers. `sizes`: each segment's plaintext size; `parts`: each
    segment's part number (0 for a single PUT).

    Each read of the store (several sealed chunks) is opened with `decrypt_into` into one
    buffer the reader keeps, then handed out as one `bytes`: one copy per read, no
    per-chunk objects."""

    def __init__(
        self, inner: _Reader, key: bytes, sizes: Sequence[int], parts: Sequence[int]
    ) -> None:
        self._inner = inner
        self._aead = AESGCM(key)
        self._sizes = list(sizes)
        self._parts = list(parts)
        self._plain = bytearray()

    def chunks(self, start: int, end: int, chunk: int = READ_CHUNK) -> Iterator[bytes]:
        """Plaintext from `start` to `end` inclusive, in pieces of about `chunk` bytes."""
        batch = SEALED_CHUNK * max(1, chunk // CHUNK)
        base = plain_base = 0
        for size, part in zip(self._sizes, self._parts, strict=True):
            if size and plain_base <= end and plain_base + size - 1 >= start:
                lo = max(start, plain_base) - plain_base
                hi = min(end, plain_base + size - 1) - plain_base
                yield from self._segment(base, size, part, lo, hi, batch)
            base += sealed_size(size)
            plain_base += size

    def _segment(
        self, base: int, size: int, part: int, lo: int, hi: int, batch: int
    ) -> Iterator[bytes]:
        """Plaintext bytes lo..hi of the segment stored at `base`."""
        prefix = b"".join(self._inner.chunks(base, base + PREFIX - 1))
        if len(prefix) != PREFIX:
            raise SealBroken("sealed object bytes end early")
        first, last = lo // CHUNK, hi // CHUNK
        body = base + PREFIX
        read_end = body + min((last + 1) * SEALED_CHUNK, sealed_size(size) - PREFIX) - 1
        pending = b""  # the start of a chunk the last read cut
        index = first
        for data in self._inner.chunks(body + first * SEALED_CHUNK, read_end, batch):
            held = pending + data if pending else data
            at = index * CHUNK  # the plaintext offset (in the segment) of this read's first byte
            used, opened = self._open_run(held, prefix, part, index, last, size)
            index += -(-used // SEALED_CHUNK)
            pending = held[used:]
            cut_lo, cut_hi = max(lo - at, 0), min(hi + 1 - at, opened)
            if cut_hi > cut_lo:
                with memoryview(self._plain) as plain:
                    yield bytes(plain[cut_lo:cut_hi])
        if index <= last:
            raise SealBroken("sealed object bytes end early")

    def _open_run(
        self, held: bytes, prefix: bytes, part: int, index: int, last: int, size: int
    ) -> tuple[int, int]:
        """Open the whole sealed chunks at the start of `held` (chunk `index` onwards, up to
        `last`) into the reader's buffer: (sealed bytes used, plaintext bytes opened)."""
        final = chunk_count(size) - 1
        used = opened = 0
        if len(self._plain) < len(held):
            self._plain = bytearray(len(held))
        with memoryview(held) as view, memoryview(self._plain) as plain:
            while index <= last:
                length = SEALED_CHUNK if index < final else size - index * CHUNK + TAG
                if len(held) - used < length:
                    break
                nonce, aad = _nonce(prefix, index), _aad(part, index, index == final)
                target = plain[opened : opened + length - TAG]
                try:
                    self._aead.decrypt_into(nonce, view[used : used + length], aad, target)
                except InvalidTag:
                    raise SealBroken("sealed object bytes do not open under their key") from None
                used += length
                opened += length - TAG
                index += 1
        return used, opened

    def close(self) -> None:
        self._inner.close()
        self._plain = bytearray()


def stored_segments(segments: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """An encrypted version's segments as the blob store knows them (sealed sizes)."""
    return [[seg[0], sealed_size(seg[1])] for seg in segments]
