"""Application credentials and stored credentials (EC2 key pairs)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

from .support import Cloud, Member, assert_keystone_error


def app_cred_auth(cred_id: str, secret: str, scope: Any = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": cred_id, "secret": secret},
        }
    }
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def create_app_cred(cloud: Cloud, who: Member, **fields: Any) -> Any:
    body = {"application_credential": {"name": cloud.unique("appcred"), **fields}}
    return cloud.post(f"/v3/users/{who.id}/application_credentials", body, token=who.token)


def test_app_cred_lifecycle_and_authentication(cloud: Cloud) -> None:
    alice = cloud.member("member")
    response = create_app_cred(cloud, alice, description="ci")
    assert response.status_code == 201, response.text
    cred = response.json()["application_credential"]
    assert cred["secret"] and cred["project_id"] == alice.project_id
    assert cred["unrestricted"] is False and cred["expires_at"] is None
    assert "member" in {r["name"] for r in cred["roles"]}
    assert "admin" not in {r["name"] for r in cred["roles"]}
    path = f"/v3/users/{alice.id}/application_credentials"
    listed = cloud.get(path, token=alice.token).json()["application_credentials"]
    assert [c["id"] for c in listed] == [cred["id"]]
    assert "secret" not in listed[0]
    got = cloud.get(f"{path}/{cred['id']}", token=alice.token).json()["application_credential"]
    assert got["name"] == cred["name"] and "secret" not in got
    by_name = cloud.get(f"{path}?name={cred['name']}", token=alice.token)
    assert [c["id"] for c in by_name.json()["application_credentials"]] == [cred["id"]]

    issued = cloud.issue(app_cred_auth(cred["id"], cred["secret"]))
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    assert token["methods"] == ["application_credential"]
    assert token["project"]["id"] == alice.project_id
    assert token["application_credential"]["id"] == cred["id"]
    assert token["application_credential"]["restricted"] is True
    assert {r["name"] for r in token["roles"]} == {"member", "reader"}

    by_user_name = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {
                    "name": cred["name"],
                    "secret": cred["secret"],
                    "user": {"name": alice.name, "domain": {"id": "default"}},
                },
            }
        }
    }
    assert cloud.issue(by_user_name).status_code == 201
    assert_keystone_error(cloud.issue(app_cred_auth(cred["id"], "wrong")), 401)

    app_token = issued.headers["X-Subject-Token"]
    assert cloud.delete(f"{path}/{cred['id']}", token=alice.token).status_code == 204
    assert_keystone_error(cloud.get(f"{path}/{cred['id']}", token=alice.token), 404)
    assert_keystone_error(cloud.get("/v3/auth/projects", token=app_token), 401)
    assert_keystone_error(cloud.issue(app_cred_auth(cred["id"], cred["secret"])), 401)


def test_app_cred_with_chosen_secret_and_duplicate_name(cloud: Cloud) -> None:
    alice = cloud.member("member")
    response = create_app_cred(cloud, alice, name="ci", secret="my-own-secret")
    assert response.json()["application_credential"]["secret"] == "my-own-secret"
    assert_keystone_error(create_app_cred(cloud, alice, name="ci"), 409)


def test_app_cred_roles_must_be_a_subset_of_the_users(cloud: Cloud) -> None:
    alice = cloud.member("member")
    refused = create_app_cred(cloud, alice, roles=[{"name": "admin"}])
    assert_keystone_error(refused, 403)
    unknown = create_app_cred(cloud, alice, roles=[{"id": "0" * 32}])
    assert_keystone_error(unknown, 404)
    response = create_app_cred(cloud, alice, roles=[{"name": "member"}])
    assert response.status_code == 201


def test_app_cred_can_delegate_an_implied_role(cloud: Cloud) -> None:
    """A member also holds reader (member implies reader), so it may hand out reader only."""
    alice = cloud.member("member")
    response = create_app_cred(cloud, alice, roles=[{"name": "reader"}])
    assert response.status_code == 201, response.text
    cred = response.json()["application_credential"]
    assert [r["name"] for r in cred["roles"]] == ["reader"]
    issued = cloud.issue(app_cred_auth(cred["id"], cred["secret"]))
    assert issued.status_code == 201, issued.text
    assert [r["name"] for r in issued.json()["token"]["roles"]] == ["reader"]
    restricted = issued.headers["X-Subject-Token"]
    body = {"project": {"name": "nope"}}
    assert_keystone_error(cloud.post("/v3/projects", body, token=restricted), 403)


def test_app_cred_expiry_in_the_past_is_refused(cloud: Cloud) -> None:
    alice = cloud.member("member")
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    assert_keystone_error(create_app_cred(cloud, alice, expires_at=past), 400)
    assert_keystone_error(create_app_cred(cloud, alice, expires_at="not a time"), 400)


def test_expired_app_cred_cannot_authenticate(cloud: Cloud, clock: Any) -> None:
    alice = cloud.member("member")
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")
    response = create_app_cred(cloud, alice, expires_at=soon)
    assert response.status_code == 201, response.text
    cred = response.json()["application_credential"]
    assert cred["expires_at"].startswith(soon)
    issued = cloud.issue(app_cred_auth(cred["id"], cred["secret"]))
    assert issued.status_code == 201
    token_expiry = dt.datetime.fromisoformat(issued.json()["token"]["expires_at"])
    assert token_expiry <= dt.datetime.fromisoformat(cred["expires_at"])
    clock.advance(11 * 60)
    error = assert_keystone_error(cloud.issue(app_cred_auth(cred["id"], cred["secret"])), 401)
    assert "expired" in error["message"]
    assert_keystone_error(
        cloud.get("/v3/auth/projects", token=issued.headers["X-Subject-Token"]), 401
    )


def test_restricted_app_cred_cannot_create_app_creds(cloud: Cloud) -> None:
    alice = cloud.member("member")
    cred = create_app_cred(cloud, alice).json()["application_credential"]
    token = cloud.issue(app_cred_auth(cred["id"], cred["secret"])).headers["X-Subject-Token"]
    as_cred = Member(alice.id, alice.name, alice.password, alice.project_id, token)
    assert_keystone_error(create_app_cred(cloud, as_cred), 403)


def test_unrestricted_app_cred_can_create_app_creds(cloud: Cloud) -> None:
    alice = cloud.member("member")
    cred = create_app_cred(cloud, alice, unrestricted=True).json()["application_credential"]
    assert cred["unrestricted"] is True
    issued = cloud.issue(app_cred_auth(cred["id"], cred["secret"]))
    assert issued.json()["token"]["application_credential"]["restricted"] is False
    as_cred = Member(
        alice.id, alice.name, alice.password, alice.project_id, issued.headers["X-Subject-Token"]
    )
    assert create_app_cred(cloud, as_cred).status_code == 201


def test_app_cred_token_cannot_pick_another_scope(cloud: Cloud) -> None:
    alice = cloud.member("member")
    other = cloud.project()
    cloud.grant(alice.id, other["id"], "member")
    cred = create_app_cred(cloud, alice).json()["application_credential"]
    elsewhere = {"project": {"id": other["id"]}}
    assert_keystone_error(cloud.issue(app_cred_auth(cred["id"], cred["secret"], elsewhere)), 401)
    same = {"project": {"id": alice.project_id}}
    assert cloud.issue(app_cred_auth(cred["id"], cred["secret"], same)).status_code == 201


def test_app_cred_with_malformed_scope_is_400_or_401(cloud: Cloud) -> None:
    alice = cloud.member("member")
    cred = create_app_cred(cloud, alice).json()["application_credential"]
    for scope in ({"project": "x"}, {"project": None}, ["x"], "x"):
        response = cloud.issue(app_cred_auth(cred["id"], cred["secret"], scope))
        assert response.status_code in (400, 401), (scope, response.text)
        assert_keystone_error(response, response.status_code)


def test_app_cred_needs_a_project_scoped_token(cloud: Cloud) -> None:
    alice = cloud.member("member")
    unscoped = cloud.token_for(alice.id, alice.password, None)
    body = {"application_credential": {"name": "x"}}
    response = cloud.post(f"/v3/users/{alice.id}/application_credentials", body, token=unscoped)
    assert_keystone_error(response, 403)


# ---------------------------------------------------------------- credentials


def raw_blobs(cloud: Cloud) -> list[bytes]:
    path = cloud.platform.paths.root / "souverain.db"
    with sqlite3.connect(path) as db:
        return [bytes(row[0]) for row in db.execute("SELECT blob FROM identity_credentials")]


def test_ec2_credentials_lifecycle_and_secret_encrypted_at_rest(cloud: Cloud) -> None:
    alice = cloud.member("member")
    path = f"/v3/users/{alice.id}/credentials/OS-EC2"
    response = cloud.post(path, {"tenant_id": alice.project_id}, token=alice.token)
    assert response.status_code == 201, response.text
    cred = response.json()["credential"]
    assert cred["user_id"] == alice.id and cred["tenant_id"] == alice.project_id
    access, secret = cred["access"], cred["secret"]
    assert access and secret and cred["links"]["self"].endswith(f"{path}/{access}")
    listed = cloud.get(path, token=alice.token).json()["credentials"]
    assert [c["access"] for c in listed] == [access]
    got = cloud.get(f"{path}/{access}", token=alice.token).json()["credential"]
    assert got["secret"] == secret
    (blob,) = raw_blobs(cloud)
    assert secret.encode() not in blob and access.encode() not in blob
    generic = cloud.get("/v3/credentials?type=ec2", token=alice.token).json()["credentials"]
    assert json.loads(generic[0]["blob"])["access"] == access
    assert cloud.delete(f"{path}/{access}", token=alice.token).status_code == 204
    assert_keystone_error(cloud.get(f"{path}/{access}", token=alice.token), 404)
    assert raw_blobs(cloud) == []


def test_ec2_credential_for_unknown_project_is_404(cloud: Cloud) -> None:
    alice = cloud.member("member")
    path = f"/v3/users/{alice.id}/credentials/OS-EC2"
    response = cloud.post(path, {"tenant_id": "0" * 32}, token=alice.token)
    assert_keystone_error(response, 404)
    assert_keystone_error(cloud.post(path, {}, token=alice.token), 400)


def test_credentials_crud_with_type_ec2(cloud: Cloud) -> None:
    alice = cloud.member("member")
    blob = json.dumps({"access": "AKIAEXAMPLE", "secret": "s3cr3t-value-xyz"})
    body = {
        "credential": {
            "type": "ec2",
            "user_id": alice.id,
            "project_id": alice.project_id,
            "blob": blob,
        }
    }
    response = cloud.post("/v3/credentials", body, token=alice.token)
    assert response.status_code == 201, response.text
    cred = response.json()["credential"]
    assert json.loads(cred["blob"]) == json.loads(blob)
    assert all(b"s3cr3t-value-xyz" not in raw for raw in raw_blobs(cloud))
    assert_keystone_error(cloud.post("/v3/credentials", body, token=alice.token), 409)
    ec2 = cloud.get(f"/v3/users/{alice.id}/credentials/OS-EC2/AKIAEXAMPLE", token=alice.token)
    assert ec2.json()["credential"]["secret"] == "s3cr3t-value-xyz"
    listed = cloud.get(f"/v3/credentials?user_id={alice.id}", token=alice.token)
    assert [c["id"] for c in listed.json()["credentials"]] == [cred["id"]]
    new_blob = {"credential": {"blob": "{}"}}
    assert_keystone_error(
        cloud.patch(f"/v3/credentials/{cred['id']}", new_blob, token=alice.token), 400
    )
    assert cloud.delete(f"/v3/credentials/{cred['id']}", token=alice.token).status_code == 204
    assert_keystone_error(cloud.get(f"/v3/credentials/{cred['id']}", token=alice.token), 404)


def test_ec2_blob_must_name_access_and_secret_and_a_project(cloud: Cloud) -> None:
    alice = cloud.member("member")
    for blob, project in (("not json", alice.project_id), ('{"access": "a"}', alice.project_id),
                          ('{"access": "a", "secret": "b"}', None)):  # fmt: skip
        body = {"credential": {"type": "ec2", "user_id": alice.id, "blob": blob}}
        if project:
            body["credential"]["project_id"] = project
        assert_keystone_error(cloud.post("/v3/credentials", body, token=alice.token), 400)


def test_other_credential_types_store_and_update_their_blob(cloud: Cloud) -> None:
    alice = cloud.member("member")
    body = {"credential": {"type": "totp", "user_id": alice.id, "blob": "seed-one"}}
    cred = cloud.post("/v3/credentials", body, token=alice.token).json()["credential"]
    assert cred["blob"] == "seed-one" and cred["project_id"] is None
    patched = cloud.patch(
        f"/v3/credentials/{cred['id']}", {"credential": {"blob": "seed-two"}}, token=alice.token
    )
    assert patched.json()["credential"]["blob"] == "seed-two"
    assert all(b"seed-two" not in raw for raw in raw_blobs(cloud))
