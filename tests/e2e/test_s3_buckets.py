"""boto3 against the real S3 port: buckets, their names, region, tags and what is not offered."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import REGION, Cloud, Tenant, unique
from tests.e2e.s3_support import error_document, new_bucket, s3_error

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def owner(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3buckets")


@pytest.fixture(scope="module")
def s3(cloud: Cloud, owner: Tenant) -> Any:
    return cloud.s3(owner)


@pytest.fixture(scope="module")
def stranger_s3(cloud: Cloud) -> Any:
    return cloud.s3(cloud.make_tenant("s3buckets-other"))


def test_list_buckets_shows_the_projects_buckets_in_name_order(s3: Any, owner: Tenant) -> None:
    made = sorted(new_bucket(s3, label) for label in ("lb-zeta", "lb-alpha", "lb-mid"))

    listed = s3.list_buckets()

    names = [b["Name"] for b in listed["Buckets"]]
    assert names == sorted(names)
    assert set(made) <= set(names)
    assert all(b["CreationDate"] for b in listed["Buckets"])
    assert listed["Owner"]["ID"] == owner.project_id


def test_bucket_is_created_answered_on_head_and_deleted(s3: Any) -> None:
    name = unique("lifecycle")

    created = s3.create_bucket(Bucket=name)
    head = s3.head_bucket(Bucket=name)
    deleted = s3.delete_bucket(Bucket=name)

    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert created["Location"] == f"/{name}"
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == REGION
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3_error(s3.head_bucket, Bucket=name) == ("404", 404)
    assert s3_error(s3.delete_bucket, Bucket=name) == ("NoSuchBucket", 404)
    assert s3_error(s3.list_objects_v2, Bucket=name) == ("NoSuchBucket", 404)


def test_bucket_holding_an_object_is_not_deleted(s3: Any) -> None:
    name = new_bucket(s3, "notempty")
    s3.put_object(Bucket=name, Key="keep/me", Body=b"x")

    assert s3_error(s3.delete_bucket, Bucket=name) == ("BucketNotEmpty", 409)
    assert s3.get_object(Bucket=name, Key="keep/me")["Body"].read() == b"x"

    s3.delete_object(Bucket=name, Key="keep/me")
    s3.delete_bucket(Bucket=name)
    assert name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_creating_a_bucket_the_project_owns_says_already_owned_by_you(s3: Any) -> None:
    name = new_bucket(s3, "owned")

    assert s3_error(s3.create_bucket, Bucket=name) == ("BucketAlreadyOwnedByYou", 409)


def test_creating_a_bucket_another_project_owns_says_already_exists(
    s3: Any, stranger_s3: Any
) -> None:
    name = new_bucket(s3, "taken")

    assert s3_error(stranger_s3.create_bucket, Bucket=name) == ("BucketAlreadyExists", 409)
    assert name not in {b["Name"] for b in stranger_s3.list_buckets()["Buckets"]}


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "x" * 64,  # too long
        "Upper-Case-Bucket",
        "under_score",
        "-starts-with-hyphen",
        "ends-with-hyphen-",
        "two..dots",
        "dot.-hyphen",
        "192.168.10.20",
        "xn--punycode-prefix",
    ],
)
def test_bucket_names_s3_forbids_are_refused_as_invalid(s3: Any, name: str) -> None:
    assert s3_error(s3.create_bucket, Bucket=name) == ("InvalidBucketName", 400)


def test_bucket_location_is_the_clouds_region(s3: Any) -> None:
    implicit = new_bucket(s3, "where")
    explicit = new_bucket(s3, "where-fr", CreateBucketConfiguration={"LocationConstraint": REGION})

    for name in (implicit, explicit):
        assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == REGION


def test_bucket_in_another_region_is_refused_and_not_created(s3: Any) -> None:
    name = unique("elsewhere")

    code = s3_error(
        s3.create_bucket,
        Bucket=name,
        CreateBucketConfiguration={"LocationConstraint": "eu-west-3"},
    )

    assert code == ("IllegalLocationConstraintException", 400)
    assert s3_error(s3.head_bucket, Bucket=name) == ("404", 404)
    assert name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_bucket_tags_are_stored_replaced_and_removed(s3: Any) -> None:
    name = new_bucket(s3, "tagged")
    assert s3_error(s3.get_bucket_tagging, Bucket=name) == ("NoSuchTagSet", 404)

    s3.put_bucket_tagging(
        Bucket=name,
        Tagging={"TagSet": [{"Key": "team", "Value": "storage"}, {"Key": "env", "Value": "e2e"}]},
    )
    tags = s3.get_bucket_tagging(Bucket=name)["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "e2e"), ("team", "storage")]

    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
    assert s3.get_bucket_tagging(Bucket=name)["TagSet"] == [{"Key": "only", "Value": "one"}]

    s3.delete_bucket_tagging(Bucket=name)
    assert s3_error(s3.get_bucket_tagging, Bucket=name) == ("NoSuchTagSet", 404)


def test_buckets_take_up_to_fifty_tags(s3: Any) -> None:
    name = new_bucket(s3, "many-tags")
    fifty = [{"Key": f"k{i:02d}", "Value": str(i)} for i in range(50)]
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": fifty})
    assert len(s3.get_bucket_tagging(Bucket=name)["TagSet"]) == 50
    too_many = [*fifty, {"Key": "k50", "Value": "50"}]
    assert s3_error(s3.put_bucket_tagging, Bucket=name, Tagging={"TagSet": too_many}) == (
        "InvalidTag",
        400,
    )
    assert len(s3.get_bucket_tagging(Bucket=name)["TagSet"]) == 50


def test_bucket_versioning_starts_unset_and_follows_the_configuration(s3: Any) -> None:
    name = new_bucket(s3, "versioning-conf")
    assert "Status" not in s3.get_bucket_versioning(Bucket=name)

    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"

    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Suspended"


UNSUPPORTED_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_bucket_website", {}),
    (
        "put_bucket_website",
        {"WebsiteConfiguration": {"IndexDocument": {"Suffix": "index.html"}}},
    ),
    ("get_bucket_logging", {}),
    ("get_bucket_notification_configuration", {}),
    ("get_bucket_replication", {}),
    ("restore_object", {"Key": "k", "RestoreRequest": {"Days": 1}}),
]


@pytest.mark.parametrize(("operation", "params"), UNSUPPORTED_CALLS)
def test_unsupported_operations_answer_not_implemented(
    s3: Any, operation: str, params: dict[str, Any]
) -> None:
    name = new_bucket(s3, "unsupported")

    assert s3_error(getattr(s3, operation), Bucket=name, **params) == ("NotImplemented", 501)


def test_not_implemented_is_an_s3_xml_error_document(cloud: Cloud, s3: Any) -> None:
    name = new_bucket(s3, "unsupported-raw")

    response = httpx.get(f"{cloud.s3_url}/{name}?website", timeout=30)

    assert response.status_code == 501
    error = error_document(response)
    assert error["Code"] == "NotImplemented"
    assert error["RequestId"] == response.headers["x-amz-request-id"]


def test_every_answer_carries_a_distinct_request_id(s3: Any) -> None:
    name = new_bucket(s3, "request-ids")
    etag = s3.put_object(Bucket=name, Key="k", Body=b"v")["ETag"]

    answers = [
        s3.list_buckets(),
        s3.head_bucket(Bucket=name),
        s3.head_object(Bucket=name, Key="k"),
        s3.get_object(Bucket=name, Key="k"),
    ]
    for operation, params in [
        (s3.get_object, {"Key": "k", "IfNoneMatch": etag}),  # 304
        (s3.head_object, {"Key": "missing"}),  # 404 without a body
        (s3.get_object, {"Key": "missing"}),  # 404 with an XML body
    ]:
        with pytest.raises(ClientError) as refused:
            operation(Bucket=name, **params)
        answers.append(refused.value.response)
    answers.append(s3.delete_object(Bucket=name, Key="k"))  # 204

    ids = [a["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id") for a in answers]
    assert all(ids), ids
    assert len(set(ids)) == len(ids)
    assert [a["ResponseMetadata"]["RequestId"] for a in answers] == ids


def test_error_bodies_name_code_message_resource_and_request_id(cloud: Cloud, s3: Any) -> None:
    name = new_bucket(s3, "raw-error")
    missing_key = s3.generate_presigned_url(
        "get_object", Params={"Bucket": name, "Key": "no/such object"}, ExpiresIn=60
    )

    denied = httpx.get(f"{cloud.s3_url}/{name}/private", timeout=30)  # anonymous
    not_found = httpx.get(missing_key, timeout=30)
    no_bucket = httpx.get(f"{cloud.s3_url}/{unique('never-made')}/key", timeout=30)

    for response, status, code in [
        (denied, 403, "AccessDenied"),
        (not_found, 404, "NoSuchKey"),
        (no_bucket, 404, "NoSuchBucket"),
    ]:
        assert response.status_code == status
        error = error_document(response)
        assert error["Code"] == code
        assert error["Message"]
        assert "Resource" in error
        assert error["RequestId"] == response.headers["x-amz-request-id"]
    assert error_document(not_found)["Resource"] == f"/{name}/no/such object"
