"""Image bytes arriving over HTTP: the one streamed receive that uploads and staging share.

Bounded memory: a chunk is hashed and written on a thread while the next arrives.
No rules here; what the bytes become is the service's business.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import ClientDisconnect, Request

from souverain.common.errors import ApiError, BadRequest, PayloadTooLarge, UnsupportedMediaType
from souverain.image.store import CHUNK, ImageWriter, StorageFull


class InsufficientStorage(ApiError):
    status = 413
    title = "Request Entity Too Large"


async def receive_into(request: Request, writer: ImageWriter, limit: int) -> None:
    """Stream the request body into `writer`, hashing and writing on a thread while the
    loop receives the next chunk; on any error the writer is aborted and the error said
    in Glance's terms."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    buffer = bytearray()
    received = 0
    try:
        async for chunk in request.stream():
            buffer += chunk
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"The image is larger than the limit of {limit} bytes.")
            if len(buffer) >= CHUNK:
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(None, writer.write, bytes(buffer))
                buffer.clear()
        if pending is not None:
            await pending
            pending = None
        if buffer:
            await asyncio.to_thread(writer.write, bytes(buffer))
    except BaseException as exc:
        if pending is not None:
            with contextlib.suppress(BaseException):  # the first error is the one to report
                await pending
        writer.abort()
        if isinstance(exc, ClientDisconnect):
            raise BadRequest("The client went away before the image data ended.") from None
        if isinstance(exc, StorageFull):
            raise InsufficientStorage("There is no room left to store the image.") from None
        raise


def octet_stream_only(request: Request) -> None:
    media_type = request.headers.get("content-type", "application/octet-stream")
    if media_type.split(";")[0].strip().lower() != "application/octet-stream":
        raise UnsupportedMediaType("Image data must be sent as application/octet-stream.")
