"""The boto3 and Swift end-to-end tests that matter most, run again with object bytes in
RADOS (`rados_cloud`: the shared Ceph cluster, every object through RADOS, 64 KiB stripes).

The tests are the existing ones, imported: a module's fixtures resolve here, so `cloud`
below makes them run against the RADOS cloud. The file runs keep their own modules."""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import Any

import pytest

from tests.ceph import shared_cluster
from tests.e2e import test_s3_objects as objects
from tests.e2e import test_s3_versioning as versioning
from tests.e2e import test_swift_clients as swift
from tests.e2e.conftest import RADOS_STRIPE_BYTES, Cloud, unique

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cloud(rados_cloud: Cloud) -> Cloud:
    return rados_cloud


owner, s3, bucket, ranged = objects.owner, objects.s3, objects.bucket, objects.ranged
versioned, tenant = versioning.versioned, swift.tenant

test_object_round_trips_with_md5_etag = objects.test_object_round_trips_with_md5_etag
test_empty_object_has_the_md5_of_nothing = objects.test_empty_object_has_the_md5_of_nothing
test_put_replaces_the_object_and_delete_removes_it = (
    objects.test_put_replaces_the_object_and_delete_removes_it
)
test_content_md5_that_does_not_match_stores_nothing = (
    objects.test_content_md5_that_does_not_match_stores_nothing
)
test_managed_upload_from_a_pipe_stores_every_byte = (
    objects.test_managed_upload_from_a_pipe_stores_every_byte
)
test_quiet_batch_delete_answers_nothing_and_deletes_everything = (
    objects.test_quiet_batch_delete_answers_nothing_and_deletes_everything
)
test_copy_within_a_bucket_keeps_bytes_etag_and_metadata = (
    objects.test_copy_within_a_bucket_keeps_bytes_etag_and_metadata
)
test_range_get_returns_partial_content = objects.test_range_get_returns_partial_content
test_conditional_get_answers_304_and_412_as_s3_does = (
    objects.test_conditional_get_answers_304_and_412_as_s3_does
)
test_each_put_makes_a_version_readable_by_id = (
    versioning.test_each_put_makes_a_version_readable_by_id
)
test_delete_leaves_a_marker_and_deleting_the_marker_restores = (
    versioning.test_delete_leaves_a_marker_and_deleting_the_marker_restores
)
test_boto3_and_openstacksdk_read_each_others_objects = (
    swift.test_boto3_and_openstacksdk_read_each_others_objects
)


def stripes_in_pool(cloud: Cloud) -> set[str]:
    cluster = shared_cluster()
    pool = cloud.server.env["SOUVERAIN_OBJECTSTORE__RADOS_POOL"]
    listed = subprocess.run(
        ["rados", "-p", pool, "ls"], env=cluster.env(), capture_output=True, text=True, check=True
    )
    return set(listed.stdout.split())


def test_a_large_object_is_many_stripes_read_by_range_and_removed_whole(
    cloud: Cloud, s3: Any, bucket: str
) -> None:
    data = os.urandom(40 * RADOS_STRIPE_BYTES + 12345)  # 41 RADOS objects
    key = unique("large")
    before = stripes_in_pool(cloud)
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    added = stripes_in_pool(cloud) - before
    assert len(added) == 41
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    start, end = 3 * RADOS_STRIPE_BYTES - 10, 7 * RADOS_STRIPE_BYTES + 10
    part = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"].read()
    assert part == data[start : end + 1]
    s3.delete_object(Bucket=bucket, Key=key)
    assert not added & stripes_in_pool(cloud)
