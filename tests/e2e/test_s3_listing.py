"""boto3 listings against the real S3 port: every key once, in order, however it is paged.

Each listing is compared with the answer computed here from the keys the test wrote.
"""

from __future__ import annotations

import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import Cloud, Tenant
from tests.e2e.s3_support import new_bucket, s3_error

pytestmark = pytest.mark.e2e

# 250 keys: top-level files, directories, nested directories, and names that sort
# around the delimiter ('dir-a' < 'dir-a.txt' < 'dir-a/' in byte order).
KEYS = sorted(
    [f"file-{i:03d}" for i in range(40)]
    + [f"dir-a/x-{i:03d}" for i in range(60)]
    + [f"dir-a/sub/y-{i:03d}" for i in range(30)]
    + [f"dir-a/sub/deeper/z-{i:03d}" for i in range(10)]
    + [f"dir-b/w-{i:03d}" for i in range(60)]
    + [f"dir-c/deep/er/v-{i:03d}" for i in range(47)]
    + ["dir-a", "dir-a.txt", "dir-b/"]
)
ODD_KEYS = sorted(
    [
        "odd/with space",
        "odd/plus+sign",
        "odd/percent%20literal",
        "odd/ünïcødé/ключ",
        "odd/emoji-🚀",
        "odd/question?mark&amp=1",
        "odd/tilde~and*star",
        "odd/quote\"and'apostrophe",
        "odd/less<greater>",
        "odd/tab\there",
    ]
)


@pytest.fixture(scope="module")
def owner(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3listing")


@pytest.fixture(scope="module")
def s3(cloud: Cloud, owner: Tenant) -> Any:
    return cloud.s3(owner)


def fill(s3: Any, bucket: str, keys: list[str]) -> None:
    def one(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, keys))


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    name = new_bucket(s3, "listing")
    fill(s3, name, KEYS)
    return name


@pytest.fixture(scope="module")
def odd_bucket(s3: Any) -> str:
    name = new_bucket(s3, "odd-names")
    fill(s3, name, ODD_KEYS)
    return name


def expected(keys: list[str], prefix: str = "", delimiter: str = "") -> tuple[list[str], list[str]]:
    """(keys, common prefixes) S3 lists for `prefix` rolled up at `delimiter`."""
    found: list[str] = []
    prefixes: list[str] = []
    for key in sorted(keys):
        if not key.startswith(prefix):
            continue
        at = key.find(delimiter, len(prefix)) if delimiter else -1
        if at < 0:
            found.append(key)
        elif key[: at + len(delimiter)] not in prefixes:
            prefixes.append(key[: at + len(delimiter)])
    return found, prefixes


def entries(page: dict[str, Any]) -> tuple[list[str], list[str]]:
    return (
        [o["Key"] for o in page.get("Contents", [])],
        [p["Prefix"] for p in page.get("CommonPrefixes", [])],
    )


# ---------------------------------------------------------------------- whole bucket


def test_v2_lists_every_key_in_order_in_one_page(s3: Any, bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=bucket)

    assert [o["Key"] for o in page["Contents"]] == KEYS
    assert page["KeyCount"] == len(KEYS)
    assert page["IsTruncated"] is False
    assert all(o["Size"] == len(o["Key"].encode()) for o in page["Contents"])
    assert all(o["StorageClass"] == "STANDARD" for o in page["Contents"])


def test_v1_lists_every_key_in_order_in_one_page(s3: Any, bucket: str) -> None:
    page = s3.list_objects(Bucket=bucket)

    assert [o["Key"] for o in page["Contents"]] == KEYS
    assert page["IsTruncated"] is False


@pytest.mark.parametrize(
    ("prefix", "page_size"),
    [("dir-a/sub/", 1), ("", 7), ("", 37), ("", 249), ("", 250), ("", 1000)],
)
def test_v2_paginator_returns_every_key_once_in_order(
    s3: Any, bucket: str, prefix: str, page_size: int
) -> None:
    wanted, _ = expected(KEYS, prefix)

    pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
        )
    )

    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == wanted
    assert len(pages) == -(-len(wanted) // page_size)
    assert all(p["KeyCount"] <= page_size for p in pages)


def test_v2_continuation_tokens_page_to_completion_by_hand(s3: Any, bucket: str) -> None:
    listed: list[str] = []
    params: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 50}
    pages = 0
    while True:
        page = s3.list_objects_v2(**params)
        pages += 1
        listed += [o["Key"] for o in page["Contents"]]
        assert page["MaxKeys"] == 50
        if not page["IsTruncated"]:
            assert "NextContinuationToken" not in page
            break
        assert len(page["Contents"]) == 50
        params["ContinuationToken"] = page["NextContinuationToken"]
        assert pages < 10

    assert listed == KEYS
    assert pages == 5


