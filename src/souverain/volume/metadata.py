"""Metadata of volumes and snapshots: the same merge, limits and removal for both. No HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from souverain.common.errors import NotFound
from souverain.volume.schemas import metadata as check_metadata


class WithMetadata(Protocol):
    meta: dict[str, str]
    updated_at: dt.datetime


def set_items(
    row: WithMetadata, items: dict[str, str], replace: bool, now: dt.datetime
) -> dict[str, str]:
    """Merge `items` into the row's metadata (or replace it), within the limits."""
    merged = dict(items) if replace else {**(row.meta or {}), **items}
    check_metadata(merged)
    row.meta = merged
    row.updated_at = now
    return dict(merged)


def delete_item(row: WithMetadata, key: str, now: dt.datetime) -> None:
    meta = dict(row.meta or {})
    if key not in meta:
        raise NotFound(f"Metadata item was not found: {key[:255]}")
    del meta[key]
    row.meta = meta
    row.updated_at = now
