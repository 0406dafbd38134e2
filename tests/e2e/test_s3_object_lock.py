"""Object Lock (WORM) through boto3 on the real S3 port: retention and legal holds keep
versions from deletion, COMPLIANCE against everyone, GOVERNANCE against all but a
project admin (or a principal the bucket policy names) who asks to bypass it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.e2e.conftest import REGION, Cloud, Tenant, unique
from tests.e2e.s3_support import anonymous_s3, md5_b64, new_bucket, s3_error

pytestmark = pytest.mark.e2e

DATA = b"a backup pack that must survive ransomware"


def colleague(cloud: Cloud, owner: Tenant, role: str) -> Tenant:
    """Another user of the owner's project, holding `role` there."""
    name = unique(f"lock-{role}")
    password = f"pw-{uuid.uuid4().hex}"
    cloud.secrets.add(password)
    admin = cloud.admin
    user = admin.identity.create_user(
        name=f"{name}-user", password=password, default_project_id=owner.project_id
    )
    found = admin.identity.find_role(role, ignore_missing=False)
    admin.identity.assign_project_role_to_user(owner.project_id, user, found)
    return Tenant(name, owner.project_id, owner.project_name, user.id, user.name, password)


@pytest.fixture(scope="module")
def owner(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3lock")


@pytest.fixture(scope="module")
def s3(cloud: Cloud, owner: Tenant) -> Any:
    return cloud.s3(owner)


@pytest.fixture(scope="module")
def admin_s3(cloud: Cloud, owner: Tenant) -> Any:
    return cloud.s3(colleague(cloud, owner, "admin"))


@pytest.fixture(scope="module")
def reader_s3(cloud: Cloud, owner: Tenant) -> Any:
    """A reader may not make EC2 keys for itself: the cloud admin makes them."""
    reader = colleague(cloud, owner, "reader")
    response = cloud.http(
        "POST",
        f"/v3/users/{reader.user_id}/credentials/OS-EC2",
        token=cloud.admin_token(),
        json={"tenant_id": owner.project_id},
    )
    assert response.status_code == 201, response.text
    cred = response.json()["credential"]
    cloud.secrets.add(cred["secret"])
    return boto3.client(
        "s3",
        endpoint_url=cloud.s3_url,
        aws_access_key_id=cred["access"],
        aws_secret_access_key=cred["secret"],
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def stranger_s3(cloud: Cloud) -> Any:
    return cloud.s3(cloud.make_tenant("s3lock-stranger"))


@pytest.fixture(scope="module")
def locked(s3: Any) -> str:
    return new_bucket(s3, "worm", ObjectLockEnabledForBucket=True)


def later(**delta: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(**delta)


def put_locked(s3: Any, bucket: str, mode: str | None = None, **params: Any) -> tuple[str, str]:
    """A new version, under `mode` retention for an hour when given: (key, version id)."""
    key = unique("pack")
    if mode is not None:
        params.update(ObjectLockMode=mode, ObjectLockRetainUntilDate=later(hours=1))
    version = s3.put_object(Bucket=bucket, Key=key, Body=DATA, **params)["VersionId"]
    return key, version


def still_there(s3: Any, bucket: str, key: str, version: str) -> bool:
    return bool(s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read() == DATA)


# ---------------------------------------------------------------------- the bucket


def test_a_bucket_made_with_object_lock_is_versioned_for_good(s3: Any, locked: str) -> None:
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    configuration = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert configuration == {"ObjectLockEnabled": "Enabled"}

    code = s3_error(
        s3.put_bucket_versioning,
        Bucket=locked,
        VersioningConfiguration={"Status": "Suspended"},
    )

    assert code == ("InvalidBucketState", 409)
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"


def test_a_bucket_without_object_lock_says_so(s3: Any) -> None:
    plain = new_bucket(s3, "no-worm")
    s3.put_object(Bucket=plain, Key="k", Body=DATA)

    assert s3_error(s3.get_object_lock_configuration, Bucket=plain) == (
        "ObjectLockConfigurationNotFoundError",
        404,
    )
    assert s3_error(s3.get_object_retention, Bucket=plain, Key="k") == ("InvalidRequest", 400)
    assert s3_error(s3.get_object_legal_hold, Bucket=plain, Key="k") == ("InvalidRequest", 400)
    assert s3_error(
        s3.put_object_legal_hold, Bucket=plain, Key="k", LegalHold={"Status": "ON"}
    ) == ("InvalidRequest", 400)


def test_object_lock_needs_versioning_on_an_existing_bucket(s3: Any) -> None:
    name = new_bucket(s3, "late-worm")
    configuration = {"ObjectLockEnabled": "Enabled"}

    code = s3_error(
        s3.put_object_lock_configuration, Bucket=name, ObjectLockConfiguration=configuration
    )
    assert code == ("InvalidBucketState", 409)
    assert s3_error(s3.get_object_lock_configuration, Bucket=name)[1] == 404

    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=configuration)
    assert s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"] == (
        configuration
    )


def test_default_retention_protects_every_new_version(s3: Any) -> None:
    bucket = new_bucket(s3, "worm-default", ObjectLockEnabledForBucket=True)
    rule = {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}
    s3.put_object_lock_configuration(
        Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
    )
    got = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert got == {"ObjectLockEnabled": "Enabled", "Rule": rule}

    before = dt.datetime.now(dt.UTC)
    key, version = put_locked(s3, bucket)

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert before + dt.timedelta(days=2) - dt.timedelta(seconds=5) < until
    assert until < dt.datetime.now(dt.UTC) + dt.timedelta(days=2, seconds=5)
    retention = s3.get_object_retention(Bucket=bucket, Key=key)["Retention"]
    assert retention == {"Mode": "GOVERNANCE", "RetainUntilDate": until}
    assert s3_error(s3.delete_object, Bucket=bucket, Key=key, VersionId=version) == (
        "AccessDenied",
        403,
    )
    assert still_there(s3, bucket, key, version)


@pytest.mark.parametrize(
    "rule",
    [
        {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}},
        {"DefaultRetention": {"Mode": "FOREVER", "Days": 1}},
        {"DefaultRetention": {"Mode": "GOVERNANCE"}},
        {},
    ],
)
def test_a_malformed_default_rule_is_refused(s3: Any, locked: str, rule: dict[str, Any]) -> None:
    code = s3_error(
        s3.put_object_lock_configuration,
        Bucket=locked,
        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule},
    )

    assert code == ("MalformedXML", 400)
    assert "Rule" not in s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]


