"""Bucket lifecycle configuration through boto3 on the real S3 port: what is put is what
is got back, bad rules are refused in S3's terms, and only the owning project's writers
may change them. (The sweep that acts on the rules is proved in tests/api, where the
clock can move days ahead.)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.e2e.conftest import Cloud
from tests.e2e.s3_support import new_bucket, s3_error

pytestmark = pytest.mark.e2e

RULES: list[dict[str, Any]] = [
    {
        "ID": "scratch",
        "Filter": {"Prefix": "tmp/"},
        "Status": "Enabled",
        "Expiration": {"Days": 7},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
    },
    {
        "ID": "old-versions",
        "Filter": {
            "And": {
                "Prefix": "logs/",
                "Tags": [{"Key": "tier", "Value": "cold"}, {"Key": "team", "Value": "ops"}],
                "ObjectSizeGreaterThan": 1024,
            }
        },
        "Status": "Enabled",
        "NoncurrentVersionExpiration": {"NoncurrentDays": 30, "NewerNoncurrentVersions": 3},
    },
    {
        "ID": "markers",
        "Filter": {"Tag": {"Key": "kind", "Value": "marker"}},
        "Status": "Disabled",
        "Expiration": {"Date": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)},
    },
    {
        "ID": "cleanup",
        "Filter": {},
        "Status": "Enabled",
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    },
]


@pytest.fixture(scope="module")
def s3(cloud: Cloud) -> Any:
    return cloud.s3(cloud.make_tenant("s3life"))


@pytest.fixture(scope="module")
def stranger_s3(cloud: Cloud) -> Any:
    return cloud.s3(cloud.make_tenant("s3life-stranger"))


def test_lifecycle_rules_round_trip_and_are_removed(s3: Any) -> None:
    bucket = new_bucket(s3, "life")
    assert s3_error(s3.get_bucket_lifecycle_configuration, Bucket=bucket) == (
        "NoSuchLifecycleConfiguration",
        404,
    )

    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": RULES})

    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == RULES
    s3.delete_bucket_lifecycle(Bucket=bucket)
    assert s3_error(s3.get_bucket_lifecycle_configuration, Bucket=bucket)[1] == 404


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"ID": "x", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 0}},
            ("InvalidArgument", 400),
        ),
        (
            {
                "ID": "x",
                "Filter": {},
                "Status": "Enabled",
                "Expiration": {"Date": dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)},
            },
            ("InvalidArgument", 400),
        ),
        ({"ID": "x", "Filter": {}, "Status": "Enabled"}, ("InvalidRequest", 400)),
        (
            {
                "ID": "x",
                "Filter": {"Tag": {"Key": "k", "Value": "v"}},
                "Status": "Enabled",
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            },
            ("InvalidRequest", 400),
        ),
        (
            {
                "ID": "x",
                "Filter": {},
                "Status": "Enabled",
                "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
            },
            ("InvalidStorageClass", 400),
        ),
    ],
)
def test_a_bad_rule_is_refused_and_the_old_rules_stay(
    s3: Any, rule: dict[str, Any], expected: tuple[str, int]
) -> None:
    bucket = new_bucket(s3, "life-bad")
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": RULES[:1]}
    )

    code = s3_error(
        s3.put_bucket_lifecycle_configuration,
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [rule]},
    )

    assert code == expected
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == RULES[:1]


def test_another_project_can_neither_read_nor_change_the_rules(s3: Any, stranger_s3: Any) -> None:
    bucket = new_bucket(s3, "life-private")
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": RULES[:1]}
    )

    assert s3_error(stranger_s3.get_bucket_lifecycle_configuration, Bucket=bucket) == (
        "AccessDenied",
        403,
    )
    assert s3_error(
        stranger_s3.put_bucket_lifecycle_configuration,
        Bucket=bucket,
        LifecycleConfiguration={"Rules": RULES},
    ) == ("AccessDenied", 403)
    assert s3_error(stranger_s3.delete_bucket_lifecycle, Bucket=bucket) == ("AccessDenied", 403)
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == RULES[:1]


def test_writes_and_reads_tell_when_a_rule_will_expire_the_object(s3: Any) -> None:
    bucket = new_bucket(s3, "life-expiry")
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "scratch cleanup",
                    "Filter": {"Prefix": "tmp/"},
                    "Status": "Enabled",
                    "Expiration": {"Days": 2},
                }
            ]
        },
    )
    now = dt.datetime.now(dt.UTC)
    midnight = (now + dt.timedelta(days=3)).strftime("%a, %d %b %Y 00:00:00 GMT")
    expected = f'expiry-date="{midnight}", rule-id="scratch%20cleanup"'

    put = s3.put_object(Bucket=bucket, Key="tmp/x", Body=b"x")

    assert put["Expiration"] == expected
    assert s3.head_object(Bucket=bucket, Key="tmp/x")["Expiration"] == expected
    assert "Expiration" not in s3.put_object(Bucket=bucket, Key="keep/y", Body=b"y")
    assert "Expiration" not in s3.head_object(Bucket=bucket, Key="keep/y")
