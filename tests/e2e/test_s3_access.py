"""Who may touch what, through the real S3 port: tenants, canned ACLs, bucket policies,
CORS, presigned URLs and bad credentials.

A project's buckets are its own; the only ways in for anyone else are the ones the
owner opened (a public-read ACL, a policy statement, a presigned URL).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import boto3
import botocore.auth
import httpx
import pytest
from botocore.config import Config

from tests.e2e.conftest import REGION, Cloud, Tenant, unique
from tests.e2e.s3_support import anonymous_s3, error_document, new_bucket, s3_error

pytestmark = pytest.mark.e2e

SECRET_BYTES = b"the project's private bytes"


@pytest.fixture(scope="module")
def endpoint(cloud: Cloud) -> str:
    return cloud.s3_url


@pytest.fixture(scope="module")
def owner(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3owner")


@pytest.fixture(scope="module")
def s3(cloud: Cloud, owner: Tenant) -> Any:
    return cloud.s3(owner)


@pytest.fixture(scope="module")
def stranger(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3stranger")


@pytest.fixture(scope="module")
def stranger_s3(cloud: Cloud, stranger: Tenant) -> Any:
    return cloud.s3(stranger)


@pytest.fixture(scope="module")
def anonymous(endpoint: str) -> Any:
    return anonymous_s3(endpoint)


@pytest.fixture(scope="module")
def private_bucket(s3: Any) -> str:
    name = new_bucket(s3, "private")
    s3.put_object(Bucket=name, Key="secret.txt", Body=SECRET_BYTES)
    return name


def object_url(endpoint: str, bucket: str, key: str) -> str:
    return f"{endpoint}/{bucket}/{urllib.parse.quote(key)}"


def error_code(response: httpx.Response) -> str:
    return error_document(response)["Code"]


# ---------------------------------------------------------------------- tenant isolation


def test_another_project_cannot_read_the_bucket_or_learn_what_is_in_it(
    stranger_s3: Any, private_bucket: str
) -> None:
    denied = ("AccessDenied", 403)
    reads: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (stranger_s3.list_objects_v2, {}),
        (stranger_s3.list_objects, {}),
        (stranger_s3.list_object_versions, {}),
        (stranger_s3.list_multipart_uploads, {}),
        (stranger_s3.get_object, {"Key": "secret.txt"}),
        (stranger_s3.get_object, {"Key": "no-such-key"}),  # denied, not NoSuchKey
        (stranger_s3.get_object_tagging, {"Key": "secret.txt"}),
        (stranger_s3.get_object_acl, {"Key": "secret.txt"}),
        (stranger_s3.get_bucket_acl, {}),
        (stranger_s3.get_bucket_policy, {}),
        (stranger_s3.get_bucket_versioning, {}),
        (stranger_s3.get_bucket_tagging, {}),
        (stranger_s3.get_bucket_cors, {}),
        (stranger_s3.get_bucket_location, {}),
    ]
    for operation, params in reads:
        assert s3_error(operation, Bucket=private_bucket, **params) == denied, operation

    assert s3_error(stranger_s3.head_bucket, Bucket=private_bucket) == ("403", 403)
    assert s3_error(stranger_s3.head_object, Bucket=private_bucket, Key="secret.txt") == (
        "403",
        403,
    )
    assert s3_error(stranger_s3.head_object, Bucket=private_bucket, Key="nothing") == (
        "403",
        403,
    )
    assert private_bucket not in {b["Name"] for b in stranger_s3.list_buckets()["Buckets"]}


def test_another_project_cannot_change_the_bucket_or_its_objects(
    s3: Any, stranger_s3: Any, stranger: Tenant, private_bucket: str
) -> None:
    denied = ("AccessDenied", 403)
    writes: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (stranger_s3.put_object, {"Key": "secret.txt", "Body": b"overwritten"}),
        (stranger_s3.put_object, {"Key": "planted.txt", "Body": b"planted"}),
        (stranger_s3.delete_object, {"Key": "secret.txt"}),
        (stranger_s3.create_multipart_upload, {"Key": "planted.bin"}),
        (
            stranger_s3.copy_object,
            {"Key": "copied.txt", "CopySource": {"Bucket": private_bucket, "Key": "secret.txt"}},
        ),
        (stranger_s3.put_object_acl, {"Key": "secret.txt", "ACL": "public-read"}),
        (stranger_s3.put_object_tagging, {"Key": "secret.txt", "Tagging": {"TagSet": []}}),
        (stranger_s3.put_bucket_acl, {"ACL": "public-read"}),
        (stranger_s3.put_bucket_versioning, {"VersioningConfiguration": {"Status": "Enabled"}}),
        (
            stranger_s3.put_bucket_policy,
            {
                "Policy": json.dumps(
                    {
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": stranger.project_id},
                                "Action": "s3:*",
                                "Resource": f"arn:aws:s3:::{private_bucket}/*",
                            }
                        ]
                    }
                )
            },
        ),
        (stranger_s3.delete_bucket_policy, {}),
        (stranger_s3.delete_bucket, {}),
    ]
    for operation, params in writes:
        assert s3_error(operation, Bucket=private_bucket, **params) == denied, operation

    batch = stranger_s3.delete_objects(
        Bucket=private_bucket, Delete={"Objects": [{"Key": "secret.txt"}]}
    )
    assert [e["Code"] for e in batch.get("Errors", [])] == ["AccessDenied"]
    assert "Deleted" not in batch

    assert s3.get_object(Bucket=private_bucket, Key="secret.txt")["Body"].read() == SECRET_BYTES
    assert s3_error(s3.head_object, Bucket=private_bucket, Key="planted.txt") == ("404", 404)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=private_bucket)
    assert s3.get_bucket_acl(Bucket=private_bucket)["Grants"][0]["Permission"] == "FULL_CONTROL"
    assert len(s3.get_bucket_acl(Bucket=private_bucket)["Grants"]) == 1


def test_another_project_cannot_copy_out_of_our_bucket_or_into_it(
    s3: Any, stranger_s3: Any, private_bucket: str
) -> None:
    theirs = new_bucket(stranger_s3, "theirs")
    stranger_s3.put_object(Bucket=theirs, Key="bait", Body=b"bait")
    secret = {"Bucket": private_bucket, "Key": "secret.txt"}
    upload_id = stranger_s3.create_multipart_upload(Bucket=theirs, Key="loot")["UploadId"]

    copy_out = s3_error(stranger_s3.copy_object, Bucket=theirs, Key="loot", CopySource=secret)
    part_out = s3_error(
        stranger_s3.upload_part_copy,
        Bucket=theirs,
        Key="loot",
        UploadId=upload_id,
        PartNumber=1,
        CopySource=secret,
    )
    copy_in = s3_error(
        stranger_s3.copy_object,
        Bucket=private_bucket,
        Key="bait",
        CopySource={"Bucket": theirs, "Key": "bait"},
    )

    assert copy_out == part_out == copy_in == ("AccessDenied", 403)
    assert s3_error(stranger_s3.head_object, Bucket=theirs, Key="loot") == ("404", 404)
    assert "Parts" not in stranger_s3.list_parts(Bucket=theirs, Key="loot", UploadId=upload_id)
    assert s3_error(s3.head_object, Bucket=private_bucket, Key="bait") == ("404", 404)


def test_expected_bucket_owner_that_does_not_match_is_access_denied(
    s3: Any, owner: Tenant, stranger: Tenant, private_bucket: str
) -> None:
    # Bucket names are global: clients name the owner they expect, so that a bucket
    # someone else owns under that name never receives or serves their data.
    mine = {"Bucket": private_bucket, "ExpectedBucketOwner": owner.project_id}
    theirs = {"Bucket": private_bucket, "ExpectedBucketOwner": stranger.project_id}

    assert s3.get_object(Key="secret.txt", **mine)["Body"].read() == SECRET_BYTES
    s3.put_object(Key="checked.txt", Body=b"checked", **mine)
    assert s3.list_objects_v2(**mine)["KeyCount"] >= 2

    denied = ("AccessDenied", 403)
    assert s3_error(s3.get_object, Key="secret.txt", **theirs) == denied
    assert s3_error(s3.put_object, Key="unchecked.txt", Body=b"x", **theirs) == denied
    assert s3_error(s3.list_objects_v2, **theirs) == denied
    assert s3_error(s3.head_object, Bucket=private_bucket, Key="unchecked.txt") == ("404", 404)


# ---------------------------------------------------------------------- canned ACLs


def test_public_read_object_is_readable_by_anyone_and_private_one_is_not(
    s3: Any, anonymous: Any, endpoint: str
) -> None:
    bucket = new_bucket(s3, "acl-objects")
    s3.put_object(Bucket=bucket, Key="public/page one.html", Body=b"<h1>hi</h1>", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="private.txt", Body=SECRET_BYTES)

    plain = httpx.get(object_url(endpoint, bucket, "public/page one.html"), timeout=30)
    via_boto3 = anonymous.get_object(Bucket=bucket, Key="public/page one.html")
    hidden = httpx.get(object_url(endpoint, bucket, "private.txt"), timeout=30)

    assert plain.status_code == 200
    assert plain.content == b"<h1>hi</h1>"
    assert via_boto3["Body"].read() == b"<h1>hi</h1>"
    assert hidden.status_code == 403
    assert error_code(hidden) == "AccessDenied"
    assert SECRET_BYTES not in hidden.content
    assert s3_error(anonymous.get_object, Bucket=bucket, Key="private.txt") == (
        "AccessDenied",
        403,
    )
    # Public objects do not make the bucket listable or writable.
    assert s3_error(anonymous.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)
    assert s3_error(anonymous.put_object, Bucket=bucket, Key="graffiti", Body=b"x") == (
        "AccessDenied",
        403,
    )
    assert s3_error(anonymous.list_buckets) == ("AccessDenied", 403)


def test_object_acl_can_be_opened_and_closed_again(s3: Any, anonymous: Any) -> None:
    bucket = new_bucket(s3, "acl-toggle")
    s3.put_object(Bucket=bucket, Key="doc", Body=b"doc")

    s3.put_object_acl(Bucket=bucket, Key="doc", ACL="public-read")
    assert anonymous.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"doc"

    s3.put_object_acl(Bucket=bucket, Key="doc", ACL="private")
    assert s3_error(anonymous.get_object, Bucket=bucket, Key="doc") == ("AccessDenied", 403)


def test_public_read_bucket_is_listable_by_anyone_but_its_objects_stay_private(
    s3: Any, anonymous: Any
) -> None:
    bucket = new_bucket(s3, "acl-bucket", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="listed-not-readable", Body=SECRET_BYTES)

    listed = anonymous.list_objects_v2(Bucket=bucket)

    assert [o["Key"] for o in listed["Contents"]] == ["listed-not-readable"]
    assert s3_error(anonymous.get_object, Bucket=bucket, Key="listed-not-readable") == (
        "AccessDenied",
        403,
    )

    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert s3_error(anonymous.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)


def test_acl_documents_name_the_owner_and_the_public_grant(s3: Any, owner: Tenant) -> None:
    bucket = new_bucket(s3, "acl-shapes", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="private", Body=b"x")
    s3.put_object(Bucket=bucket, Key="public", Body=b"x", ACL="public-read")
    full_control = {
        "Grantee": {
            "ID": owner.project_id,
            "DisplayName": owner.project_id,
            "Type": "CanonicalUser",
        },
        "Permission": "FULL_CONTROL",
    }
    public_read = {
        "Grantee": {"URI": "http://acs.amazonaws.com/groups/global/AllUsers", "Type": "Group"},
        "Permission": "READ",
    }

    private_acl = s3.get_object_acl(Bucket=bucket, Key="private")
    public_acl = s3.get_object_acl(Bucket=bucket, Key="public")
    bucket_acl = s3.get_bucket_acl(Bucket=bucket)

    for acl in (private_acl, public_acl, bucket_acl):
        assert acl["Owner"]["ID"] == owner.project_id
    assert private_acl["Grants"] == [full_control]
    assert public_acl["Grants"] == [full_control, public_read]
    assert bucket_acl["Grants"] == [full_control, public_read]


# ---------------------------------------------------------------------- bucket policies


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_policy_can_make_objects_public_and_deleting_it_closes_them(
    s3: Any, anonymous: Any, endpoint: str
) -> None:
    bucket = new_bucket(s3, "policy-public")
    s3.put_object(Bucket=bucket, Key="site/index.html", Body=b"<p>public</p>")
    document = policy(
        {
            "Sid": "PublicRead",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
        }
    )
    url = object_url(endpoint, bucket, "site/index.html")
    assert httpx.get(url, timeout=30).status_code == 403

    s3.put_bucket_policy(Bucket=bucket, Policy=document)

    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(document)
    assert httpx.get(url, timeout=30).content == b"<p>public</p>"
    assert anonymous.get_object(Bucket=bucket, Key="site/index.html")["Body"].read()
    # Only what the statement names: no listing, no writing.
    assert s3_error(anonymous.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)
    assert s3_error(anonymous.put_object, Bucket=bucket, Key="x", Body=b"x") == (
        "AccessDenied",
        403,
    )

    s3.delete_bucket_policy(Bucket=bucket)

    assert httpx.get(url, timeout=30).status_code == 403
    assert s3_error(s3.get_bucket_policy, Bucket=bucket) == ("NoSuchBucketPolicy", 404)


def test_policy_grants_one_user_of_another_project_exactly_what_it_names(
    cloud: Cloud, s3: Any, stranger: Tenant, stranger_s3: Any
) -> None:
    bucket = new_bucket(s3, "policy-share")
    s3.put_object(Bucket=bucket, Key="shared/report.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=bucket, Key="internal/plan.txt", Body=SECRET_BYTES)
    assert s3_error(stranger_s3.get_object, Bucket=bucket, Key="shared/report.csv") == (
        "AccessDenied",
        403,
    )

    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{stranger.project_id}:user/{stranger.user_id}"},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/shared/*"],
            }
        ),
    )

    got = stranger_s3.get_object(Bucket=bucket, Key="shared/report.csv")
    assert got["Body"].read() == b"a,b\n1,2\n"
    assert s3_error(stranger_s3.get_object, Bucket=bucket, Key="internal/plan.txt") == (
        "AccessDenied",
        403,
    )
    assert s3_error(
        stranger_s3.put_object, Bucket=bucket, Key="shared/report.csv", Body=b"changed"
    ) == ("AccessDenied", 403)
    assert s3_error(stranger_s3.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)
    # Another user, even of a third project, gets nothing.
    third = cloud.s3(cloud.make_tenant("s3third"))
    assert s3_error(third.get_object, Bucket=bucket, Key="shared/report.csv") == (
        "AccessDenied",
        403,
    )
    assert s3.get_object(Bucket=bucket, Key="shared/report.csv")["Body"].read() == b"a,b\n1,2\n"


def test_policy_naming_a_project_grants_its_users(
    s3: Any, stranger: Tenant, stranger_s3: Any
) -> None:
    bucket = new_bucket(s3, "policy-project")
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": [stranger.project_id]},
                "Action": ["s3:ListBucket", "s3:GetObject", "s3:PutObject"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        ),
    )

    stranger_s3.put_object(Bucket=bucket, Key="b", Body=b"from the partner")

    assert [o["Key"] for o in stranger_s3.list_objects_v2(Bucket=bucket)["Contents"]] == [
        "a",
        "b",
    ]
    assert s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"from the partner"
    # Bucket settings remain the owner's alone.
    assert s3_error(stranger_s3.get_bucket_policy, Bucket=bucket) == ("AccessDenied", 403)
    assert s3_error(stranger_s3.delete_bucket, Bucket=bucket) == ("AccessDenied", 403)


def test_policy_can_let_anyone_drop_files_into_one_folder(
    s3: Any, anonymous: Any, endpoint: str
) -> None:
    bucket = new_bucket(s3, "policy-dropbox")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=policy(
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/incoming/*",
            }
        ),
    )

    anonymous.put_object(Bucket=bucket, Key="incoming/form.pdf", Body=b"%PDF-1.7")
    plain = httpx.put(
        object_url(endpoint, bucket, "incoming/plain.txt"), content=b"via curl", timeout=30
    )

    assert plain.status_code == 200
    assert s3.get_object(Bucket=bucket, Key="incoming/form.pdf")["Body"].read() == b"%PDF-1.7"
    assert s3.get_object(Bucket=bucket, Key="incoming/plain.txt")["Body"].read() == b"via curl"
    assert s3_error(anonymous.get_object, Bucket=bucket, Key="incoming/form.pdf") == (
        "AccessDenied",
        403,
    )
    assert s3_error(anonymous.put_object, Bucket=bucket, Key="elsewhere", Body=b"x") == (
        "AccessDenied",
        403,
    )


def test_explicit_deny_in_a_policy_binds_the_owner_too(s3: Any) -> None:
    bucket = new_bucket(s3, "policy-deny")
    s3.put_object(Bucket=bucket, Key="records/2026", Body=b"kept")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=policy(
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::{bucket}/records/*",
            }
        ),
    )

    assert s3_error(s3.delete_object, Bucket=bucket, Key="records/2026") == (
        "AccessDenied",
        403,
    )
    assert s3.get_object(Bucket=bucket, Key="records/2026")["Body"].read() == b"kept"

    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_object(Bucket=bucket, Key="records/2026")


@pytest.mark.parametrize(
    "document",
    [
        "this is not json",
        "[]",
        json.dumps({"Version": "2012-10-17"}),
        policy({"Effect": "Perhaps", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}),
        policy(
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "ec2:RunInstances",
                "Resource": "arn:aws:s3:::BUCKET/*",
            }
        ),
        policy(
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::some-other-bucket/*",
            }
        ),
        policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::BUCKET/*"}),
    ],
)
def test_policy_that_is_not_valid_is_malformed_and_not_stored(s3: Any, document: str) -> None:
    bucket = new_bucket(s3, "policy-bad")

    code = s3_error(s3.put_bucket_policy, Bucket=bucket, Policy=document.replace("BUCKET", bucket))

    assert code == ("MalformedPolicy", 400)
    assert s3_error(s3.get_bucket_policy, Bucket=bucket) == ("NoSuchBucketPolicy", 404)


# ---------------------------------------------------------------------- CORS


CORS_RULES = [
    {
        "ID": "app",
        "AllowedOrigins": ["https://app.example.com"],
        "AllowedMethods": ["GET", "PUT"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag", "x-amz-request-id"],
        "MaxAgeSeconds": 600,
    },
    {
        "AllowedOrigins": ["https://*.partner.example"],
        "AllowedMethods": ["GET"],
    },
]


def preflight(
    endpoint: str, bucket: str, origin: str, method: str, headers: str = ""
) -> httpx.Response:
    wanted = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        wanted["Access-Control-Request-Headers"] = headers
    return httpx.options(object_url(endpoint, bucket, "asset.js"), headers=wanted, timeout=30)


def test_cors_rules_are_stored_returned_and_removed(s3: Any) -> None:
    bucket = new_bucket(s3, "cors-conf")
    assert s3_error(s3.get_bucket_cors, Bucket=bucket) == ("NoSuchCORSConfiguration", 404)

    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": CORS_RULES})

    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == CORS_RULES

    s3.delete_bucket_cors(Bucket=bucket)
    assert s3_error(s3.get_bucket_cors, Bucket=bucket) == ("NoSuchCORSConfiguration", 404)


def test_cors_rule_with_an_unknown_method_is_refused(s3: Any) -> None:
    bucket = new_bucket(s3, "cors-bad")
    rules = [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]

    assert s3_error(s3.put_bucket_cors, Bucket=bucket, CORSConfiguration={"CORSRules": rules}) == (
        "InvalidRequest",
        400,
    )


def test_preflight_is_allowed_only_as_the_rules_say(s3: Any, endpoint: str) -> None:
    bucket = new_bucket(s3, "cors-preflight")
    assert preflight(endpoint, bucket, "https://app.example.com", "GET").status_code == 403
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": CORS_RULES})

    allowed = preflight(
        endpoint, bucket, "https://app.example.com", "PUT", "content-type, x-amz-meta-owner"
    )
    wildcard = preflight(endpoint, bucket, "https://shop.partner.example", "GET")
    wrong_origin = preflight(endpoint, bucket, "https://evil.example", "GET")
    wrong_method = preflight(endpoint, bucket, "https://app.example.com", "DELETE")
    wrong_header = preflight(endpoint, bucket, "https://shop.partner.example", "GET", "x-custom")

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "PUT" in allowed.headers["access-control-allow-methods"]
    assert "x-amz-meta-owner" in allowed.headers["access-control-allow-headers"].lower()
    assert allowed.headers["access-control-max-age"] == "600"
    assert "ETag" in allowed.headers["access-control-expose-headers"]
    assert wildcard.status_code == 200
    assert wildcard.headers["access-control-allow-origin"] == "https://shop.partner.example"
    for refused in (wrong_origin, wrong_method, wrong_header):
        assert refused.status_code == 403
        assert error_code(refused) == "AccessDenied"
        assert "access-control-allow-origin" not in refused.headers


def test_actual_request_from_an_allowed_origin_gets_the_cors_headers(
    s3: Any, endpoint: str
) -> None:
    bucket = new_bucket(s3, "cors-get")
    s3.put_object(Bucket=bucket, Key="asset.js", Body=b"console.log(1)", ACL="public-read")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": CORS_RULES})
    url = object_url(endpoint, bucket, "asset.js")

    allowed = httpx.get(url, headers={"Origin": "https://app.example.com"}, timeout=30)
    other = httpx.get(url, headers={"Origin": "https://evil.example"}, timeout=30)
    no_origin = httpx.get(url, timeout=30)

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "etag" in allowed.headers["access-control-expose-headers"].lower()
    # CORS is enforced by browsers: other origins still get the object, without the headers.
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in no_origin.headers


# ---------------------------------------------------------------------- presigned URLs


def test_presigned_get_and_put_work_with_a_plain_http_client(s3: Any, private_bucket: str) -> None:
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": private_bucket, "Key": "secret.txt"}, ExpiresIn=300
    )
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": private_bucket, "Key": "uploaded by url"}, ExpiresIn=300
    )

    fetched = httpx.get(get_url, timeout=30)
    stored = httpx.put(put_url, content=b"sent without credentials", timeout=30)

    assert fetched.status_code == 200
    assert fetched.content == SECRET_BYTES
    assert stored.status_code == 200
    assert stored.headers["etag"]
    got = s3.get_object(Bucket=private_bucket, Key="uploaded by url")
    assert got["Body"].read() == b"sent without credentials"


def test_presigned_url_signed_for_one_key_does_not_open_another(
    s3: Any, private_bucket: str
) -> None:
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": private_bucket, "Key": "secret.txt"}, ExpiresIn=300
    )
    other_key = url.replace("/secret.txt?", "/other.txt?")
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")

    for bad in (other_key, tampered):
        response = httpx.get(bad, timeout=30)
        assert response.status_code == 403
        assert error_code(response) == "SignatureDoesNotMatch"


def test_expired_presigned_url_is_access_denied(
    s3: Any, private_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signed two hours ago for one hour: the signer's clock (botocore's) is set back.
    signed_at = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=2)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_, **__: signed_at)
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": private_bucket, "Key": "secret.txt"}, ExpiresIn=3600
    )
    monkeypatch.undo()

    response = httpx.get(url, timeout=30)

    assert response.status_code == 403
    assert error_code(response) == "AccessDenied"
    assert SECRET_BYTES not in response.content


# ---------------------------------------------------------------------- credentials


def client_with(endpoint: str, access: str, secret: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_wrong_secret_is_signature_does_not_match(
    cloud: Cloud, endpoint: str, owner: Tenant, private_bucket: str
) -> None:
    access, secret = cloud.ec2_credentials(owner)
    wrong = client_with(endpoint, access, secret[::-1])

    assert s3_error(wrong.list_buckets) == ("SignatureDoesNotMatch", 403)
    assert s3_error(wrong.get_object, Bucket=private_bucket, Key="secret.txt") == (
        "SignatureDoesNotMatch",
        403,
    )
    assert s3_error(wrong.put_object, Bucket=private_bucket, Key="secret.txt", Body=b"forged") == (
        "SignatureDoesNotMatch",
        403,
    )
    # The same client keeps a usable connection after the refusals.
    assert s3_error(wrong.list_buckets) == ("SignatureDoesNotMatch", 403)


def test_unknown_access_key_is_invalid_access_key_id(endpoint: str, private_bucket: str) -> None:
    unknown = client_with(endpoint, "AKIA" + unique("nobody").upper().replace("-", ""), "x" * 40)

    assert s3_error(unknown.list_buckets) == ("InvalidAccessKeyId", 403)
    assert s3_error(unknown.get_object, Bucket=private_bucket, Key="secret.txt") == (
        "InvalidAccessKeyId",
        403,
    )


def test_credentials_of_a_deleted_key_stop_working(
    cloud: Cloud, endpoint: str, owner: Tenant
) -> None:
    access, secret = cloud.ec2_credentials(owner)
    client = client_with(endpoint, access, secret)
    assert client.list_buckets()["Buckets"] is not None

    response = cloud.http(
        "DELETE",
        f"/v3/users/{owner.user_id}/credentials/OS-EC2/{access}",
        token=cloud.token_for(owner),
    )
    assert response.status_code == 204, response.text

    assert s3_error(client.list_buckets) == ("InvalidAccessKeyId", 403)


def test_object_writes_and_refusals_are_audited_without_secrets(cloud: Cloud) -> None:
    owner = cloud.make_tenant("s3-audit")
    s3 = cloud.s3(owner)
    bucket = new_bucket(s3, "audited")
    s3.put_object(Bucket=bucket, Key="ledger.csv", Body=b"1,2,3")
    intruder = cloud.s3(cloud.make_tenant("s3-audit-intruder"))
    assert s3_error(intruder.delete_object, Bucket=bucket, Key="ledger.csv") == (
        "AccessDenied",
        403,
    )

    def lines_for_bucket() -> list[dict[str, object]]:
        text = (cloud.data_dir / "audit.log").read_text()
        found = [json.loads(line) for line in text.splitlines()]
        return [r for r in found if (r.get("target") or {}).get("bucket") == bucket]  # type: ignore[union-attr]

    deadline = time.monotonic() + 5
    while len(lines_for_bucket()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    created, put, refused = lines_for_bucket()[:3]
    assert created["action"] == "s3:PUT" and created["outcome"] == "success"
    assert put["target"] == {"bucket": bucket, "key": "ledger.csv"}
    assert put["initiator"]["project_id"] == owner.project_id  # type: ignore[index]
    assert put["status"] == 200
    assert refused["action"] == "s3:DELETE"
    assert (refused["outcome"], refused["status"]) == ("failure", 403)
    cloud.assert_no_secret_in(cloud.data_dir / "audit.log")
