"""Neutron's list parameters applied to views: filters, sort and pages.

Filters name wire attributes, so they apply to rendered views, not to rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from souverain.common.errors import BadRequest, NotFound


@dataclass(frozen=True)
class ListQuery:
    """Neutron's list parameters: filters (a key repeated means OR), sort, page."""

    filters: dict[str, list[str]] = field(default_factory=dict)
    sort: tuple[tuple[str, str], ...] = ()
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    has_more: bool


def _matches(value: Any, wanted: str, key: str) -> bool:
    if key == "fixed_ips" and isinstance(value, list):
        name, _, expected = wanted.partition("=")
        return any(str(ip.get(name)) == expected for ip in value)
    if isinstance(value, bool):
        return wanted.lower() in (("true", "1") if value else ("false", "0"))
    if isinstance(value, list):
        return wanted in [str(v) for v in value]
    if value is None:
        return wanted in ("", "None")
    return str(value) == wanted


TAG_FILTERS = frozenset({"tags", "tags-any", "not-tags", "not-tags-any"})


def _tagged(view: dict[str, Any], key: str, wanted: list[str]) -> bool:
    """Neutron's tag filters: each value a comma-separated list of tags; `tags` wants all
    of them, `tags-any` one, `not-tags` not all, `not-tags-any` none."""
    asked = {t for value in wanted for t in value.split(",") if t}
    held = set(view.get("tags") or [])
    if key == "tags":
        return asked <= held
    if key == "tags-any":
        return bool(asked & held)
    if key == "not-tags":
        return not asked <= held
    return not asked & held


def _sort_value(key: str) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    def value(view: dict[str, Any]) -> tuple[bool, str]:
        item = view.get(key)
        if isinstance(item, bool | int):
            return (item is not None, f"{int(item):020d}")
        return (item is not None, str(item) if item is not None else "")

    return value


def select_page(views: list[dict[str, Any]], query: ListQuery, resource: str) -> Page:
    """Filter, sort (id last as the tie-break) and page views exactly once, in that order."""
    known = set(views[0]) if views else set()
    for key in query.filters:
        if views and key not in known and not (key in TAG_FILTERS and "tags" in known):
            raise BadRequest(f"[{key[:64]}] is invalid attribute for filtering")
    chosen = [
        v
        for v in views
        if all(
            _tagged(v, key, wanted)
            if key in TAG_FILTERS
            else any(_matches(v.get(key), w, key) for w in wanted)
            for key, wanted in query.filters.items()
        )
    ]
    keys = list(query.sort)
    for key, _ in keys:
        if views and key not in known:
            raise BadRequest(f"{key[:64]} is invalid attribute for sort_keys")
    if not any(k == "id" for k, _ in keys):
        keys.append(("id", keys[-1][1] if keys else "asc"))
    for key, direction in reversed(keys):
        chosen.sort(key=_sort_value(key), reverse=direction == "desc")
    if query.marker is not None:
        ids = [v["id"] for v in chosen]
        if query.marker not in ids:
            raise NotFound(f"{resource} {query.marker[:64]} could not be found.")
        at = ids.index(query.marker)
        chosen = chosen[:at] if query.page_reverse else chosen[at + 1 :]
    if query.limit is None:
        return Page(chosen, False)
    if query.page_reverse:
        return Page(chosen[-query.limit :], len(chosen) > query.limit)
    return Page(chosen[: query.limit], len(chosen) > query.limit)


# ---------------------------------------------------------------------- input checks