def test_v1_markers_page_to_completion(s3: Any, bucket: str) -> None:
    listed = [
        o["Key"]
        for page in s3.get_paginator("list_objects").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 33}
        )
        for o in page.get("Contents", [])
    ]
    assert listed == KEYS

    # By hand, as old clients do: without a delimiter the next marker is the last key.
    by_hand: list[str] = []
    marker = ""
    while True:
        page = s3.list_objects(Bucket=bucket, Marker=marker, MaxKeys=60)
        assert page["Marker"] == marker
        keys = [o["Key"] for o in page["Contents"]]
        by_hand += keys
        if not page["IsTruncated"]:
            break
        marker = keys[-1]
    assert by_hand == KEYS


def test_start_after_and_marker_skip_up_to_a_key(s3: Any, bucket: str) -> None:
    after = "dir-b/w-029"
    rest = [k for k in KEYS if k > after]

    assert [
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, StartAfter=after)["Contents"]
    ] == rest
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket, Marker=after)["Contents"]] == rest
    # Need not be a key that exists.
    assert [
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, StartAfter="dir-b/w-0295")["Contents"]
    ] == [k for k in KEYS if k > "dir-b/w-0295"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, StartAfter="zzz")


def test_max_keys_zero_lists_nothing(s3: Any, bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)

    assert "Contents" not in page
    assert page["KeyCount"] == 0


# ---------------------------------------------------------------------- prefix and delimiter


@pytest.mark.parametrize(
    ("prefix", "delimiter"),
    [
        ("", "/"),
        ("dir-a/", "/"),
        ("dir-a/sub/", "/"),
        ("dir-a", "/"),
        ("dir-c/", "/"),
        ("dir-b/", "/"),
        ("file-01", ""),
        ("", "-"),
        ("dir-a/", "sub"),
        ("nothing/", "/"),
    ],
)
def test_prefix_and_delimiter_roll_up_common_prefixes(
    s3: Any, bucket: str, prefix: str, delimiter: str
) -> None:
    wanted_keys, wanted_prefixes = expected(KEYS, prefix, delimiter)

    v2 = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter=delimiter)
    v1 = s3.list_objects(Bucket=bucket, Prefix=prefix, Delimiter=delimiter)

    for page in (v1, v2):
        assert entries(page) == (wanted_keys, wanted_prefixes)
        assert page["Prefix"] == prefix
        assert page.get("Delimiter", "") == delimiter
    assert v2["KeyCount"] == len(wanted_keys) + len(wanted_prefixes)


def test_top_level_listing_shows_directories_once(s3: Any, bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/")

    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["dir-a/", "dir-b/", "dir-c/"]
    assert [o["Key"] for o in page["Contents"]] == ["dir-a", "dir-a.txt"] + [
        f"file-{i:03d}" for i in range(40)
    ]


@pytest.mark.parametrize("page_size", [1, 2, 5, 11])
@pytest.mark.parametrize("prefix", ["", "dir-a/"])
def test_paging_with_a_delimiter_counts_prefixes_and_keys_together(
    s3: Any, bucket: str, page_size: int, prefix: str
) -> None:
    wanted_keys, wanted_prefixes = expected(KEYS, prefix, "/")

    v2_pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/", PaginationConfig={"PageSize": page_size}
        )
    )
    v1_pages = list(
        s3.get_paginator("list_objects").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/", PaginationConfig={"PageSize": page_size}
        )
    )

    for pages in (v1_pages, v2_pages):
        keys = [k for p in pages for k in entries(p)[0]]
        prefixes = [c for p in pages for c in entries(p)[1]]
        assert keys == wanted_keys
        assert prefixes == wanted_prefixes
        assert all(len(entries(p)[0]) + len(entries(p)[1]) <= page_size for p in pages)
        assert all(p["IsTruncated"] for p in pages[:-1])
    assert all("NextMarker" in p for p in v1_pages[:-1])


