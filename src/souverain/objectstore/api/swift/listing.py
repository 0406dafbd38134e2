"""Listing windows: limit, marker, end_marker, prefix, delimiter, reverse, path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from souverain.objectstore.api.swift.wire import SwiftError

MAX_LIMIT = 10000


@dataclass(frozen=True)
class ListingParams:
    limit: int
    marker: str
    end_marker: str
    prefix: str
    delimiter: str
    reverse: bool


def listing_params(query: Mapping[str, str]) -> ListingParams:
    raw = query.get("limit", "")
    if raw and not raw.isdigit():
        raise SwiftError(412, "limit must be a whole number.")
    limit = int(raw) if raw else MAX_LIMIT
    if limit > MAX_LIMIT:
        raise SwiftError(412, f"Maximum limit is {MAX_LIMIT}.")
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    if "path" in query:
        path = query["path"].rstrip("/")
        prefix, delimiter = (path + "/" if path else ""), "/"
    if len(delimiter) > 1:
        raise SwiftError(412, "A delimiter is one character.")
    reverse = query.get("reverse", "").lower() in ("true", "1", "yes", "on", "t", "y")
    return ListingParams(
        limit, query.get("marker", ""), query.get("end_marker", ""), prefix, delimiter, reverse
    )


def in_window(name: str, params: ListingParams) -> bool:
    """Whether a name lies between marker and end_marker (in the listing's direction)."""
    if params.reverse:
        return (not params.marker or name < params.marker) and (
            not params.end_marker or name > params.end_marker
        )
    return (not params.marker or name > params.marker) and (
        not params.end_marker or name < params.end_marker
    )


def container_window(names: list[str], params: ListingParams) -> list[str]:
    """The container names a listing shows, rolled up by delimiter, in order."""
    shown: list[str] = []
    if params.limit == 0:
        return shown
    for name in sorted(names, reverse=params.reverse):
        if not name.startswith(params.prefix):
            continue
        if params.delimiter:
            at = name.find(params.delimiter, len(params.prefix))
            if at >= 0:
                name = name[: at + 1]
        if (shown and shown[-1] == name) or not in_window(name, params):
            continue
        shown.append(name)
        if len(shown) >= params.limit:
            break
    return shown
