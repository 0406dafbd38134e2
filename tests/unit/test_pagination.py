"""The one pagination helper: `limit` and `marker`, as OpenStack clients page through lists."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from souverain.common.errors import BadRequest
from souverain.common.pagination import paginate
from souverain.openstack.query import MAX_LIMIT, parse_limit

ITEMS = [f"id-{n:02d}" for n in range(10)]


def same(item: str) -> str:
    return item


@pytest.mark.parametrize(
    ("raw", "default", "expected"),
    [
        (None, None, None),
        ("", None, None),
        (None, 20, 20),
        ("", 20, 20),
        ("1", None, 1),
        ("25", 5, 25),
        (str(MAX_LIMIT), None, MAX_LIMIT),
        (str(MAX_LIMIT + 1), None, MAX_LIMIT),
        ("99999999999999999999", None, MAX_LIMIT),
    ],
)
def test_parse_limit(raw: str | None, default: int | None, expected: int | None) -> None:
    assert parse_limit(raw, default) == expected


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1.5", "1e3", " ", "0x10"])
def test_parse_limit_refuses_what_is_not_a_positive_integer(raw: str) -> None:
    with pytest.raises(BadRequest, match="limit"):
        parse_limit(raw)


def test_no_limit_returns_everything_after_the_marker() -> None:
    assert paginate(ITEMS, same, None, None).items == ITEMS
    assert paginate(ITEMS, same, None, None).next_marker is None
    page = paginate(ITEMS, same, None, "id-06")
    assert page.items == ITEMS[7:] and page.next_marker is None


def test_first_page_names_its_last_item_as_the_next_marker() -> None:
    page = paginate(ITEMS, same, 3, None)
    assert page.items == ["id-00", "id-01", "id-02"]
    assert page.next_marker == "id-02"


def test_marker_starts_after_the_named_item() -> None:
    page = paginate(ITEMS, same, 3, "id-02")
    assert page.items == ["id-03", "id-04", "id-05"]
    assert page.next_marker == "id-05"


def test_last_full_page_has_no_next_marker() -> None:
    page = paginate(ITEMS, same, 5, "id-04")
    assert page.items == ITEMS[5:]
    assert page.next_marker is None


def test_marker_on_the_last_item_gives_an_empty_page() -> None:
    page = paginate(ITEMS, same, 3, "id-09")
    assert page.items == [] and page.next_marker is None


def test_unknown_marker_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="marker"):
        paginate(ITEMS, same, 3, "id-99")


def test_empty_list() -> None:
    page = paginate(list[str](), same, 3, None)
    assert page.items == [] and page.next_marker is None


def test_key_function_picks_the_marker_field() -> None:
    rows = [{"id": f"r{n}", "name": "same"} for n in range(4)]
    page = paginate(rows, lambda r: r["id"], 2, "r0")
    assert [r["id"] for r in page.items] == ["r1", "r2"]
    assert page.next_marker == "r2"


@given(
    count=st.integers(min_value=0, max_value=40),
    limit=st.integers(min_value=1, max_value=45),
)
def test_walking_the_pages_yields_every_item_once_in_order(count: int, limit: int) -> None:
    items = [f"item-{n}" for n in range(count)]
    seen: list[str] = []
    marker: str | None = None
    for _ in range(count + 2):
        page = paginate(items, same, limit, marker)
        assert len(page.items) <= limit
        seen.extend(page.items)
        if page.next_marker is None:
            break
        assert page.next_marker == page.items[-1]
        marker = page.next_marker
    assert seen == items
