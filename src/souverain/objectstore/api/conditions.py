"""Conditional and ranged reads as S3 evaluates them: pure functions of headers and object.

If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since (RFC 7232 as S3
applies them), the copy-source forms of the same, Range and partNumber. Nothing
here reads a request or the database: the handlers pass header values and the
version found, so the rules are testable without HTTP.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re

from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import ObjectInfo


def parse_http_date(value: str) -> dt.datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).replace(tzinfo=None)


def etag_matches(header: str, etag: str) -> bool:
    wanted = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    return "*" in wanted or etag in wanted


def check_conditions(conditions: dict[str, str], obj: ObjectInfo, headers: dict[str, str]) -> None:
    """RFC 7232 preconditions as S3 applies them: 412 PreconditionFailed or 304."""
    modified = obj.last_modified.replace(microsecond=0)
    failed = S3Error(
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
        f"/{obj.bucket}/{obj.key}",
    )
    if_match = conditions.get("if-match")
    if if_match is not None:
        if not etag_matches(if_match, obj.etag):
            raise failed
    else:
        since = conditions.get("if-unmodified-since")
        when = parse_http_date(since) if since else None
        if when is not None and modified > when:
            raise failed
    not_modified = S3Error(
        "NotModified",
        "Not Modified",
        headers={k: v for k, v in headers.items() if k in ("etag", "last-modified")},
    )
    if_none_match = conditions.get("if-none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, obj.etag):
            raise not_modified
    else:
        since = conditions.get("if-modified-since")
        when = parse_http_date(since) if since else None
        if when is not None and modified <= when:
            raise not_modified


def check_copy_conditions(headers: dict[str, str], obj: ObjectInfo, resource: str) -> None:
    """The `x-amz-copy-source-if-*` preconditions on a copy's source: a 412 when one fails,
    also where a GET would answer 304."""
    conditions = {
        name[len("x-amz-copy-source-") :]: value
        for name, value in headers.items()
        if name.startswith("x-amz-copy-source-if-")
    }
    try:
        check_conditions(conditions, obj, {})
    except S3Error as exc:
        if exc.code == "NotModified":
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                resource,
            ) from None
        raise


# Offsets past 19 digits are beyond any object; read as this, they never reach int()'s
# 4,300-digit limit (a ValueError, so a 500) and keep S3's answers for huge offsets.
_BEYOND_ANY_OBJECT = 10**19


def _offset(digits: str) -> int:
    return int(digits) if len(digits) <= 19 else _BEYOND_ANY_OBJECT


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive; None to send the whole object; InvalidRange if unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
    if not match or (not match[1] and not match[2]):
        return None  # not a single byte range: ignored, as S3 does
    unsatisfiable = S3Error(
        "InvalidRange",
        "The requested range is not satisfiable",
        headers={"content-range": f"bytes */{size}"},
    )
    if not match[1]:
        suffix = _offset(match[2])
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size - 1
    start = _offset(match[1])
    end = _offset(match[2]) if match[2] else size - 1
    if start >= size:
        raise unsatisfiable
    if end < start:
        return None
    return start, min(end, size - 1)


def part_range(obj: ObjectInfo, raw: str) -> tuple[int, int]:
    try:
        number = int(raw)
    except ValueError:
        number = 0
    segments = obj.segments or [["", 0]]
    if not 1 <= number <= len(segments):
        raise S3Error(
            "InvalidPartNumber",
            "The requested partnumber is not satisfiable",
            headers={"content-range": f"bytes */{obj.size}"},
        )
    start = sum(size for _, size in segments[: number - 1])
    return start, start + segments[number - 1][1] - 1


def copy_source_range(value: str, size: int) -> tuple[int, int]:
    """(first, last) of an `x-amz-copy-source-range`: one closed range inside the source."""
    match = re.fullmatch(r"bytes=(\d+)-(\d+)", value.strip())
    if not match or _offset(match[1]) > _offset(match[2]) or _offset(match[2]) >= size:
        raise S3Error(
            "InvalidArgument",
            "The x-amz-copy-source-range value must be of the form bytes=first-last "
            "where first and last are the zero-based offsets of the first and last bytes "
            "to copy, within the source object",
        )
    return int(match[1]), int(match[2])
