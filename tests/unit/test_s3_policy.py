"""Bucket access rules: ownership, project readers, bucket policies and canned ACLs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from souverain.objectstore.policy import (
    ANONYMOUS,
    Glob,
    PolicyError,
    Principal,
    allowed,
    parse_policy,
)

OWNER = Principal("u-owner", "p-owner", frozenset({"member", "reader"}))
READER = Principal("u-reader", "p-owner", frozenset({"reader"}))
OUTSIDER = Principal("u-out", "p-other", frozenset({"member", "reader"}))


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def may(who: Principal, action: str, text: str = "", acl: str = "private", **kw: Any) -> bool:
    return allowed(
        who,
        action,
        bucket_name="data",
        bucket_project="p-owner",
        bucket_acl=acl,
        statements=parse_policy(text, "data") if text else [],
        **kw,
    )


def test_owner_project_member_may_do_anything() -> None:
    assert may(OWNER, "s3:PutObject", key="k")
    assert may(OWNER, "s3:DeleteObject", key="k")


def test_project_reader_may_read_but_not_write() -> None:
    assert may(READER, "s3:GetObject", key="k")
    assert may(READER, "s3:ListBucket")
    assert not may(READER, "s3:PutObject", key="k")
    assert not may(READER, "s3:DeleteObject", key="k")


def test_outsiders_and_anonymous_are_denied_by_default() -> None:
    for who in (OUTSIDER, ANONYMOUS):
        assert not may(who, "s3:ListBucket")
        assert not may(who, "s3:GetObject", key="k")


def test_public_read_bucket_acl_opens_listing_only() -> None:
    assert may(ANONYMOUS, "s3:ListBucket", acl="public-read")
    assert not may(ANONYMOUS, "s3:GetObject", acl="public-read", key="k")
    assert not may(ANONYMOUS, "s3:PutObject", acl="public-read", key="k")


def test_public_read_object_acl_opens_that_object() -> None:
    assert may(ANONYMOUS, "s3:GetObject", key="k", object_acl="public-read")
    assert not may(ANONYMOUS, "s3:DeleteObject", key="k", object_acl="public-read")


def test_policy_public_read_for_a_prefix() -> None:
    text = policy(
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::data/public/*",
        }
    )
    assert may(ANONYMOUS, "s3:GetObject", text, key="public/a.txt")
    assert not may(ANONYMOUS, "s3:GetObject", text, key="private/a.txt")
    assert not may(ANONYMOUS, "s3:PutObject", text, key="public/a.txt")


def test_policy_grants_one_user_of_another_project() -> None:
    text = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::p-other:user/u-out"]},
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": ["arn:aws:s3:::data", "arn:aws:s3:::data/*"],
        }
    )
    assert may(OUTSIDER, "s3:GetObject", text, key="x")
    assert may(OUTSIDER, "s3:ListBucket", text)
    other_user = Principal("u-someone", "p-other", frozenset({"member"}))
    assert not may(other_user, "s3:GetObject", text, key="x")
    assert not may(ANONYMOUS, "s3:GetObject", text, key="x")


def test_policy_grants_a_whole_project_by_id_or_root_arn() -> None:
    for principal in ("p-other", "arn:aws:iam::p-other:root"):
        text = policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": principal},
                "Action": "s3:*",
                "Resource": "arn:aws:s3:::data/*",
            }
        )
        assert may(OUTSIDER, "s3:PutObject", text, key="x")


def test_explicit_deny_wins_even_over_the_owner() -> None:
    text = policy(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:DeleteObject",
            "Resource": "arn:aws:s3:::data/locked/*",
        }
    )
    assert not may(OWNER, "s3:DeleteObject", text, key="locked/a")
    assert may(OWNER, "s3:DeleteObject", text, key="open/a")


def test_wildcards_are_literal_except_star_and_question_mark() -> None:
    text = policy(
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:Get*",
            "Resource": "arn:aws:s3:::data/a?c[1].txt",
        }
    )
    assert may(ANONYMOUS, "s3:GetObject", text, key="abc[1].txt")
    assert not may(ANONYMOUS, "s3:GetObject", text, key="abc1.txt")


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("not json", "valid JSON"),
        (json.dumps({"Version": "2012-10-17"}), "Statement"),
        (
            policy({"Effect": "Maybe", "Principal": "*", "Action": "s3:*", "Resource": "x"}),
            "Effect",
        ),
        (
            policy(
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "ec2:RunInstances",
                    "Resource": "arn:aws:s3:::data/*",
                }
            ),
            "s3:",
        ),
        (
            policy(
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::somebody-elses/*",
                }
            ),
            "within this bucket",
        ),
        (
            policy(
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::data/*",
                    "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*"}},
                }
            ),
            "not supported",
        ),
        (
            policy(
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::p:group/admins"},
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::data/*",
                }
            ),
            "Principal",
        ),
        ("x" * 30_000, "limited"),
    ],
)
def test_malformed_policies_are_refused_with_a_reason(document: str, complaint: str) -> None:
    with pytest.raises(PolicyError, match=complaint):
        parse_policy(document, "data")


# ---------------------------------------------------------------------- wildcards


def _as_regex(pattern: str) -> re.Pattern[str]:
    """The reference meaning of an IAM wildcard, as a regular expression."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


@given(st.text("ab*?/", max_size=10), st.text("ab/", max_size=14))
def test_a_wildcard_means_what_the_regular_expression_meant(pattern: str, text: str) -> None:
    assert Glob(pattern).match(text) == bool(_as_regex(pattern).match(text))


def test_a_hostile_wildcard_costs_at_most_pattern_times_text() -> None:
    # backtracking regular expressions took minutes on this; the walk is 300 x 16 steps
    hostile = Glob("arn:aws:s3:::b/*a*a*a*a*a*a*a*c")
    assert not hostile.match("arn:aws:s3:::b/" + "a" * 300)
    assert hostile.match("arn:aws:s3:::b/" + "a" * 300 + "c")
    text = policy(
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::data/*a*a*a*a*a*a*a*c",
        }
    )
    assert not may(ANONYMOUS, "s3:GetObject", text, key="a" * 300)
    assert may(ANONYMOUS, "s3:GetObject", text, key="a" * 300 + "c")