@pytest.mark.parametrize("days", [0, -1, 36_501])
def test_a_default_period_out_of_range_is_refused(s3: Any, locked: str, days: int) -> None:
    rule = {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}}

    code = s3_error(
        s3.put_object_lock_configuration,
        Bucket=locked,
        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule},
    )

    assert code == ("InvalidArgument", 400)


# ---------------------------------------------------------------------- COMPLIANCE


def test_a_compliance_version_cannot_be_deleted_by_anyone(
    s3: Any, admin_s3: Any, locked: str
) -> None:
    key, version = put_locked(s3, locked, "COMPLIANCE")

    for client in (s3, admin_s3):
        assert s3_error(
            client.delete_object,
            Bucket=locked,
            Key=key,
            VersionId=version,
            BypassGovernanceRetention=True,
        ) == ("AccessDenied", 403)
    batch = admin_s3.delete_objects(
        Bucket=locked,
        Delete={"Objects": [{"Key": key, "VersionId": version}]},
        BypassGovernanceRetention=True,
    )
    assert [e["Code"] for e in batch["Errors"]] == ["AccessDenied"]
    assert "Deleted" not in batch

    # a delete without a version id only stacks a delete marker on top
    marker = s3.delete_object(Bucket=locked, Key=key)
    assert marker["DeleteMarker"] is True
    assert still_there(s3, locked, key, version)


