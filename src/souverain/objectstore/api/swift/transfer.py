"""Object bytes in and out: request bodies into blobs, server-side copies, ranged reads.

Small bodies (up to the inline limit) are kept in the object's row as S3 does; larger
ones stream into one durable blob with bounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import IO

from starlette.requests import Request

from souverain.config import ObjectStoreSettings
from souverain.objectstore.api.swift.wire import SwiftError
from souverain.objectstore.encryption import SSE_C, Seal, apply_seal, blob_writer
from souverain.objectstore.records import NewObject, ObjectInfo
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.store import CHUNK, BlobWriter

MAX_SOURCES = 1000


def declared_length(request: Request, limit: int) -> int | None:
    """The body's Content-Length (None when chunked); 411 without either, 413 over `limit`."""
    raw = request.headers.get("content-length")
    if raw is None:
        if "chunked" not in request.headers.get("transfer-encoding", "").lower():
            raise SwiftError(411, "Send a Content-Length or a chunked body.")
        return None
    if not raw.isdigit():
        raise SwiftError(400, "Content-Length must be a whole number of bytes.")
    length = int(raw)
    if length > limit:
        raise SwiftError(413, f"Objects are at most {limit} bytes; use a large-object manifest.")
    return length


async def receive(
    service: ObjectStoreService,
    settings: ObjectStoreSettings,
    request: Request,
    seal: Seal | None = None,
) -> NewObject:
    """The request body as a new object's bytes, durable before this returns; sealed
    under `seal` (the container's default encryption) when given."""
    length = declared_length(request, settings.max_object_bytes)
    if length is not None and length <= settings.inline_max_bytes:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > length:
                raise SwiftError(400, "The body is longer than its Content-Length.")
        if len(data) != length:
            raise SwiftError(499, "The client sent less than its Content-Length.")
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return _sealed(NewObject(len(data), etag, [], data=bytes(data)), seal)
    return _sealed(await _into_blob(service, settings, request.stream(), length, seal), seal)


def _sealed(new: NewObject, seal: Seal | None) -> NewObject:
    apply_seal(new, seal)
    return new


async def _into_blob(
    service: ObjectStoreService,
    settings: ObjectStoreSettings,
    chunks: AsyncIterator[bytes],
    length: int | None,
    seal: Seal | None = None,
) -> NewObject:
    writer = blob_writer(service.store, seal)
    buffer = bytearray()
    try:
        async for chunk in chunks:
            buffer += chunk
            if writer.size + len(buffer) > settings.max_object_bytes:
                raise SwiftError(413, f"Objects are at most {settings.max_object_bytes} bytes.")
            if len(buffer) >= CHUNK:
                await asyncio.to_thread(writer.write, bytes(buffer))
                buffer.clear()
        if buffer:
            writer.write(bytes(buffer))
        if length is not None and writer.size != length:
            raise SwiftError(499, "The client sent less than its Content-Length.")
        await asyncio.to_thread(writer.commit)
    except BaseException:
        writer.abort()
        raise
    return _blob_object(writer)


def _blob_object(writer: BlobWriter) -> NewObject:
    size = writer.size
    segments = [[writer.blob_id, size]] if size else []
    data = None if size else b""
    return NewObject(size, writer.digests.hex("md5"), segments, data=data)


def gather(
    service: ObjectStoreService,
    settings: ObjectStoreSettings,
    sources: list[ObjectInfo],
    seal: Seal | None = None,
) -> NewObject:
    """A new object holding the bytes of `sources` one after the other (a copy, or a
    static large object's segments), sealed under `seal` when given; runs in a thread."""
    total = sum(s.size for s in sources)
    if total > settings.max_object_bytes:
        raise SwiftError(413, f"Objects are at most {settings.max_object_bytes} bytes.")
    if total <= settings.inline_max_bytes:
        data = b"".join(b"".join(read_range(service, s, 0, s.size - 1)) for s in sources)
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return _sealed(NewObject(len(data), etag, [], data=data), seal)
    writer = blob_writer(service.store, seal)
    try:
        for source in sources:
            for chunk in read_range(service, source, 0, source.size - 1):
                writer.write(chunk)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return _sealed(_blob_object(writer), seal)


def from_file(
    service: ObjectStoreService, settings: ObjectStoreSettings, source: IO[bytes]
) -> NewObject:
    """A new object holding what `source` holds (an archive member); runs in a thread."""
    first = source.read(settings.inline_max_bytes + 1)
    if len(first) <= settings.inline_max_bytes:
        etag = hashlib.md5(first, usedforsecurity=False).hexdigest()
        return NewObject(len(first), etag, [], data=first)
    writer = service.store.writer()
    try:
        chunk = first
        while chunk:
            if writer.size + len(chunk) > settings.max_object_bytes:
                raise SwiftError(413, f"Objects are at most {settings.max_object_bytes} bytes.")
            writer.write(chunk)
            chunk = source.read(CHUNK)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return _blob_object(writer)


def read_range(
    service: ObjectStoreService, obj: ObjectInfo, start: int, end: int
) -> Iterator[bytes]:
    """Bytes `start`..`end` (inclusive) of one object; its files stay open until done."""
    if end < start or obj.size == 0:
        return
    refuse_customer_key(obj)
    reader = service.reader(obj)
    try:
        yield from reader.chunks(start, end)
    finally:
        reader.close()


def refuse_customer_key(obj: ObjectInfo) -> None:
    """Swift cannot send an SSE-C key: such an object is read through S3 only."""
    if obj.sse is not None and obj.sse.mode == SSE_C:
        raise SwiftError(
            403, "This object is encrypted with a customer-provided key: read it through S3."
        )


def read_many(
    service: ObjectStoreService, parts: list[ObjectInfo], start: int, end: int
) -> Iterator[bytes]:
    """Bytes `start`..`end` of the concatenation of `parts` (a large object's segments)."""
    offset = 0
    for part in parts:
        first, last = offset, offset + part.size - 1
        offset += part.size
        if last < start or first > end:
            continue
        yield from read_range(service, part, max(start, first) - first, min(end, last) - first)


def counted(chunks: Iterator[bytes], done: list[int]) -> Iterator[bytes]:
    """Pass chunks on, adding what was sent to `done[0]` (egress is billed on what left)."""
    with contextlib.suppress(GeneratorExit):
        for chunk in chunks:
            done[0] += len(chunk)
            yield chunk
