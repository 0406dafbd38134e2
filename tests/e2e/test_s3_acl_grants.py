"""ACL grants through boto3 on the real S3 port: x-amz-grant-* headers, AccessControlPolicy
documents and every canned ACL as grants, each honoured for the grantee and no one else.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Cloud, Tenant, unique
from tests.e2e.s3_support import anonymous_s3, new_bucket, s3_error

pytestmark = pytest.mark.e2e

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


@pytest.fixture(scope="module")
def owner(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3acl")


@pytest.fixture(scope="module")
def s3(cloud: Cloud, owner: Tenant) -> Any:
    return cloud.s3(owner)


@pytest.fixture(scope="module")
def grantee(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3acl-grantee")


@pytest.fixture(scope="module")
def grantee_s3(cloud: Cloud, grantee: Tenant) -> Any:
    return cloud.s3(grantee)


@pytest.fixture(scope="module")
def other_s3(cloud: Cloud) -> Any:
    return cloud.s3(cloud.make_tenant("s3acl-other"))


@pytest.fixture(scope="module")
def anonymous(cloud: Cloud) -> Any:
    return anonymous_s3(cloud.s3_url)


def grants_of(response: dict[str, Any]) -> set[tuple[str, str, str]]:
    found = set()
    for grant in response["Grants"]:
        who = grant["Grantee"]
        found.add((who["Type"], who.get("ID") or who.get("URI", ""), grant["Permission"]))
    return found


def test_canned_acls_read_back_as_their_grants(s3: Any, owner: Tenant) -> None:
    bucket = new_bucket(s3, "acl-canned")
    me = ("CanonicalUser", owner.project_id, "FULL_CONTROL")
    expected = {
        "private": {me},
        "public-read": {me, ("Group", ALL_USERS, "READ")},
        "public-read-write": {me, ("Group", ALL_USERS, "READ"), ("Group", ALL_USERS, "WRITE")},
        "authenticated-read": {me, ("Group", AUTHENTICATED, "READ")},
    }
    for canned, grants in expected.items():
        key = unique(canned)
        s3.put_object(Bucket=bucket, Key=key, Body=b"x", ACL=canned)
        assert grants_of(s3.get_object_acl(Bucket=bucket, Key=key)) == grants, canned


def test_a_grant_header_lets_that_project_read_and_nobody_else(
    s3: Any, grantee: Tenant, grantee_s3: Any, other_s3: Any, anonymous: Any
) -> None:
    bucket = new_bucket(s3, "acl-header")
    s3.put_object(
        Bucket=bucket, Key="shared", Body=b"for one partner", GrantRead=f'id="{grantee.project_id}"'
    )

    assert grantee_s3.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"for one partner"
    assert s3_error(other_s3.get_object, Bucket=bucket, Key="shared") == ("AccessDenied", 403)
    assert s3_error(anonymous.get_object, Bucket=bucket, Key="shared") == ("AccessDenied", 403)
    assert s3_error(grantee_s3.put_object, Bucket=bucket, Key="shared", Body=b"no") == (
        "AccessDenied",
        403,
    )
    assert ("CanonicalUser", grantee.project_id, "READ") in grants_of(
        s3.get_object_acl(Bucket=bucket, Key="shared")
    )


def test_authenticated_read_opens_to_signed_callers_only(
    s3: Any, other_s3: Any, anonymous: Any
) -> None:
    bucket = new_bucket(s3, "acl-authread")
    s3.put_object(Bucket=bucket, Key="k", Body=b"members area", ACL="authenticated-read")

    assert other_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"members area"
    assert s3_error(anonymous.get_object, Bucket=bucket, Key="k") == ("AccessDenied", 403)


def test_an_access_control_policy_on_the_bucket_grants_each_permission_alone(
    s3: Any, owner: Tenant, grantee: Tenant, grantee_s3: Any, other_s3: Any
) -> None:
    bucket = new_bucket(s3, "acl-policy")
    s3.put_object(Bucket=bucket, Key="existing", Body=b"x")

    def grant(*permissions: str) -> None:
        grants = [
            {
                "Grantee": {"Type": "CanonicalUser", "ID": owner.project_id},
                "Permission": "FULL_CONTROL",
            }
        ]
        grants += [
            {"Grantee": {"Type": "CanonicalUser", "ID": grantee.project_id}, "Permission": p}
            for p in permissions
        ]
        s3.put_bucket_acl(
            Bucket=bucket,
            AccessControlPolicy={"Owner": {"ID": owner.project_id}, "Grants": grants},
        )

    grant("READ")
    assert [o["Key"] for o in grantee_s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["existing"]
    assert s3_error(grantee_s3.put_object, Bucket=bucket, Key="new", Body=b"x")[1] == 403
    assert s3_error(grantee_s3.get_bucket_acl, Bucket=bucket)[1] == 403

    grant("WRITE", "READ_ACP")
    grantee_s3.put_object(Bucket=bucket, Key="new", Body=b"from the partner")
    assert ("CanonicalUser", grantee.project_id, "WRITE") in grants_of(
        grantee_s3.get_bucket_acl(Bucket=bucket)
    )
    assert s3_error(grantee_s3.list_objects_v2, Bucket=bucket)[1] == 403
    assert s3_error(grantee_s3.put_bucket_acl, Bucket=bucket, ACL="public-read")[1] == 403
    assert s3_error(other_s3.list_objects_v2, Bucket=bucket)[1] == 403
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"from the partner"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"GrantRead": 'emailAddress="someone@example.com"'},
            ("UnresolvableGrantByEmailAddress", 400),
        ),
        (
            {"GrantRead": 'uri="http://acs.amazonaws.com/groups/global/Everyone"'},
            ("InvalidArgument", 400),
        ),
        ({"GrantRead": "everyone please"}, ("InvalidArgument", 400)),
        ({"GrantRead": f'uri="{ALL_USERS}"', "ACL": "private"}, ("InvalidRequest", 400)),
        ({"ACL": "world-writable"}, ("InvalidArgument", 400)),
    ],
)
def test_a_bad_grant_stores_nothing(
    s3: Any, params: dict[str, str], expected: tuple[str, int]
) -> None:
    bucket = new_bucket(s3, "acl-bad")
    key = unique("k")

    assert s3_error(s3.put_object, Bucket=bucket, Key=key, Body=b"x", **params) == expected
    assert s3_error(s3.head_object, Bucket=bucket, Key=key)[1] == 404


def test_public_access_block_covers_grants_to_everyone(
    s3: Any, grantee: Tenant, grantee_s3: Any, anonymous: Any
) -> None:
    bucket = new_bucket(s3, "acl-pab")
    s3.put_object(Bucket=bucket, Key="open", Body=b"x", GrantRead=f'uri="{ALL_USERS}"')
    s3.put_object(Bucket=bucket, Key="partner", Body=b"y", GrantRead=f'id="{grantee.project_id}"')
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": False,
        },
    )

    assert s3_error(
        s3.put_object, Bucket=bucket, Key="k", Body=b"x", GrantRead=f'uri="{ALL_USERS}"'
    ) == ("AccessDenied", 403)
    assert s3_error(anonymous.get_object, Bucket=bucket, Key="open") == ("AccessDenied", 403)
    assert grantee_s3.get_object(Bucket=bucket, Key="partner")["Body"].read() == b"y"
