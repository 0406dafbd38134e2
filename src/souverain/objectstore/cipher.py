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
from souverain.objectstore.store import BlobWriter, Digests

CHUNK = 64 * 1024
TAG = 16
PREFIX = 8
SEALED_CHUNK = CHUNK + TAG
_AAD = struct.Struct(">8sIIB")
_FORMAT = b"souv-se1"
# Sealed chunks read from the store per call when opening a range.
_READ_CHUNKS = max(1, READ_CHUNK // CHUNK)


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

    def update(self, data: bytes) -> None:
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
        self._buffer = bytearray()
        self._started = False

    @property
    def size(self) -> int:
        return self.digests.size

    def _sealed(self, pieces: Iterable[bytes | memoryview], last_at: int) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            out.append(self._prefix)
            self._started = True
        for piece in pieces:
            index = self._index
            aad = _aad(self._part, index, index == last_at)
            out.append(self._aead.encrypt(_nonce(self._prefix, index), piece, aad))
            self._index += 1
        return out

    def write(self, data: bytes) -> None:
        self.digests.update(data)
        self._buffer += data
        # Keep at least one byte back: the last chunk is only known at commit.
        full = (len(self._buffer) - 1) // CHUNK
        if full <= 0:
            return
        view = memoryview(self._buffer)
        try:
            pieces = (view[i * CHUNK : (i + 1) * CHUNK] for i in range(full))
            out = self._sealed(pieces, -1)
        finally:
            view.release()
        del self._buffer[: full * CHUNK]
        self.inner.write(b"".join(out))

    def commit(self) -> str:
        out = self._sealed([bytes(self._buffer)], self._index)
        self._buffer.clear()
        self.inner.write(b"".join(out))
        return self.inner.commit()

    def abort(self) -> None:
        self._buffer.clear()
        self.inner.abort()


class OpeningReader:
    """Reads plaintext `start`..`end` (inclusive) across sealed segments, opening only the
    chunks the range covers. `sizes`: each segment's plaintext size; `parts`: each
    segment's part number (0 for a single PUT)."""

    def __init__(
        self, inner: _Reader, key: bytes, sizes: Sequence[int], parts: Sequence[int]
    ) -> None:
        self._inner = inner
        self._aead = AESGCM(key)
        self._sizes = list(sizes)
        self._parts = list(parts)

    def chunks(self, start: int, end: int, chunk: int = READ_CHUNK) -> Iterator[bytes]:
        """Plaintext from `start` to `end` inclusive, in pieces of about `chunk` bytes."""
        pending: list[bytes] = []
        held = 0
        for piece in self._pieces(start, end):
            pending.append(piece)
            held += len(piece)
            if held >= chunk:
                yield b"".join(pending)
                pending, held = [], 0
        if pending:
            yield b"".join(pending)

    def _pieces(self, start: int, end: int) -> Iterator[bytes]:
        base = plain_base = 0
        for size, part in zip(self._sizes, self._parts, strict=True):
            stored = sealed_size(size)
            if size and plain_base <= end and plain_base + size - 1 >= start:
                lo = max(start, plain_base) - plain_base
                hi = min(end, plain_base + size - 1) - plain_base
                yield from self._segment(base, size, part, lo, hi)
            base += stored
            plain_base += size

    def _segment(self, base: int, size: int, part: int, lo: int, hi: int) -> Iterator[bytes]:
        """Plaintext bytes lo..hi of the segment stored at `base`."""
        prefix = b"".join(self._inner.chunks(base, base + PREFIX - 1))
        count = chunk_count(size)
        first, last = lo // CHUNK, hi // CHUNK
        body = base + PREFIX
        stored_end = body + sealed_size(size) - PREFIX - 1
        read_end = min(body + (last + 1) * SEALED_CHUNK - 1, stored_end)
        pending = b""  # the start of a chunk the last read cut
        index = first
        for data in self._inner.chunks(
            body + first * SEALED_CHUNK, read_end, SEALED_CHUNK * _READ_CHUNKS
        ):
            held = pending + data if pending else data
            view, pos = memoryview(held), 0
            while index <= last:
                length = SEALED_CHUNK if index < count - 1 else size - index * CHUNK + TAG
                if len(held) - pos < length:
                    break
                sealed = view[pos : pos + length]
                plain = self._open(prefix, part, index, index == count - 1, sealed)
                pos += length
                cut_lo = lo - index * CHUNK if index == first else 0
                cut_hi = hi - index * CHUNK + 1 if index == last else len(plain)
                yield plain[cut_lo:cut_hi] if cut_lo or cut_hi != len(plain) else plain
                index += 1
            pending = bytes(view[pos:])
            view.release()
        if index <= last or len(prefix) != PREFIX:
            raise SealBroken("sealed object bytes end early")

    def _open(
        self, prefix: bytes, part: int, index: int, last: bool, sealed: bytes | memoryview
    ) -> bytes:
        try:
            return self._aead.decrypt(_nonce(prefix, index), sealed, _aad(part, index, last))
        except InvalidTag:
            raise SealBroken("sealed object bytes do not open under their key") from None

    def close(self) -> None:
        self._inner.close()


def stored_segments(segments: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """An encrypted version's segments as the blob store knows them (sealed sizes)."""
    return [[seg[0], sealed_size(seg[1])] for seg in segments]