def test_compliance_retention_can_be_extended_but_never_shortened(
    s3: Any, admin_s3: Any, locked: str
) -> None:
    key, version = put_locked(s3, locked, "COMPLIANCE")
    longer = later(days=3)

    s3.put_object_retention(
        Bucket=locked, Key=key, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": longer}
    )
    assert s3.get_object_retention(Bucket=locked, Key=key)["Retention"]["RetainUntilDate"] == (
        longer
    )

    for retention in (
        {"Mode": "COMPLIANCE", "RetainUntilDate": later(days=1)},
        {"Mode": "GOVERNANCE", "RetainUntilDate": later(days=5)},
        {},
    ):
        assert s3_error(
            admin_s3.put_object_retention,
            Bucket=locked,
            Key=key,
            Retention=retention,
            BypassGovernanceRetention=True,
        ) == ("AccessDenied", 403)
    assert s3.head_object(Bucket=locked, Key=key)["ObjectLockRetainUntilDate"] == longer
    assert still_there(s3, locked, key, version)


# ---------------------------------------------------------------------- GOVERNANCE


def test_governance_gives_way_only_to_an_admin_who_asks(
    s3: Any, admin_s3: Any, locked: str
) -> None:
    key, version = put_locked(s3, locked, "GOVERNANCE")

    # a member may not bypass, even asking; an admin who does not ask is refused too
    assert s3_error(
        s3.delete_object,
        Bucket=locked,
        Key=key,
        VersionId=version,
        BypassGovernanceRetention=True,
    ) == ("AccessDenied", 403)
    assert s3_error(admin_s3.delete_object, Bucket=locked, Key=key, VersionId=version) == (
        "AccessDenied",
        403,
    )
    assert s3_error(
        s3.put_object_retention,
        Bucket=locked,
        Key=key,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later(minutes=5)},
        BypassGovernanceRetention=True,
    ) == ("AccessDenied", 403)
    assert still_there(s3, locked, key, version)

    admin_s3.delete_object(
        Bucket=locked, Key=key, VersionId=version, BypassGovernanceRetention=True
    )
    assert s3_error(s3.head_object, Bucket=locked, Key=key, VersionId=version)[1] == 404


def test_an_admin_may_shorten_governance_retention_when_asking(
    s3: Any, admin_s3: Any, locked: str
) -> None:
    key, _ = put_locked(s3, locked, "GOVERNANCE")
    shorter = later(minutes=5)

    admin_s3.put_object_retention(
        Bucket=locked,
        Key=key,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": shorter},
        BypassGovernanceRetention=True,
    )

    assert s3.get_object_retention(Bucket=locked, Key=key)["Retention"]["RetainUntilDate"] == (
        shorter
    )
    # and anyone who may write may make it stricter: COMPLIANCE, for longer
    s3.put_object_retention(
        Bucket=locked, Key=key, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later(hours=2)}
    )
    assert s3.head_object(Bucket=locked, Key=key)["ObjectLockMode"] == "COMPLIANCE"


def test_the_bucket_policy_can_grant_the_governance_bypass(
    cloud: Cloud, owner: Tenant, s3: Any
) -> None:
    bucket = new_bucket(s3, "worm-policy", ObjectLockEnabledForBucket=True)
    key, version = put_locked(s3, bucket, "GOVERNANCE")
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{owner.project_id}:user/{owner.user_id}"},
        "Action": "s3:BypassGovernanceRetention",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    )

    s3.delete_object(Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)

    assert s3_error(s3.head_object, Bucket=bucket, Key=key, VersionId=version)[1] == 404


# ---------------------------------------------------------------------- legal hold


def test_a_legal_hold_blocks_deletion_until_released(s3: Any, admin_s3: Any, locked: str) -> None:
    key, version = put_locked(s3, locked, ObjectLockLegalHoldStatus="ON")
    assert s3.get_object_legal_hold(Bucket=locked, Key=key)["LegalHold"] == {"Status": "ON"}
    assert s3.head_object(Bucket=locked, Key=key)["ObjectLockLegalHoldStatus"] == "ON"

    assert s3_error(
        admin_s3.delete_object,
        Bucket=locked,
        Key=key,
        VersionId=version,
        BypassGovernanceRetention=True,
    ) == ("AccessDenied", 403)

    s3.put_object_legal_hold(Bucket=locked, Key=key, VersionId=version, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=locked, Key=key)["LegalHold"] == {"Status": "OFF"}
    s3.delete_object(Bucket=locked, Key=key, VersionId=version)
    assert s3_error(s3.head_object, Bucket=locked, Key=key, VersionId=version)[1] == 404


