"""Customers are walled off: another project's people and keys look like they do not exist."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Cloud, Tenant, unique

pytestmark = pytest.mark.e2e


def give_b_things_to_hide(cloud: Cloud, b: Tenant) -> dict[str, str]:
    token = cloud.token_for(b)
    blob_secret = f"totp-{unique('seed')}"
    cloud.secrets.add(blob_secret)
    credential = cloud.http(
        "POST",
        "/v3/credentials",
        token=token,
        json={"credential": {"type": "totp", "user_id": b.user_id, "blob": blob_secret}},
    )
    assert credential.status_code == 201, credential.text
    ec2 = cloud.http(
        "POST",
        f"/v3/users/{b.user_id}/credentials/OS-EC2",
        token=token,
        json={"tenant_id": b.project_id},
    )
    assert ec2.status_code == 201, ec2.text
    cloud.secrets.add(ec2.json()["credential"]["secret"])
    return {"credential_id": credential.json()["credential"]["id"], "blob": blob_secret}


def test_member_of_project_a_cannot_list_or_show_project_b_users_or_credentials(
    cloud: Cloud,
) -> None:
    a, b = cloud.make_tenant("tenant-a"), cloud.make_tenant("tenant-b")
    colleague = cloud.admin.identity.create_user(name=unique("colleague"), password=unique("pw"))
    member = cloud.admin.identity.find_role("member", ignore_missing=False)
    cloud.admin.identity.assign_project_role_to_user(a.project_id, colleague, member)
    hidden = give_b_things_to_hide(cloud, b)

    # With the CLI: A sees its own project's people, and none of B's people or keys.
    users = {row["ID"] for row in cloud.cli_json("user", "list", cloud=a.cloud_name)}
    assert users == {a.user_id, colleague.id}
    credentials = cloud.cli_json("credential", "list", cloud=a.cloud_name)
    assert credentials == []
    error = cloud.cli_fails("user", "show", b.user_id, cloud=a.cloud_name)
    assert b.user_name not in error

    # Over HTTP, each lookup is a plain 404 or an empty list, never a 403 that confirms it.
    token = cloud.token_for(a)

    def get(path: str) -> tuple[int, dict[str, object]]:
        response = cloud.http("GET", path, token=token)
        return response.status_code, response.json()

    status, body = get(f"/v3/users/{b.user_id}")
    assert status == 404
    missing_status, missing_body = get("/v3/users/0123456789abcdef0123456789abcdef")
    assert missing_status == 404
    assert json.dumps(body).replace(b.user_id, "X") == json.dumps(missing_body).replace(
        "0123456789abcdef0123456789abcdef", "X"
    )
    assert get(f"/v3/users?name={b.user_name}")[1]["users"] == []
    assert get(f"/v3/credentials/{hidden['credential_id']}")[0] == 404
    assert get(f"/v3/credentials?user_id={b.user_id}")[1]["credentials"] == []
    assert hidden["blob"] not in json.dumps(get("/v3/credentials")[1])
    assert get(f"/v3/users/{b.user_id}/credentials/OS-EC2")[0] == 404
    assert get(f"/v3/users/{b.user_id}/application_credentials")[0] == 404
    assert get(f"/v3/projects/{b.project_id}")[0] == 404
    assert get(f"/v3/role_assignments?scope.project.id={b.project_id}")[1]["role_assignments"] == []
    assert get(f"/v3/role_assignments?user.id={b.user_id}")[1]["role_assignments"] == []

    # The same lookups work for A's own things, so the 404s above are the wall, not a bug.
    assert get(f"/v3/users/{a.user_id}")[0] == 200
    assert get(f"/v3/users/{colleague.id}")[0] == 200
    assert get(f"/v3/projects/{a.project_id}")[0] == 200
    assert (
        cloud.http(
            "GET", f"/v3/credentials/{hidden['credential_id']}", token=cloud.token_for(b)
        ).status_code
        == 200
    )


def test_member_cannot_scope_a_token_to_another_project(cloud: Cloud) -> None:
    a, b = cloud.make_tenant("scope-a"), cloud.make_tenant("scope-b")
    response = cloud.password_login(a.user_name, a.password, b.project_id)
    assert response.status_code == 401
