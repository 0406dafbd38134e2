"""Bucket policy conditions evaluated directly: each operator family, IfExists, negation
and Null against a request context, and what makes a statement public.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from souverain.objectstore.policy import Principal, allowed, is_public, parse_policy
from souverain.objectstore.policy_conditions import ConditionError, parse_conditions

OWNER, OTHER = "owner-project", "other-project"


def document(condition: dict[str, Any], effect: str = "Allow") -> str:
    return json.dumps(
        {
            "Statement": {
                "Effect": effect,
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::data/*",
                "Condition": condition,
            }
        }
    )


def may_read(condition: dict[str, Any], **context: str) -> bool:
    who = Principal("user", OTHER, frozenset({"member"}), context=context)
    return allowed(
        who,
        "s3:GetObject",
        bucket_name="data",
        bucket_project=OWNER,
        bucket_acl="private",
        statements=parse_policy(document(condition), "data"),
        key="k",
        object_acl="private",
    )


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [
        (
            {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.7"]}},
            {"aws:sourceip": "192.0.2.7"},
            True,
        ),
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:sourceip": "192.0.2.7"}, False),
        ({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:sourceip": "192.0.2.7"}, True),
        ({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, {"aws:sourceip": "2001:db8::1"}, True),
        ({"StringLike": {"s3:prefix": ["home/*", "pub?"]}}, {"s3:prefix": "pub1"}, True),
        ({"StringNotLike": {"s3:prefix": "home/*"}}, {"s3:prefix": "home/x"}, False),
        ({"StringEqualsIgnoreCase": {"aws:UserAgent": "CURL"}}, {"aws:useragent": "curl"}, True),
        ({"StringEquals": {"s3:x-amz-acl": "private"}}, {}, False),
        ({"StringNotEquals": {"s3:x-amz-acl": "public-read"}}, {}, True),
        ({"StringEqualsIfExists": {"s3:x-amz-acl": "private"}}, {}, True),
        (
            {"StringEqualsIfExists": {"s3:x-amz-acl": "private"}},
            {"s3:x-amz-acl": "public-read"},
            False,
        ),
        ({"Null": {"s3:x-amz-acl": "true"}}, {}, True),
        ({"Null": {"s3:x-amz-acl": "false"}}, {}, False),
        ({"Bool": {"aws:SecureTransport": True}}, {"aws:securetransport": "true"}, True),
        ({"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, True),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "lots"}, False),
        (
            {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}},
            {"aws:currenttime": "2026-12-06T00:00:00Z"},
            True,
        ),
        (
            {
                "DateLessThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"},
                "IpAddress": {"aws:SourceIp": "0.0.0.0/0"},
            },
            {"aws:currenttime": "2026-12-06T00:00:00Z", "aws:sourceip": "192.0.2.1"},
            False,
        ),
    ],
)
def test_each_operator_decides_as_iam_does(
    condition: dict[str, Any], context: dict[str, str], expected: bool
) -> None:
    assert may_read(condition, **context) is expected


@pytest.mark.parametrize(
    "block",
    [
        {"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}},
        {"ForAnyValue:StringLike": {"s3:prefix": "a"}},
        {"StringEquals": {}},
        {"StringEquals": {"s3:prefix": [{"nested": 1}]}},
        {"DateLessThan": {"aws:CurrentTime": "tomorrow"}},
        ["not", "an", "object"],
    ],
)
def test_a_condition_that_cannot_be_evaluated_is_refused(block: Any) -> None:
    with pytest.raises(ConditionError):
        parse_conditions(block)


def test_a_statement_pinned_to_an_address_is_not_public() -> None:
    pinned = parse_policy(document({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), "data")
    open_to_all = parse_policy(document({"Bool": {"aws:SecureTransport": "true"}}), "data")
    denying = parse_policy(document({"Bool": {"aws:SecureTransport": "false"}}, "Deny"), "data")

    assert not is_public(pinned)
    assert is_public(open_to_all)
    assert not is_public(denying)