# ---------------------------------------------------------------------- names and owners


def test_boto3_round_trips_keys_with_spaces_unicode_plus_and_percent(
    s3: Any, odd_bucket: str
) -> None:
    # boto3 asks for EncodingType=url itself and decodes the answer.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=odd_bucket)["Contents"]] == ODD_KEYS
    assert [o["Key"] for o in s3.list_objects(Bucket=odd_bucket)["Contents"]] == ODD_KEYS
    for key in ODD_KEYS:
        assert s3.get_object(Bucket=odd_bucket, Key=key)["Body"].read() == key.encode()


@pytest.mark.parametrize("delimiter", ["", "/"])
def test_paging_through_odd_names_round_trips_every_marker(
    s3: Any, odd_bucket: str, delimiter: str
) -> None:
    wanted_keys, wanted_prefixes = expected(ODD_KEYS, "odd/", delimiter)
    one_at_a_time = {"PageSize": 1}

    for operation in ("list_objects", "list_objects_v2"):
        pages = list(
            s3.get_paginator(operation).paginate(
                Bucket=odd_bucket,
                Prefix="odd/",
                Delimiter=delimiter,
                PaginationConfig=one_at_a_time,
            )
        )
        assert [k for p in pages for k in entries(p)[0]] == wanted_keys, operation
        assert [c for p in pages for c in entries(p)[1]] == wanted_prefixes, operation

    versions = list(
        s3.get_paginator("list_object_versions").paginate(
            Bucket=odd_bucket, Prefix="odd/", Delimiter=delimiter, PaginationConfig=one_at_a_time
        )
    )
    assert [v["Key"] for p in versions for v in p.get("Versions", [])] == wanted_keys
    assert [c["Prefix"] for p in versions for c in p.get("CommonPrefixes", [])] == wanted_prefixes


def test_url_encoding_type_encodes_every_name_in_the_answer(s3: Any, odd_bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=odd_bucket, Prefix="odd/", Delimiter="/", EncodingType="url")

    listed = [o["Key"] for o in page["Contents"]]
    assert page["EncodingType"] == "url"
    assert [urllib.parse.unquote_plus(k) for k in listed] == [
        k for k in ODD_KEYS if "/" not in k[len("odd/") :]
    ]
    for encoded in listed:
        assert encoded.isascii()
        assert not set(encoded) & set(" +<>\"'\t?&")
    assert [urllib.parse.unquote_plus(p["Prefix"]) for p in page["CommonPrefixes"]] == [
        "odd/ünïcødé/"
    ]


def test_url_encoding_type_is_the_only_one(s3: Any, odd_bucket: str) -> None:
    assert s3_error(s3.list_objects_v2, Bucket=odd_bucket, EncodingType="base64") == (
        "InvalidArgument",
        400,
    )


def test_v2_shows_owners_only_when_asked(s3: Any, bucket: str, owner: Tenant) -> None:
    plain = s3.list_objects_v2(Bucket=bucket, MaxKeys=3)
    owned = s3.list_objects_v2(Bucket=bucket, MaxKeys=3, FetchOwner=True)
    v1 = s3.list_objects(Bucket=bucket, MaxKeys=3)

    assert all("Owner" not in o for o in plain["Contents"])
    assert all(o["Owner"]["ID"] == owner.project_id for o in owned["Contents"])
    assert all(o["Owner"]["ID"] == owner.project_id for o in v1["Contents"])


def test_listing_etags_and_sizes_match_the_objects(s3: Any, bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=bucket, Prefix="dir-b/", MaxKeys=5)

    for listed in page["Contents"]:
        head = s3.head_object(Bucket=bucket, Key=listed["Key"])
        assert listed["ETag"] == head["ETag"]
        assert listed["Size"] == head["ContentLength"]
        assert abs(listed["LastModified"] - head["LastModified"]).total_seconds() < 1


def test_bad_continuation_token_is_invalid_argument(s3: Any, bucket: str) -> None:
    assert s3_error(s3.list_objects_v2, Bucket=bucket, ContinuationToken="%%% not a token %%%") == (
        "InvalidArgument",
        400,
    )
