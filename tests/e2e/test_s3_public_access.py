"""Public access block and bucket policy conditions through boto3 on the real S3 port.

The public access block's four flags each hold: public ACLs refused or ignored, public
policies refused or stripped of effect for outsiders. Policy conditions test the
request: its source address, transport, time, listing prefix and canned ACL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import Cloud, Tenant, unique
from tests.e2e.s3_support import anonymous_s3, new_bucket, s3_error

pytestmark = pytest.mark.e2e

ALL_OFF = {
    "BlockPublicAcls": False,
    "IgnorePublicAcls": False,
    "BlockPublicPolicy": False,
    "RestrictPublicBuckets": False,
}


@pytest.fixture(scope="module")
def owner(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3pab")


@pytest.fixture(scope="module")
def s3(cloud: Cloud, owner: Tenant) -> Any:
    return cloud.s3(owner)


@pytest.fixture(scope="module")
def stranger(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3pab-stranger")


@pytest.fixture(scope="module")
def stranger_s3(cloud: Cloud, stranger: Tenant) -> Any:
    return cloud.s3(stranger)


@pytest.fixture(scope="module")
def anonymous(cloud: Cloud) -> Any:
    return anonymous_s3(cloud.s3_url)


def block(s3: Any, bucket: str, **flags: bool) -> None:
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={**ALL_OFF, **flags})


def set_policy(s3: Any, bucket: str, *statements: dict[str, Any]) -> None:
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    )


def public_read(bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        **extra,
    }


# ---------------------------------------------------------------------- public access block


def test_the_public_access_block_round_trips_and_is_removed(s3: Any) -> None:
    bucket = new_bucket(s3, "pab")
    assert s3_error(s3.get_public_access_block, Bucket=bucket) == (
        "NoSuchPublicAccessBlockConfiguration",
        404,
    )

    block(s3, bucket, BlockPublicAcls=True, RestrictPublicBuckets=True)

    got = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert got == {**ALL_OFF, "BlockPublicAcls": True, "RestrictPublicBuckets": True}
    s3.delete_public_access_block(Bucket=bucket)
    assert s3_error(s3.get_public_access_block, Bucket=bucket)[1] == 404


def test_block_public_acls_refuses_every_public_acl(s3: Any) -> None:
    bucket = new_bucket(s3, "pab-acls")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    block(s3, bucket, BlockPublicAcls=True)
    key = unique("public")

    assert s3_error(s3.put_object, Bucket=bucket, Key=key, Body=b"x", ACL="public-read") == (
        "AccessDenied",
        403,
    )
    assert s3_error(s3.put_bucket_acl, Bucket=bucket, ACL="public-read") == ("AccessDenied", 403)
    assert s3_error(s3.put_object_acl, Bucket=bucket, Key="k", ACL="public-read") == (
        "AccessDenied",
        403,
    )
    assert s3_error(s3.create_multipart_upload, Bucket=bucket, Key=key, ACL="public-read") == (
        "AccessDenied",
        403,
    )
    assert s3_error(s3.head_object, Bucket=bucket, Key=key)[1] == 404
    s3.put_object(Bucket=bucket, Key=key, Body=b"x", ACL="private")  # private is fine


def test_ignore_public_acls_closes_what_they_opened(s3: Any, anonymous: Any) -> None:
    bucket = new_bucket(s3, "pab-ignore")
    s3.put_object(Bucket=bucket, Key="open", Body=b"was public", ACL="public-read")
    assert anonymous.get_object(Bucket=bucket, Key="open")["Body"].read() == b"was public"

    block(s3, bucket, IgnorePublicAcls=True)

    assert s3_error(anonymous.get_object, Bucket=bucket, Key="open") == ("AccessDenied", 403)
    s3.delete_public_access_block(Bucket=bucket)
    assert anonymous.get_object(Bucket=bucket, Key="open")["Body"].read() == b"was public"


def test_block_public_policy_refuses_a_policy_open_to_everyone(s3: Any) -> None:
    bucket = new_bucket(s3, "pab-policy")
    block(s3, bucket, BlockPublicPolicy=True)

    assert s3_error(
        s3.put_bucket_policy,
        Bucket=bucket,
        Policy=json.dumps({"Statement": [public_read(bucket)]}),
    ) == ("AccessDenied", 403)
    assert s3_error(s3.get_bucket_policy, Bucket=bucket)[1] == 404
    # pinned to an address, the same statement is not public
    pinned = public_read(bucket, Condition={"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}})
    set_policy(s3, bucket, pinned)


def test_restrict_public_buckets_leaves_a_public_policy_no_effect_for_outsiders(
    s3: Any, anonymous: Any, stranger_s3: Any
) -> None:
    bucket = new_bucket(s3, "pab-restrict")
    s3.put_object(Bucket=bucket, Key="k", Body=b"shared")
    set_policy(s3, bucket, public_read(bucket))
    assert anonymous.get_object(Bucket=bucket, Key="k")["Body"].read() == b"shared"

    block(s3, bucket, RestrictPublicBuckets=True)

    assert s3_error(anonymous.get_object, Bucket=bucket, Key="k") == ("AccessDenied", 403)
    assert s3_error(stranger_s3.get_object, Bucket=bucket, Key="k") == ("AccessDenied", 403)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"shared"


def test_another_project_cannot_read_or_change_the_block(s3: Any, stranger_s3: Any) -> None:
    bucket = new_bucket(s3, "pab-private")
    block(s3, bucket, BlockPublicAcls=True)

    assert s3_error(stranger_s3.get_public_access_block, Bucket=bucket) == ("AccessDenied", 403)
    assert s3_error(stranger_s3.delete_public_access_block, Bucket=bucket) == (
        "AccessDenied",
        403,
    )
    assert s3_error(
        stranger_s3.put_public_access_block,
        Bucket=bucket,
        PublicAccessBlockConfiguration=ALL_OFF,
    ) == ("AccessDenied", 403)
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"][
        "BlockPublicAcls"
    ]


# ---------------------------------------------------------------------- policy conditions


@pytest.mark.parametrize(("network", "readable"), [("127.0.0.0/8", True), ("10.0.0.0/8", False)])
def test_source_ip_decides_who_reads(s3: Any, anonymous: Any, network: str, readable: bool) -> None:
    bucket = new_bucket(s3, "cond-ip")
    s3.put_object(Bucket=bucket, Key="k", Body=b"office only")
    set_policy(s3, bucket, public_read(bucket, Condition={"IpAddress": {"aws:SourceIp": network}}))

    if readable:
        assert anonymous.get_object(Bucket=bucket, Key="k")["Body"].read() == b"office only"
    else:
        assert s3_error(anonymous.get_object, Bucket=bucket, Key="k") == ("AccessDenied", 403)


def test_a_deny_on_insecure_transport_holds_even_for_the_owner(s3: Any) -> None:
    bucket = new_bucket(s3, "cond-tls")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    set_policy(
        s3,
        bucket,
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    )

    assert s3_error(s3.get_object, Bucket=bucket, Key="k") == ("AccessDenied", 403)
    s3.delete_bucket_policy(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_s3_prefix_limits_what_a_grantee_may_list(
    s3: Any, stranger: Tenant, stranger_s3: Any
) -> None:
    bucket = new_bucket(s3, "cond-prefix")
    s3.put_object(Bucket=bucket, Key="public/a", Body=b"x")
    s3.put_object(Bucket=bucket, Key="private/b", Body=b"x")
    set_policy(
        s3,
        bucket,
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{stranger.project_id}:root"},
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{bucket}",
            "Condition": {"StringLike": {"s3:prefix": "public/*"}},
        },
    )

    listed = stranger_s3.list_objects_v2(Bucket=bucket, Prefix="public/")
    assert [o["Key"] for o in listed["Contents"]] == ["public/a"]
    assert s3_error(stranger_s3.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)
    assert s3_error(stranger_s3.list_objects_v2, Bucket=bucket, Prefix="private/") == (
        "AccessDenied",
        403,
    )


def test_s3_x_amz_acl_and_a_time_window_gate_writes(
    s3: Any, stranger: Tenant, stranger_s3: Any
) -> None:
    bucket = new_bucket(s3, "cond-acl")
    grantee = {"AWS": f"arn:aws:iam::{stranger.project_id}:root"}
    set_policy(
        s3,
        bucket,
        {
            "Effect": "Allow",
            "Principal": grantee,
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/drop/*",
            "Condition": {
                "StringEquals": {"s3:x-amz-acl": "private"},
                "DateLessThan": {"aws:CurrentTime": "2099-01-01T00:00:00Z"},
            },
        },
        {
            "Effect": "Allow",
            "Principal": grantee,
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/later/*",
            "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2099-01-01T00:00:00Z"}},
        },
    )

    stranger_s3.put_object(Bucket=bucket, Key="drop/a", Body=b"x", ACL="private")
    assert s3_error(stranger_s3.put_object, Bucket=bucket, Key="drop/b", Body=b"x") == (
        "AccessDenied",
        403,
    )
    assert s3_error(stranger_s3.put_object, Bucket=bucket, Key="later/c", Body=b"x") == (
        "AccessDenied",
        403,
    )
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["drop/a"]


@pytest.mark.parametrize(
    "condition",
    [
        {"IpAddress": {"aws:SourceIp": "not-an-address"}},
        {"ArnLike": {"aws:SourceArn": "arn:*"}},
        {"DateLessThan": {"aws:CurrentTime": "someday"}},
        {"StringEquals": "not an object"},
    ],
)
def test_a_condition_we_cannot_evaluate_is_refused(s3: Any, condition: Any) -> None:
    bucket = new_bucket(s3, "cond-bad")

    assert s3_error(
        s3.put_bucket_policy,
        Bucket=bucket,
        Policy=json.dumps({"Statement": [public_read(bucket, Condition=condition)]}),
    ) == ("MalformedPolicy", 400)


def test_a_copy_is_held_to_the_source_policy_conditions(s3: Any) -> None:
    source = new_bucket(s3, "cond-src")
    target = new_bucket(s3, "cond-dst")
    s3.put_object(Bucket=source, Key="k", Body=b"x")
    set_policy(
        s3,
        source,
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{source}/*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    )

    assert s3_error(
        s3.copy_object, Bucket=target, Key="copy", CopySource={"Bucket": source, "Key": "k"}
    ) == ("AccessDenied", 403)
    assert s3_error(s3.head_object, Bucket=target, Key="copy")[1] == 404
