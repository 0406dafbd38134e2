"""S3's conditional and ranged reads, as pure functions: no server, no database.

Preconditions follow RFC 7232 as S3 applies them: If-Match decides instead of
If-Unmodified-Since, If-None-Match instead of If-Modified-Since, and a failed
412 check wins over a 304. Ranges that are not one byte range are ignored (the
whole object is sent); ranges past the end are refused with 416.
"""

from __future__ import annotations

import datetime as dt

import pytest

from souverain.objectstore.api.conditions import (
    check_conditions,
    check_copy_conditions,
    copy_source_range,
    etag_matches,
    parse_http_date,
    parse_range,
    part_range,
)
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import ObjectInfo

ETAG = "0cc175b9c0f1b6a831c399e269772661"
MODIFIED = dt.datetime(2026, 3, 1, 12, 0, 0, 500_000)  # stored with sub-second precision
BEFORE = "Sun, 01 Mar 2026 11:59:59 GMT"
AT = "Sun, 01 Mar 2026 12:00:00 GMT"
AFTER = "Sun, 01 Mar 2026 12:00:01 GMT"


def version(size: int = 100, segments: list[list[object]] | None = None) -> ObjectInfo:
    return ObjectInfo(
        bucket="photos",
        key="cat.jpg",
        version_id="null",
        is_latest=True,
        is_delete_marker=False,
        size=size,
        etag=ETAG,
        segments=segments if segments is not None else [["blob", size]],
        headers={},
        user_meta={},
        checksums={},
        tags={},
        acl="private",
        owner="project",
        last_modified=MODIFIED,
    )


def outcome(conditions: dict[str, str]) -> str:
    """`200`, or the code of the S3 error the conditions raise."""
    try:
        check_conditions(conditions, version(), {"etag": f'"{ETAG}"', "x-amz-meta-a": "b"})
    except S3Error as exc:
        return exc.code
    return "200"


# ---------------------------------------------------------------------- preconditions


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({}, "200"),
        ({"if-match": f'"{ETAG}"'}, "200"),
        ({"if-match": '"other"'}, "PreconditionFailed"),
        ({"if-match": "*"}, "200"),
        ({"if-match": f'"other", W/"{ETAG}"'}, "200"),
        ({"if-none-match": f'"{ETAG}"'}, "NotModified"),
        ({"if-none-match": "*"}, "NotModified"),
        ({"if-none-match": '"other"'}, "200"),
        ({"if-unmodified-since": AFTER}, "200"),
        ({"if-unmodified-since": AT}, "200"),
        ({"if-unmodified-since": BEFORE}, "PreconditionFailed"),
        ({"if-modified-since": BEFORE}, "200"),
        ({"if-modified-since": AT}, "NotModified"),
        ({"if-modified-since": AFTER}, "NotModified"),
    ],
)
def test_each_precondition_alone(conditions: dict[str, str], expected: str) -> None:
    assert outcome(conditions) == expected


def test_if_match_that_holds_overrides_a_failing_if_unmodified_since() -> None:
    assert outcome({"if-match": f'"{ETAG}"', "if-unmodified-since": BEFORE}) == "200"


def test_if_none_match_that_holds_overrides_a_failing_if_modified_since() -> None:
    assert outcome({"if-none-match": '"other"', "if-modified-since": AFTER}) == "200"


def test_a_failed_412_check_wins_over_a_304() -> None:
    assert outcome({"if-match": '"other"', "if-none-match": f'"{ETAG}"'}) == "PreconditionFailed"
    assert outcome({"if-unmodified-since": BEFORE, "if-modified-since": AFTER}) == (
        "PreconditionFailed"
    )


def test_if_match_holding_still_lets_if_none_match_answer_304() -> None:
    assert outcome({"if-match": f'"{ETAG}"', "if-none-match": f'"{ETAG}"'}) == "NotModified"


@pytest.mark.parametrize("garbage", ["yesterday", "", "Sun, 99 Foo 2026 99:99:99 GMT", "0" * 200])
def test_unparseable_dates_are_ignored(garbage: str) -> None:
    assert outcome({"if-modified-since": garbage}) == "200"
    assert outcome({"if-unmodified-since": garbage}) == "200"


def test_dates_without_a_zone_are_utc() -> None:
    assert parse_http_date("Sun, 01 Mar 2026 12:00:00") == dt.datetime(2026, 3, 1, 12, 0, 0)
    assert parse_http_date("Sun, 01 Mar 2026 13:00:00 +0100") == dt.datetime(2026, 3, 1, 12)


