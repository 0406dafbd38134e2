"""Large objects: static manifests (a JSON list of segments) and dynamic ones (a prefix).

A static large object's bytes are its segments' bytes, gathered when the manifest
is stored; the manifest itself is kept with the object for `multipart-manifest=get`
and `=delete`. Knows nothing of HTTP.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

MAX_SEGMENTS = 1000
MAX_MANIFEST_BYTES = 8 * 1024 * 1024


class ManifestError(ValueError):
    """A manifest Swift refuses; the message says which segment and why."""


@dataclass(frozen=True)
class Segment:
    container: str
    name: str
    etag: str | None
    size: int | None

    @property
    def path(self) -> str:
        return f"/{self.container}/{self.name}"


def parse_slo(body: bytes) -> list[Segment]:
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ManifestError("Manifest must be valid JSON.") from None
    if not isinstance(items, list) or not items:
        raise ManifestError("Manifest must be a non-empty list of segments.")
    if len(items) > MAX_SEGMENTS:
        raise ManifestError(f"Too many segments: at most {MAX_SEGMENTS}.")
    return [_segment(i, item) for i, item in enumerate(items)]


def _segment(index: int, item: Any) -> Segment:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        raise ManifestError(f"Index {index}: each segment needs a 'path' string.")
    container, name = split_path(item["path"])
    if not container or not name:
        raise ManifestError(f"Index {index}: path must be /container/object.")
    etag = item.get("etag")
    size = item.get("size_bytes")
    if etag is not None and not isinstance(etag, str):
        raise ManifestError(f"Index {index}: 'etag' must be a string or null.")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ManifestError(f"Index {index}: 'size_bytes' must be a whole number or null.")
    return Segment(container, name, etag or None, size)


def split_path(path: str) -> tuple[str, str]:
    """`/container/object` (or without the leading slash, URL-encoded) as its two parts."""
    path = urllib.parse.unquote(path).lstrip("/")
    container, _, name = path.partition("/")
    return container, name


def manifest_json(segments: list[dict[str, Any]]) -> str:
    return json.dumps(segments, separators=(",", ":"))
