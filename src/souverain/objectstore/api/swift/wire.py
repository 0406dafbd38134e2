"""Swift's wire shapes: transaction ids, timestamps, errors and listings.

Errors are Swift's short HTML pages with the status Swift's clients expect; listings
are text (one name a line), JSON or XML as `format=` or `Accept` asks.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import time
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from starlette.responses import Response

from souverain.objectstore.errors import ERROR_STATUS, S3Error

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=UTF-8"
JSON = "application/json; charset=utf-8"
XML = "application/xml; charset=utf-8"

TITLES = {
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    416: "Requested Range Not Satisfiable",
    422: "Unprocessable Entity",
    500: "Internal Error",
    503: "Service Unavailable",
}
# S3 error codes the shared rules raise, as Swift answers them
S3_STATUS = {
    "QuotaExceeded": 413,
    "EntityTooLarge": 413,
    "KeyTooLongError": 400,
    "NoSuchKey": 404,
    "NoSuchBucket": 404,
    "NoSuchVersion": 404,
    "BucketNotEmpty": 409,
    "NotModified": 304,
    "InvalidRange": 416,
    "RequestTimeout": 408,
}


class SwiftError(Exception):
    """An answer other than success: status, a message for the client, extra headers."""

    def __init__(self, status: int, message: str = "", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message or TITLES.get(status, "Error")
        self.headers = headers or {}


def from_s3(exc: S3Error) -> SwiftError:
    status = S3_STATUS.get(exc.code) or ERROR_STATUS.get(exc.code, 400)
    headers = {k: v for k, v in exc.headers.items() if k in ("content-range", "etag")}
    return SwiftError(status, str(exc.message), headers)


def render_error(path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    """An error as Swift shows it (also for refusals made before the API runs)."""
    body = f"<html><h1>{escape(title)}</h1><p>{escape(message)}</p></html>"
    return body.encode(), HTML


def error_response(exc: SwiftError, method: str) -> Response:
    if exc.status == 304:
        return Response(status_code=304, headers=exc.headers)
    title = TITLES.get(exc.status, "Error")
    body, content_type = render_error("", exc.status, title, exc.message)
    if method == "HEAD":
        body = b""
    return Response(body, exc.status, headers=exc.headers, media_type=content_type)


def new_trans_id() -> str:
    """`tx` + 21 hex digits + `-` + the time in 10 hex digits, as Swift's clients parse it."""
    return f"tx{os.urandom(11).hex()[:21]}-{int(time.time()):010x}"


def timestamp(when: dt.datetime | None = None) -> str:
    """Seconds since the epoch with five decimals (X-Timestamp); naive times are UTC."""
    if when is None:
        return f"{time.time():.5f}"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return f"{when.timestamp():.5f}"


def http_date(when: dt.datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=True)


def iso(when: dt.datetime) -> str:
    return when.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.%f")


def listing_format(query: Mapping[str, str], accept: str) -> str:
    wanted = query.get("format", "").lower()
    if wanted in ("json", "xml", "plain"):
        return "text" if wanted == "plain" else wanted
    accept = accept.lower()
    if "application/json" in accept:
        return "json"
    if "application/xml" in accept or "text/xml" in accept:
        return "xml"
    return "text"


def listing(
    kind: str, name: str, items: list[dict[str, Any]], fmt: str, headers: dict[str, str]
) -> Response:
    """A listing of containers (kind `account`) or objects (kind `container`).

    Each item is a dict as JSON shows it; `subdir` items are delimiter roll-ups."""
    if fmt == "json":
        return Response(json.dumps(items), 200, headers=headers, media_type=JSON)
    if fmt == "xml":
        child = "container" if kind == "account" else "object"
        parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{kind} name={quoteattr(name)}>']
        for item in items:
            if "subdir" in item:
                sub = escape(item["subdir"])
                parts.append(
                    f"<subdir name={quoteattr(item['subdir'])}><name>{sub}</name></subdir>"
                )
                continue
            fields = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in item.items())
            parts.append(f"<{child}>{fields}</{child}>")
        parts.append(f"</{kind}>")
        return Response("".join(parts), 200, headers=headers, media_type=XML)
    if not items:
        return Response(status_code=204, headers=headers, media_type=TEXT)
    text = "".join((item.get("subdir") or item["name"]) + "\n" for item in items)
    return Response(text, 200, headers=headers, media_type=TEXT)


def meta_headers(prefix: str, meta: Mapping[str, str]) -> dict[str, str]:
    """Stored metadata (lower-case names) as response headers under `prefix`."""
    return {f"{prefix}{name}": value for name, value in meta.items()}


def meta_changes(
    headers: Mapping[str, str], prefix: str, remove_prefix: str
) -> dict[str, str | None]:
    """`X-<Kind>-Meta-Name: value` sets, `X-Remove-<Kind>-Meta-Name` and empty values remove."""
    changes: dict[str, str | None] = {}
    for name, value in headers.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            changes[name[len(prefix) :]] = value.strip() or None
    for name in headers:
        if name.startswith(remove_prefix) and len(name) > len(remove_prefix):
            changes[name[len(remove_prefix) :]] = None
    return changes
