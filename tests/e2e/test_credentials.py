"""Application credentials and EC2 credentials, made and used with the `openstack` CLI."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.e2e.conftest import REGION, Cloud, Tenant, unique
from tests.e2e.s3_support import new_bucket, s3_error

pytestmark = pytest.mark.e2e


def app_cred_flags(cloud: Cloud, cred_id: str, secret: str) -> list[str]:
    return [
        "--os-auth-type",
        "v3applicationcredential",
        "--os-auth-url",
        cloud.auth_url,
        "--os-application-credential-id",
        cred_id,
        "--os-application-credential-secret",
        secret,
    ]


def app_cred_login(cloud: Cloud, cred_id: str, secret: str) -> httpx.Response:
    auth = {
        "identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": cred_id, "secret": secret},
        }
    }
    return cloud.http("POST", "/v3/auth/tokens", json={"auth": auth})


def create_app_cred(cloud: Cloud, tenant: Tenant, *roles: str) -> dict[str, Any]:
    """Through the CLI, as the tenant's user; the secret is remembered as one."""
    role_args = [arg for role in roles for arg in ("--role", role)]
    cred: dict[str, Any] = cloud.cli_json(
        "application", "credential", "create", unique("cred"), *role_args, cloud=tenant.cloud_name
    )
    cloud.secrets.add(cred["Secret"])
    return cred


def token_roles(cloud: Cloud, token: str) -> set[str]:
    validated = cloud.validate(token)
    assert validated.status_code == 200, validated.text
    return {role["name"] for role in validated.json()["token"]["roles"]}


def test_application_credential_authenticates_with_v3applicationcredential(
    cloud: Cloud,
) -> None:
    tenant = cloud.make_tenant("appcred")
    cred = create_app_cred(cloud, tenant)
    assert cred["Project ID"] == tenant.project_id
    assert cred["Unrestricted"] is False
    assert cred["Secret"]

    issued = cloud.cli_json(
        *app_cred_flags(cloud, cred["ID"], cred["Secret"]), "token", "issue", cloud=None
    )
    assert issued["project_id"] == tenant.project_id
    assert issued["user_id"] == tenant.user_id
    response = cloud.validate(issued["id"])
    assert response.status_code == 200, response.text
    validated = response.json()["token"]
    assert validated["methods"] == ["application_credential"]
    assert validated["application_credential"]["id"] == cred["ID"]

    wrong = cloud.cli_fails(
        *app_cred_flags(cloud, cred["ID"], "not-the-secret"), "token", "issue", cloud=None
    )
    assert "HTTP 401" in wrong

    # Deleting the credential ends both new logins and the tokens it gave.
    owner = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    owner.identity.delete_application_credential(tenant.user_id, cred["ID"])
    assert app_cred_login(cloud, cred["ID"], cred["Secret"]).status_code == 401
    assert cloud.token_status(issued["id"]) == 401