def test_a_version_never_locked_has_no_lock_to_show(s3: Any, locked: str) -> None:
    key, version = put_locked(s3, locked)

    assert s3_error(s3.get_object_retention, Bucket=locked, Key=key) == (
        "NoSuchObjectLockConfiguration",
        404,
    )
    assert s3_error(s3.get_object_legal_hold, Bucket=locked, Key=key) == (
        "NoSuchObjectLockConfiguration",
        404,
    )
    head = s3.head_object(Bucket=locked, Key=key)
    assert "ObjectLockMode" not in head and "ObjectLockLegalHoldStatus" not in head
    s3.delete_object(Bucket=locked, Key=key, VersionId=version)


# ---------------------------------------------------------------------- writes with locks


def test_lock_headers_need_a_content_md5_or_checksum(
    cloud: Cloud, owner: Tenant, locked: str
) -> None:
    bare = cloud.s3(owner, request_checksum_calculation="when_required")
    key = unique("no-digest")
    lock = {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": later(hours=1)}

    assert s3_error(bare.put_object, Bucket=locked, Key=key, Body=DATA, **lock) == (
        "InvalidRequest",
        400,
    )
    assert s3_error(bare.head_object, Bucket=locked, Key=key)[1] == 404

    bare.put_object(Bucket=locked, Key=key, Body=DATA, ContentMD5=md5_b64(DATA), **lock)
    assert bare.head_object(Bucket=locked, Key=key)["ObjectLockMode"] == "GOVERNANCE"


@pytest.mark.parametrize(
    "lock",
    [
        {"ObjectLockMode": "GOVERNANCE"},
        {"ObjectLockRetainUntilDate": dt.datetime(2040, 1, 1)},
        {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": dt.datetime(2001, 1, 1)},
        {"ObjectLockMode": "FOREVER", "ObjectLockRetainUntilDate": dt.datetime(2040, 1, 1)},
        {"ObjectLockLegalHoldStatus": "MAYBE"},
    ],
)
def test_a_bad_lock_on_a_write_stores_nothing(s3: Any, locked: str, lock: dict[str, Any]) -> None:
    key = unique("badlock")

    assert s3_error(s3.put_object, Bucket=locked, Key=key, Body=DATA, **lock) == (
        "InvalidArgument",
        400,
    )
    assert s3_error(s3.head_object, Bucket=locked, Key=key)[1] == 404
    assert "Versions" not in s3.list_object_versions(Bucket=locked, Prefix=key)


def test_copies_and_multipart_uploads_carry_the_retention_asked_for(s3: Any, locked: str) -> None:
    source, _ = put_locked(s3, locked)
    until = later(hours=3)
    lock = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}

    copy = unique("copy")
    s3.copy_object(Bucket=locked, Key=copy, CopySource={"Bucket": locked, "Key": source}, **lock)
    head = s3.head_object(Bucket=locked, Key=copy)
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("COMPLIANCE", until)

    joined = unique("joined")
    upload = s3.create_multipart_upload(
        Bucket=locked, Key=joined, ObjectLockLegalHoldStatus="ON", **lock
    )["UploadId"]
    etag = s3.upload_part(Bucket=locked, Key=joined, UploadId=upload, PartNumber=1, Body=DATA)[
        "ETag"
    ]
    version = s3.complete_multipart_upload(
        Bucket=locked,
        Key=joined,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )["VersionId"]
    head = s3.head_object(Bucket=locked, Key=joined)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    assert s3_error(s3.delete_object, Bucket=locked, Key=joined, VersionId=version)[1] == 403


# ---------------------------------------------------------------------- who may


def test_another_project_can_neither_see_nor_change_locks(
    s3: Any, stranger_s3: Any, locked: str
) -> None:
    key, version = put_locked(s3, locked, "GOVERNANCE")
    retention = {"Mode": "GOVERNANCE", "RetainUntilDate": later(minutes=1)}

    attempts = [
        (stranger_s3.get_object_lock_configuration, {}),
        (
            stranger_s3.put_object_lock_configuration,
            {"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}},
        ),
        (stranger_s3.get_object_retention, {"Key": key}),
        (stranger_s3.put_object_retention, {"Key": key, "Retention": retention}),
        (stranger_s3.get_object_legal_hold, {"Key": key}),
        (stranger_s3.put_object_legal_hold, {"Key": key, "LegalHold": {"Status": "OFF"}}),
        (
            stranger_s3.delete_object,
            {"Key": key, "VersionId": version, "BypassGovernanceRetention": True},
        ),
    ]
    for operation, params in attempts:
        assert s3_error(operation, Bucket=locked, **params) == ("AccessDenied", 403), operation
    assert s3.get_object_retention(Bucket=locked, Key=key)["Retention"]["Mode"] == "GOVERNANCE"
    assert still_there(s3, locked, key, version)


def test_a_reader_sees_locks_but_cannot_change_them(s3: Any, reader_s3: Any, locked: str) -> None:
    key, version = put_locked(s3, locked, "GOVERNANCE", ObjectLockLegalHoldStatus="ON")

    assert reader_s3.get_object_retention(Bucket=locked, Key=key)["Retention"]["Mode"] == (
        "GOVERNANCE"
    )
    assert reader_s3.get_object_legal_hold(Bucket=locked, Key=key)["LegalHold"]["Status"] == "ON"
    assert s3_error(
        reader_s3.put_object_legal_hold,
        Bucket=locked,
        Key=key,
        LegalHold={"Status": "OFF"},
    ) == ("AccessDenied", 403)
    assert s3_error(
        reader_s3.put_object_retention,
        Bucket=locked,
        Key=key,
        Retention={},
        BypassGovernanceRetention=True,
    ) == ("AccessDenied", 403)
    assert s3_error(
        reader_s3.put_object,
        Bucket=locked,
        Key=unique("r"),
        Body=DATA,
        ObjectLockLegalHoldStatus="ON",
    ) == ("AccessDenied", 403)
    assert s3.get_object_legal_hold(Bucket=locked, Key=key)["LegalHold"]["Status"] == "ON"
    assert still_there(s3, locked, key, version)


def test_parts_of_a_locked_upload_need_a_digest(cloud: Cloud, owner: Tenant, locked: str) -> None:
    bare = cloud.s3(owner, request_checksum_calculation="when_required")
    key = unique("locked-parts")
    upload = bare.create_multipart_upload(
        Bucket=locked,
        Key=key,
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=later(hours=1),
    )["UploadId"]
    part = {"Bucket": locked, "Key": key, "UploadId": upload, "PartNumber": 1, "Body": DATA}

    assert s3_error(bare.upload_part, **part) == ("InvalidRequest", 400)
    etag = bare.upload_part(**part, ContentMD5=md5_b64(DATA))["ETag"]
    bare.complete_multipart_upload(
        Bucket=locked,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert bare.head_object(Bucket=locked, Key=key)["ObjectLockMode"] == "GOVERNANCE"


def test_a_public_reader_does_not_learn_the_lock(cloud: Cloud, s3: Any, locked: str) -> None:
    key, _ = put_locked(s3, locked, "COMPLIANCE", ACL="public-read", ObjectLockLegalHoldStatus="ON")
    anonymous = anonymous_s3(cloud.s3_url)

    public = anonymous.head_object(Bucket=locked, Key=key)
    owned = s3.head_object(Bucket=locked, Key=key)

    assert not [name for name in public if name.startswith("ObjectLock")]
    assert (owned["ObjectLockMode"], owned["ObjectLockLegalHoldStatus"]) == ("COMPLIANCE", "ON")
