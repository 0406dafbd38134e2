"""The multipart end-to-end tests run again with object bytes in RADOS (`rados_cloud`):
every part is a striped blob, completion points at them, abort removes them."""

from __future__ import annotations

import pytest

from tests.e2e import test_s3_multipart as multipart
from tests.e2e.conftest import Cloud

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def small_cloud(rados_cloud: Cloud) -> Cloud:
    return rados_cloud


s3, bucket = multipart.s3, multipart.bucket

test_parts_are_joined_in_order_with_the_md5_of_md5s_etag = (
    multipart.test_parts_are_joined_in_order_with_the_md5_of_md5s_etag
)
test_get_by_part_number_returns_that_part = multipart.test_get_by_part_number_returns_that_part
test_ranges_across_part_boundaries_read_the_joined_bytes = (
    multipart.test_ranges_across_part_boundaries_read_the_joined_bytes
)
test_copy_of_a_multipart_object_is_one_part_with_a_plain_md5 = (
    multipart.test_copy_of_a_multipart_object_is_one_part_with_a_plain_md5
)
test_a_part_sent_again_replaces_the_earlier_one = (
    multipart.test_a_part_sent_again_replaces_the_earlier_one
)
test_upload_part_copy_takes_byte_ranges_of_another_object = (
    multipart.test_upload_part_copy_takes_byte_ranges_of_another_object
)
test_aborted_upload_is_gone_for_every_operation = (
    multipart.test_aborted_upload_is_gone_for_every_operation
)
