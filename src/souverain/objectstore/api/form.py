"""multipart/form-data as it arrives: the small fields first, then the file streamed.

For S3's browser uploads (POST Object). The fields before the file are read whole,
within a limit; the file part is handed on chunk by chunk, never held whole; anything
after it is ignored, as S3 does. A body that is not well-formed multipart is refused
with S3's MalformedPOSTRequest.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from souverain.objectstore.errors import S3Error

MAX_HEADER_BYTES = 8 * 1024
_PARAM = re.compile(r';\s*([a-zA-Z*]+)="((?:[^"\\]|\\.)*)"|;\s*([a-zA-Z*]+)=([^;\s]*)')


def malformed(detail: str = "") -> S3Error:
    return S3Error(
        "MalformedPOSTRequest",
        "The body of your POST request is not well-formed multipart/form-data." + detail,
    )


def boundary_of(content_type: str) -> bytes:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise malformed(" The Content-Type must be multipart/form-data.")
    found = dict(_params(";" + params))
    boundary = found.get("boundary", "")
    if not 1 <= len(boundary) <= 70:
        raise malformed(" The Content-Type names no usable boundary.")
    return boundary.encode("latin-1")


def _params(text: str) -> list[tuple[str, str]]:
    pairs = []
    for match in _PARAM.finditer(text):
        if match.group(1):
            pairs.append((match.group(1).lower(), re.sub(r"\\(.)", r"\1", match.group(2))))
        else:
            pairs.append((match.group(3).lower(), match.group(4)))
    return pairs


class FormData:
    """One form upload's body: `fields()` up to the file, then `file_chunks()`."""

    def __init__(self, chunks: AsyncIterator[bytes], boundary: bytes, field_limit: int) -> None:
        self._chunks = chunks
        # A leading CRLF lets the first boundary match like every later one.
        self._buffer = bytearray(b"\r\n")
        self._delimiter = b"\r\n--" + boundary
        self._field_limit = field_limit
        self.filename = ""
        self.file_type = ""

    async def _more(self) -> bool:
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            return False
        self._buffer += chunk
        return True

    async def _find(self, needle: bytes, limit: int) -> int:
        """Where `needle` starts in the buffer, reading on as needed (at most `limit`)."""
        while True:
            found = self._buffer.find(needle)
            if found >= 0:
                return found
            if len(self._buffer) > limit:
                raise S3Error(
                    "MaxPostPreDataLengthExceededError",
                    "Your POST request fields preceding the upload file were too large.",
                )
            if not await self._more():
                raise malformed()

    async def _next_part(self) -> dict[str, str] | None:
        """Past a boundary: the next part's headers, or None at the closing boundary."""
        while len(self._buffer) < 2 and await self._more():
            pass
        if self._buffer[:2] == b"--":
            return None
        end = await self._find(b"\r\n\r\n", MAX_HEADER_BYTES)
        lines = bytes(self._buffer[:end]).decode("utf-8", "replace").split("\r\n")
        del self._buffer[: end + 4]
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        return headers

    async def fields(self) -> dict[str, str]:
        """Every field before the file, by lower-case name; the file's name and type kept."""
        start = await self._find(self._delimiter, self._field_limit)
        del self._buffer[: start + len(self._delimiter)]
        found: dict[str, str] = {}
        while True:
            headers = await self._next_part()
            if headers is None:
                raise S3Error(
                    "IncorrectNumberOfFilesInPostRequest",
                    "POST requires exactly one file upload per request.",
                )
            params = dict(_params(";" + headers.get("content-disposition", "").partition(";")[2]))
            name = params.get("name", "").lower()
            if not name:
                raise malformed(" Every part needs a Content-Disposition with a name.")
            if name == "file":
                self.filename = params.get("filename", "")
                self.file_type = headers.get("content-type", "")
                return found
            end = await self._find(self._delimiter, self._field_limit)
            try:
                found[name] = bytes(self._buffer[:end]).decode("utf-8")
            except UnicodeDecodeError:
                raise malformed(f" The field {name!r} is not UTF-8.") from None
            del self._buffer[: end + len(self._delimiter)]

    async def file_chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes as they come, up to its closing boundary."""
        keep = len(self._delimiter) - 1
        while True:
            end = self._buffer.find(self._delimiter)
            if end >= 0:
                if end:
                    yield bytes(self._buffer[:end])
                del self._buffer[: end + len(self._delimiter)]
                return
            if len(self._buffer) > keep:
                yield bytes(self._buffer[:-keep])
                del self._buffer[:-keep]
            if not await self._more():
                raise malformed(" The file part has no closing boundary.")

    async def drain(self) -> None:
        """Read and drop what follows the file (S3 ignores fields after it)."""
        self._buffer.clear()
        while await self._more():
            self._buffer.clear()
