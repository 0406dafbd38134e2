"""The one pagination helper: `limit` and `marker` over an ordered list, as OpenStack does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from souverain.common.errors import BadRequest

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_marker: str | None


def paginate(
    items: Sequence[T], key: Callable[[T], str], limit: int | None, marker: str | None
) -> Page[T]:
    """Items after the one whose key is `marker`, at most `limit` of them."""
    start = 0
    if marker:
        for index, item in enumerate(items):
            if key(item) == marker:
                start = index + 1
                break
        else:
            raise BadRequest(f"marker {marker!r} not found")
    if limit is None:
        return Page(list(items[start:]), None)
    chunk = list(items[start : start + limit])
    more = start + limit < len(items)
    return Page(chunk, key(chunk[-1]) if more and chunk else None)


def sort_views(
    views: list[dict[str, Any]], sort: tuple[tuple[str, str], ...]
) -> list[dict[str, Any]]:
    """Stable multi-key sort of API views, id last as a tie-break; None sorts first ascending,
    as SQL NULLs do. `sort` holds (key, "asc" | "desc") pairs, most significant first."""
    out = list(views)
    keys = [*sort]
    if not any(k == "id" for k, _ in keys):
        keys.append(("id", keys[-1][1] if keys else "desc"))
    for key, direction in reversed(keys):
        out.sort(key=_sort_value(key), reverse=direction == "desc")
    return out


def _sort_value(key: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    def value(view: dict[str, Any]) -> tuple[bool, Any]:
        item = view.get(key)
        return (item is not None, item if item is not None else 0)

    return value