def test_not_modified_carries_only_the_validators() -> None:
    with pytest.raises(S3Error) as caught:
        check_conditions({"if-none-match": "*"}, version(), {"etag": "e", "x-amz-meta-a": "b"})
    assert caught.value.status == 304
    assert caught.value.headers == {"etag": "e"}


def test_precondition_failed_names_the_object() -> None:
    with pytest.raises(S3Error) as caught:
        check_conditions({"if-match": '"x"'}, version(), {})
    assert (caught.value.status, caught.value.resource) == (412, "/photos/cat.jpg")


def test_etag_lists_weak_tags_and_the_wildcard_match() -> None:
    assert etag_matches(f' W/"{ETAG}" ', ETAG)
    assert etag_matches('"a", "b",*', ETAG)
    assert not etag_matches(f'"{ETAG[:-1]}"', ETAG)


def test_a_copy_source_that_would_be_not_modified_is_a_412_for_the_copy() -> None:
    headers = {"x-amz-copy-source-if-none-match": f'"{ETAG}"', "if-match": '"ignored"'}
    with pytest.raises(S3Error) as caught:
        check_copy_conditions(headers, version(), "/dest/key")
    assert (caught.value.code, caught.value.resource) == ("PreconditionFailed", "/dest/key")
    check_copy_conditions({"x-amz-copy-source-if-match": ETAG}, version(), "/dest/key")


# ---------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=90-", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=50-10000", (50, 99)),
        ("bytes=99-99", (99, 99)),
        ("  bytes=1-2  ", (1, 2)),
        ("bytes=0-" + "9" * 400, (0, 99)),
        ("bytes=-" + "9" * 400, (0, 99)),
        # past int()'s 4,300-digit limit: still a range, never a 500
        ("bytes=0-" + "9" * 5000, (0, 99)),
        ("bytes=-" + "9" * 5000, (0, 99)),
    ],
)
def test_single_byte_ranges(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    "header",
    ["bytes=5-2", "bytes=0-1,3-4", "items=0-1", "bytes=-", "bytes=", "bytes=a-b", "bytes=1-2-3"],
)
def test_what_is_not_one_byte_range_sends_the_whole_object(header: str) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=-5", 0),
     ("bytes=0-0", 0), ("bytes=" + "9" * 400 + "-", 100), ("bytes=" + "9" * 5000 + "-", 100),
     ("bytes=" + "9" * 5000 + "-" + "9" * 5000, 100)],
)  # fmt: skip
def test_unsatisfiable_ranges_are_416_with_the_size(header: str, size: int) -> None:
    with pytest.raises(S3Error) as caught:
        parse_range(header, size)
    assert caught.value.status == 416
    assert caught.value.headers == {"content-range": f"bytes */{size}"}


def test_part_numbers_address_the_segments_of_a_multipart_object() -> None:
    obj = version(30, [["a", 10], ["b", 15], ["c", 5]])
    assert [part_range(obj, n) for n in ("1", "2", "3")] == [(0, 9), (10, 24), (25, 29)]
    assert part_range(version(7), "1") == (0, 6)


@pytest.mark.parametrize("raw", ["0", "4", "-1", "one", "", "1" * 50])
def test_part_numbers_outside_the_object_are_416(raw: str) -> None:
    obj = version(30, [["a", 10], ["b", 15], ["c", 5]])
    with pytest.raises(S3Error) as caught:
        part_range(obj, raw)
    assert (caught.value.code, caught.value.status) == ("InvalidPartNumber", 416)
    assert caught.value.headers == {"content-range": "bytes */30"}


def test_copy_source_range_is_one_closed_range_inside_the_source() -> None:
    assert copy_source_range(" bytes=0-9 ", 10) == (0, 9)
    assert copy_source_range("bytes=4-4", 10) == (4, 4)


@pytest.mark.parametrize(
    "value",
    ["bytes=0-10", "bytes=5-4", "bytes=0-", "bytes=-5", "bytes=0-1,2-3", "0-1",
     "bytes=0-" + "9" * 5000, "bytes=" + "9" * 5000 + "-" + "9" * 5001],
)  # fmt: skip
def test_other_copy_source_ranges_are_invalid(value: str) -> None:
    with pytest.raises(S3Error) as caught:
        copy_source_range(value, 10)
    assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)
