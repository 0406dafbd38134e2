"""boto3 against the real S3 port: versioned buckets keep every version and delete markers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import Cloud, Tenant, unique
from tests.e2e.s3_support import new_bucket, s3_error

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def s3(cloud: Cloud) -> Any:
    owner: Tenant = cloud.make_tenant("s3versions")
    return cloud.s3(owner)


@pytest.fixture(scope="module")
def versioned(s3: Any) -> str:
    name = new_bucket(s3, "versioned")
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def versions_of(s3: Any, bucket: str, key: str) -> set[tuple[str, str, bool]]:
    """(kind, version id, is latest) of every version and delete marker the key has."""
    page = s3.list_object_versions(Bucket=bucket, Prefix=key)
    versions = {("version", v["VersionId"], v["IsLatest"]) for v in page.get("Versions", [])}
    markers = {("marker", m["VersionId"], m["IsLatest"]) for m in page.get("DeleteMarkers", [])}
    return versions | markers


def body(s3: Any, bucket: str, key: str, **params: Any) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=key, **params)["Body"].read()
    return data


def test_each_put_makes_a_version_readable_by_id(s3: Any, versioned: str) -> None:
    key = unique("doc")

    first = s3.put_object(Bucket=versioned, Key=key, Body=b"one")["VersionId"]
    second = s3.put_object(Bucket=versioned, Key=key, Body=b"two")["VersionId"]

    assert first != second
    assert "null" not in (first, second)
    assert body(s3, versioned, key) == b"two"
    assert body(s3, versioned, key, VersionId=first) == b"one"
    assert body(s3, versioned, key, VersionId=second) == b"two"
    assert s3.head_object(Bucket=versioned, Key=key, VersionId=first)["ContentLength"] == 3
    assert s3.get_object(Bucket=versioned, Key=key)["VersionId"] == second

    page = s3.list_object_versions(Bucket=versioned, Prefix=key)
    assert [(v["VersionId"], v["IsLatest"]) for v in page["Versions"]] == [
        (second, True),
        (first, False),
    ]
    assert "DeleteMarkers" not in page
    # The plain listing shows the key once.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=versioned, Prefix=key)["Contents"]] == [key]


def test_delete_leaves_a_marker_and_deleting_the_marker_restores(s3: Any, versioned: str) -> None:
    key = unique("restorable")
    kept = s3.put_object(Bucket=versioned, Key=key, Body=b"precious")["VersionId"]

    deleted = s3.delete_object(Bucket=versioned, Key=key)

    marker = deleted["VersionId"]
    assert deleted["DeleteMarker"] is True
    assert s3_error(s3.get_object, Bucket=versioned, Key=key) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as hidden:
        s3.head_object(Bucket=versioned, Key=key)
    headers = hidden.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert hidden.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == marker
    assert "Contents" not in s3.list_objects_v2(Bucket=versioned, Prefix=key)
    assert body(s3, versioned, key, VersionId=kept) == b"precious"
    page = s3.list_object_versions(Bucket=versioned, Prefix=key)
    assert [(m["VersionId"], m["IsLatest"]) for m in page["DeleteMarkers"]] == [(marker, True)]
    assert [(v["VersionId"], v["IsLatest"]) for v in page["Versions"]] == [(kept, False)]
    # A delete marker has no body: asking for it by id is not allowed.
    assert s3_error(s3.head_object, Bucket=versioned, Key=key, VersionId=marker) == ("405", 405)

    removed = s3.delete_object(Bucket=versioned, Key=key, VersionId=marker)

    assert removed["VersionId"] == marker
    assert removed["DeleteMarker"] is True
    assert body(s3, versioned, key) == b"precious"
    assert versions_of(s3, versioned, key) == {("version", kept, True)}


def test_deleting_the_latest_version_makes_the_previous_one_current(
    s3: Any, versioned: str
) -> None:
    key = unique("rollback")
    first = s3.put_object(Bucket=versioned, Key=key, Body=b"v1")["VersionId"]
    second = s3.put_object(Bucket=versioned, Key=key, Body=b"v2")["VersionId"]

    answer = s3.delete_object(Bucket=versioned, Key=key, VersionId=second)

    assert answer["VersionId"] == second
    assert "DeleteMarker" not in answer
    assert body(s3, versioned, key) == b"v1"
    assert s3_error(s3.get_object, Bucket=versioned, Key=key, VersionId=second) == (
        "NoSuchVersion",
        404,
    )
    assert versions_of(s3, versioned, key) == {("version", first, True)}


def test_unknown_version_id_is_no_such_version(s3: Any, versioned: str) -> None:
    key = unique("one-version")
    s3.put_object(Bucket=versioned, Key=key, Body=b"x")

    assert s3_error(s3.get_object, Bucket=versioned, Key=key, VersionId=uuid.uuid4().hex) == (
        "NoSuchVersion",
        404,
    )


def test_batch_delete_in_a_versioned_bucket_reports_markers(s3: Any, versioned: str) -> None:
    key = unique("batch")
    first = s3.put_object(Bucket=versioned, Key=key, Body=b"a")["VersionId"]

    answer = s3.delete_objects(Bucket=versioned, Delete={"Objects": [{"Key": key}]})

    (deleted,) = answer["Deleted"]
    assert deleted["Key"] == key
    assert deleted["DeleteMarker"] is True
    marker = deleted["DeleteMarkerVersionId"]

    by_id = s3.delete_objects(
        Bucket=versioned,
        Delete={"Objects": [{"Key": key, "VersionId": first}, {"Key": key, "VersionId": marker}]},
    )
    assert sorted(d["VersionId"] for d in by_id["Deleted"]) == sorted([first, marker])
    assert versions_of(s3, versioned, key) == set()


def test_suspended_versioning_writes_the_null_version_and_keeps_older_ones(s3: Any) -> None:
    bucket = new_bucket(s3, "suspended")
    key = "report.txt"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    kept = s3.put_object(Bucket=bucket, Key=key, Body=b"versioned")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})

    first_null = s3.put_object(Bucket=bucket, Key=key, Body=b"null one")
    second_null = s3.put_object(Bucket=bucket, Key=key, Body=b"null two")

    assert first_null["VersionId"] == second_null["VersionId"] == "null"
    assert body(s3, bucket, key) == b"null two"
    assert body(s3, bucket, key, VersionId="null") == b"null two"
    assert body(s3, bucket, key, VersionId=kept) == b"versioned"
    # The null version is replaced, never kept twice.
    assert versions_of(s3, bucket, key) == {("version", "null", True), ("version", kept, False)}

    marker = s3.delete_object(Bucket=bucket, Key=key)
    assert marker["DeleteMarker"] is True
    assert marker["VersionId"] == "null"
    assert versions_of(s3, bucket, key) == {("marker", "null", True), ("version", kept, False)}


def test_unversioned_bucket_answers_no_version_ids(s3: Any) -> None:
    bucket = new_bucket(s3, "plain")

    put = s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    deleted = s3.delete_object(Bucket=bucket, Key="k")

    assert "VersionId" not in put
    assert "DeleteMarker" not in deleted
    assert "DeleteMarkers" not in s3.list_object_versions(Bucket=bucket)
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)


def test_version_listing_pages_through_every_version(s3: Any, versioned: str) -> None:
    prefix = unique("paged") + "/"
    made: list[tuple[str, str]] = []
    for name in ("a", "b", "c"):
        for round_ in range(3):
            answer = s3.put_object(Bucket=versioned, Key=prefix + name, Body=str(round_).encode())
            made.append((prefix + name, answer["VersionId"]))
    s3.delete_object(Bucket=versioned, Key=prefix + "b")
    # Keys ascending, each key's versions newest first.
    wanted = sorted(made, key=lambda kv: (kv[0], -made.index(kv)))

    pages = list(
        s3.get_paginator("list_object_versions").paginate(
            Bucket=versioned, Prefix=prefix, PaginationConfig={"PageSize": 2}
        )
    )

    versions = [(v["Key"], v["VersionId"]) for p in pages for v in p.get("Versions", [])]
    markers = [m["Key"] for p in pages for m in p.get("DeleteMarkers", [])]
    assert versions == wanted
    assert markers == [prefix + "b"]
    assert all(len(p.get("Versions", [])) + len(p.get("DeleteMarkers", [])) <= 2 for p in pages)


def test_object_written_before_versioning_is_the_null_version(s3: Any) -> None:
    bucket = new_bucket(s3, "late-versioning")
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    after = s3.put_object(Bucket=bucket, Key="k", Body=b"after")["VersionId"]

    assert body(s3, bucket, "k") == b"after"
    assert body(s3, bucket, "k", VersionId="null") == b"before"
    assert versions_of(s3, bucket, "k") == {("version", after, True), ("version", "null", False)}


def test_copy_from_an_older_version_names_the_source_version(s3: Any, versioned: str) -> None:
    key = unique("copy-source")
    old = s3.put_object(Bucket=versioned, Key=key, Body=b"old")["VersionId"]
    s3.put_object(Bucket=versioned, Key=key, Body=b"new")
    target = unique("restored")

    answer = s3.copy_object(
        Bucket=versioned,
        Key=target,
        CopySource={"Bucket": versioned, "Key": key, "VersionId": old},
    )

    assert answer["CopySourceVersionId"] == old
    assert answer["VersionId"] not in (old, "null")
    assert body(s3, versioned, target) == b"old"
    # Restoring an old version in place: copy it onto its own key.
    s3.copy_object(
        Bucket=versioned, Key=key, CopySource={"Bucket": versioned, "Key": key, "VersionId": old}
    )
    assert body(s3, versioned, key) == b"old"
    assert len(s3.list_object_versions(Bucket=versioned, Prefix=key)["Versions"]) == 3


def test_tags_set_on_an_old_version_stay_with_that_version(s3: Any, versioned: str) -> None:
    key = unique("tagged-versions")
    old = s3.put_object(Bucket=versioned, Key=key, Body=b"v1")["VersionId"]
    new = s3.put_object(Bucket=versioned, Key=key, Body=b"v2")["VersionId"]
    tagging = {"TagSet": [{"Key": "state", "Value": "archived"}]}
    reply = s3.put_object_tagging(Bucket=versioned, Key=key, VersionId=old, Tagging=tagging)
    assert reply["VersionId"] == old
    assert s3.get_object_tagging(Bucket=versioned, Key=key, VersionId=old)["TagSet"] == [
        {"Key": "state", "Value": "archived"}
    ]
    assert s3.get_object_tagging(Bucket=versioned, Key=key)["TagSet"] == []
    assert s3.get_object_tagging(Bucket=versioned, Key=key)["VersionId"] == new
    marker = s3.delete_object(Bucket=versioned, Key=key)["VersionId"]
    code = s3_error(
        s3.put_object_tagging, Bucket=versioned, Key=key, VersionId=marker, Tagging=tagging
    )
    assert code == ("MethodNotAllowed", 405)