def test_restricted_application_credential_sees_only_its_delegated_roles(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("restricted")
    extra_role = cloud.admin.identity.create_role(name=unique("auditor"))
    cloud.admin.identity.assign_project_role_to_user(tenant.project_id, tenant.user_id, extra_role)

    full = create_app_cred(cloud, tenant)
    reader_only = create_app_cred(cloud, tenant, "reader")
    extra_only = create_app_cred(cloud, tenant, extra_role.name)
    assert [r["name"] for r in reader_only["Roles"]] == ["reader"]
    assert [r["name"] for r in extra_only["Roles"]] == [extra_role.name]

    def login(cred: dict[str, Any]) -> str:
        response = app_cred_login(cloud, cred["ID"], cred["Secret"])
        assert response.status_code == 201, response.text
        return response.headers["X-Subject-Token"]

    assert token_roles(cloud, login(full)) == {"member", "reader", extra_role.name}
    assert token_roles(cloud, login(reader_only)) == {"reader"}
    assert token_roles(cloud, login(extra_only)) == {extra_role.name}

    reader_flags = app_cred_flags(cloud, reader_only["ID"], reader_only["Secret"])
    users = cloud.cli_json(*reader_flags, "user", "list", cloud=None)
    assert tenant.user_id in {u["ID"] for u in users}
    refused = cloud.cli_fails(*reader_flags, "ec2", "credentials", "create", cloud=None)
    assert "HTTP 403" in refused

    # Only reader was delegated: no member rights, and no new credentials from it.
    reader_token = login(reader_only)
    response = cloud.http(
        "POST",
        f"/v3/users/{tenant.user_id}/application_credentials",
        token=reader_token,
        json={"application_credential": {"name": unique("child")}},
    )
    assert response.status_code == 403
    response = cloud.http("GET", "/v3/users", token=login(extra_only))
    assert response.status_code == 403


def test_ec2_credentials_are_created_listed_and_invisible_to_another_user(
    cloud: Cloud,
) -> None:
    owner, other = cloud.make_tenant("ec2-owner"), cloud.make_tenant("ec2-other")

    created = cloud.cli_json("ec2", "credentials", "create", cloud=owner.cloud_name)
    access, secret = created["access"], created["secret"]
    cloud.secrets.add(secret)
    assert access and secret and access != secret
    assert created["project_id"] == owner.project_id
    assert created["user_id"] == owner.user_id

    listed = cloud.cli_json("ec2", "credentials", "list", cloud=owner.cloud_name)
    assert {(row["Access"], row["Secret"]) for row in listed} == {(access, secret)}

    seen_by_other = cloud.cli_json("ec2", "credentials", "list", cloud=other.cloud_name)
    assert access not in {row["Access"] for row in seen_by_other}
    other_token = cloud.token_for(other)
    base = f"/v3/users/{owner.user_id}/credentials/OS-EC2"
    assert cloud.http("GET", base, token=other_token).status_code == 404
    assert cloud.http("GET", f"{base}/{access}", token=other_token).status_code == 404
    assert cloud.http("DELETE", f"{base}/{access}", token=other_token).status_code == 404
    credential_id = hashlib.sha256(access.encode()).hexdigest()
    response = cloud.http("GET", f"/v3/credentials/{credential_id}", token=other_token)
    assert response.status_code == 404
    listed_by_other = cloud.http("GET", "/v3/credentials", token=other_token).json()
    assert secret not in str(listed_by_other)

    # It is there all along: the owner and the admin still see it.
    assert cloud.http("GET", f"{base}/{access}", token=cloud.token_for(owner)).status_code == 200
    admin_view = cloud.cli_json("ec2", "credentials", "list", "--user", owner.user_id)
    assert access in {row["Access"] for row in admin_view}


def s3_with(cloud: Cloud, access: str, secret: str) -> Any:
    """A boto3 client signing with this EC2 key, configured as a customer would."""
    return boto3.client(
        "s3",
        endpoint_url=cloud.s3_url,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_ec2_keys_of_an_application_credential_carry_its_roles_and_go_with_it(
    cloud: Cloud,
) -> None:
    tenant = cloud.make_tenant("ec2-appcred")
    own = cloud.s3(tenant)
    bucket = new_bucket(own, "appcred")
    own.put_object(Bucket=bucket, Key="report", Body=b"figures")

    # A key made through the CLI with the application credential is its own: listed
    # through it alone, and gone with it.
    full = create_app_cred(cloud, tenant)
    flags = app_cred_flags(cloud, full["ID"], full["Secret"])
    made = cloud.cli_json(*flags, "ec2", "credentials", "create", cloud=None)
    cloud.secrets.add(made["secret"])
    seen = cloud.cli_json(*flags, "ec2", "credentials", "list", cloud=None)
    assert [row["Access"] for row in seen] == [made["access"]]
    through_cred = s3_with(cloud, made["access"], made["secret"])
    through_cred.put_object(Bucket=bucket, Key="by-cred", Body=b"made")

    # A key bound to a reader-only credential reads and cannot write.
    reader_only = create_app_cred(cloud, tenant, "reader")
    access, secret = unique("AKIA"), unique("secret")
    cloud.secrets.add(secret)
    blob = json.dumps({"access": access, "secret": secret, "app_cred_id": reader_only["ID"]})
    cloud.cli_json(
        "credential", "create", "--type", "ec2", "--project", tenant.project_id,
        tenant.user_id, blob, cloud=tenant.cloud_name,
    )  # fmt: skip
    reading = s3_with(cloud, access, secret)
    assert reading.get_object(Bucket=bucket, Key="report")["Body"].read() == b"figures"
    code, status = s3_error(reading.put_object, Bucket=bucket, Key="report", Body=b"no")
    assert (code, status) == ("AccessDenied", 403)

    owner = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    owner.identity.delete_application_credential(tenant.user_id, full["ID"])
    code, status = s3_error(through_cred.get_object, Bucket=bucket, Key="report")
    assert (code, status) == ("InvalidAccessKeyId", 403)
    listed = cloud.cli_json("ec2", "credentials", "list", cloud=tenant.cloud_name)
    assert made["access"] not in {row["Access"] for row in listed}
    assert own.get_object(Bucket=bucket, Key="by-cred")["Body"].read() == b"made"
