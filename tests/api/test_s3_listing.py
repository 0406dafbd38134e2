"""Listing rules of the object store against a model: prefix, delimiter, paging, versions.

Runs the real service on a real SQLite file (no HTTP): the paging and roll-up
logic is where subtle bugs hide, so hypothesis drives it with many key sets.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from souverain import server
from souverain.objectstore import listings as service_module
from souverain.objectstore.policy import Principal
from souverain.objectstore.service import BucketInfo, NewObject, ObjectStoreService

from .conftest import running_platform
from .support import SteppingClock

OWNER = Principal("user-1", "project-1", frozenset({"member", "reader"}))


@pytest.fixture(scope="module")
def platform(database_backend: str) -> Iterator[server.Platform]:
    with running_platform(SteppingClock()) as built:
        yield built


def fresh_bucket(service: ObjectStoreService, keys: list[str]) -> BucketInfo:
    name = f"b{len(service.list_buckets(OWNER))}-list"
    bucket = service.create_bucket(OWNER, name, None)
    for key in keys:
        service.put_object(OWNER, bucket, key, NewObject(0, "d41d8cd98f00b204e9800998ecf8427e", []))
    return bucket


def model(keys: list[str], prefix: str, delimiter: str) -> list[str]:
    """Every entry a complete listing returns, in order: keys and common prefixes."""
    entries: list[str] = []
    for key in sorted(set(keys), key=lambda k: k.encode()):
        if not key.startswith(prefix):
            continue
        at = key.find(delimiter, len(prefix)) if delimiter else -1
        entry = key[: at + len(delimiter)] if at >= 0 else key
        if not entries or entries[-1] != entry:
            entries.append(entry)
    return entries


def page_through(
    service: ObjectStoreService, bucket: BucketInfo, prefix: str, delimiter: str, page: int
) -> list[str]:
    seen: list[str] = []
    after = ""
    for _ in range(1000):
        listing = service.list_objects(bucket, prefix, delimiter, after, page)
        entries = sorted(
            [o.key for o in listing.objects] + listing.prefixes, key=lambda k: k.encode()
        )
        assert len(entries) <= page
        seen += entries
        if not listing.truncated:
            return seen
        after = listing.next_marker
    raise AssertionError("listing never ended")


KEY_ALPHABET = st.sampled_from(["a", "b", "/", "-", "é", "z", "~", " "])
KEYS = st.lists(st.text(KEY_ALPHABET, min_size=1, max_size=6), min_size=0, max_size=40)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=KEYS,
    prefix=st.sampled_from(["", "a", "a/", "b/é", "z"]),
    delimiter=st.sampled_from(["", "/", "-", "é"]),
    page=st.integers(min_value=1, max_value=7),
)
def test_paged_listing_equals_the_model(
    platform: server.Platform, keys: list[str], prefix: str, delimiter: str, page: int
) -> None:
    service = platform.objectstore
    bucket = fresh_bucket(service, keys)
    assert page_through(service, bucket, prefix, delimiter, page) == model(keys, prefix, delimiter)


def test_listing_order_is_utf8_byte_order(platform: server.Platform) -> None:
    keys = ["Z", "a", "é", "\U0001f600", "~", "ÿ"]
    bucket = fresh_bucket(platform.objectstore, keys)
    listing = platform.objectstore.list_objects(bucket, "", "", "", 1000)
    assert [o.key for o in listing.objects] == sorted(keys, key=lambda k: k.encode())


def test_deleted_keys_vanish_from_listings_but_versions_remain(platform: server.Platform) -> None:
    service = platform.objectstore
    bucket = fresh_bucket(service, [])
    service.set_versioning(bucket, "Enabled")
    bucket = service.bucket(bucket.name)
    empty = NewObject(0, "d41d8cd98f00b204e9800998ecf8427e", [])
    first = service.put_object(OWNER, bucket, "k", empty)
    second = service.put_object(OWNER, bucket, "k", empty)
    marker = service.delete_object(OWNER, bucket, "k")
    assert marker.delete_marker
    assert service.list_objects(bucket, "", "", "", 10).objects == []
    versions = service.list_versions(bucket, "", "", "", "", 10).objects
    assert [(v.version_id, v.is_latest, v.is_delete_marker) for v in versions] == [
        (marker.version_id, True, True),
        (second.version_id, False, False),
        (first.version_id, False, False),
    ]
    service.delete_object(OWNER, bucket, "k", marker.version_id)  # removing the marker restores
    assert service.head_object(bucket, "k").version_id == second.version_id


def test_versions_page_through_with_key_and_version_markers(platform: server.Platform) -> None:
    service = platform.objectstore
    bucket = fresh_bucket(service, [])
    service.set_versioning(bucket, "Enabled")
    bucket = service.bucket(bucket.name)
    empty = NewObject(0, "d41d8cd98f00b204e9800998ecf8427e", [])
    made = [
        (key, service.put_object(OWNER, bucket, key, empty).version_id)
        for key in ("a", "b", "a", "c", "b", "a")
    ]
    expected = sorted(made, key=lambda kv: (kv[0], -made.index(kv)))
    seen: list[tuple[str, str]] = []
    key_marker = version_marker = ""
    while True:
        listing = service.list_versions(bucket, "", "", key_marker, version_marker, 2)
        seen += [(o.key, o.version_id) for o in listing.objects]
        if not listing.truncated:
            break
        key_marker, version_marker = listing.next_marker, listing.next_version_marker
    assert seen == expected


def versions_model(
    written: list[tuple[str, str]], prefix: str, delimiter: str
) -> list[tuple[str, str]]:
    """Every entry a complete version listing returns: (key, version) newest first per key,
    and (common prefix, "") once per roll-up."""
    entries: list[tuple[str, str]] = []
    order = sorted(range(len(written)), key=lambda i: (written[i][0].encode(), -i))
    for i in order:
        key, version = written[i]
        if not key.startswith(prefix):
            continue
        at = key.find(delimiter, len(prefix)) if delimiter else -1
        entry = (key[: at + len(delimiter)], "") if at >= 0 else (key, version)
        if not entries or entries[-1] != entry:
            entries.append(entry)
    return entries


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.lists(st.text(KEY_ALPHABET, min_size=1, max_size=4), min_size=0, max_size=30),
    prefix=st.sampled_from(["", "a", "a/"]),
    delimiter=st.sampled_from(["", "/", "-"]),
    page=st.integers(min_value=1, max_value=5),
    batch=st.integers(min_value=1, max_value=4),
)
def test_paged_version_listing_equals_the_model_across_query_batches(
    platform: server.Platform,
    keys: list[str],
    prefix: str,
    delimiter: str,
    page: int,
    batch: int,
) -> None:
    """Versions are read in keyset batches (never OFFSET): a batch boundary anywhere, within
    one key's versions or a roll-up, loses or repeats nothing."""
    service = platform.objectstore
    bucket = fresh_bucket(service, [])
    service.set_versioning(bucket, "Enabled")
    bucket = service.bucket(bucket.name)
    empty = NewObject(0, "d41d8cd98f00b204e9800998ecf8427e", [])
    written = [(k, service.put_object(OWNER, bucket, k, empty).version_id) for k in keys]
    seen: list[tuple[str, str]] = []
    key_marker = version_marker = ""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_module, "LIST_BATCH", batch)
        for _ in range(1000):
            listing = service.list_versions(
                bucket, prefix, delimiter, key_marker, version_marker, page
            )
            entries = [(o.key, o.version_id) for o in listing.objects]
            entries += [(p, "") for p in listing.prefixes]
            assert len(entries) <= page
            seen += sorted(entries, key=lambda e: e[0].encode())  # stable: newest first kept
            if not listing.truncated:
                break
            key_marker, version_marker = listing.next_marker, listing.next_version_marker
    assert seen == versions_model(written, prefix, delimiter)
