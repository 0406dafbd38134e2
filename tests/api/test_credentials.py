"""Application credentials and stored credentials (EC2 key pairs)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import text

from .support import S3_BASE, Cloud, Member, TestClient, assert_keystone_error


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
    # Keystone shows a credential's expiry as naive UTC (`...T10:00:00`, no `Z`)
    assert token_expiry <= dt.datetime.fromisoformat(cred["expires_at"]).replace(tzinfo=dt.UTC)
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
    """The stored rows as the database holds them (SQLite's file or PostgreSQL's table)."""
    with cloud.platform.db.engine.connect() as db:
        rows = db.execute(text("SELECT blob FROM identity_credentials"))
        return [bytes(row[0]) for row in rows]


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


# ---------------------------------------------------------------- EC2 keys of application credentials


def s3_call(cloud: Cloud, key: dict[str, Any], method: str, path: str, body: bytes = b"") -> Any:
    """One SigV4-signed S3 request with this EC2 key."""
    request = AWSRequest(method=method, url=S3_BASE + path, data=body)
    signer = Credentials(key["access"], key["secret"])
    S3SigV4Auth(signer, "s3", cloud.platform.settings.server.region).add_auth(request)
    client = TestClient(cloud.platform.s3_app, base_url=S3_BASE)
    return client.request(method, path, content=body, headers=dict(request.headers))


def s3_code(response: Any) -> str:
    return response.text.split("<Code>")[1].split("</Code>")[0]


def ec2_key(cloud: Cloud, who: Member, token: str | None = None) -> dict[str, Any]:
    """An EC2 key for the member's project, made with `token` (its password token if None)."""
    path = f"/v3/users/{who.id}/credentials/OS-EC2"
    made = cloud.post(path, {"tenant_id": who.project_id}, token=token or who.token)
    assert made.status_code == 201, made.text
    key: dict[str, Any] = made.json()["credential"]
    return key


def ec2_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(key["access"].encode()).hexdigest()


def app_cred_token(cloud: Cloud, cred: dict[str, Any]) -> str:
    issued = cloud.issue(app_cred_auth(cred["id"], cred["secret"]))
    assert issued.status_code == 201, issued.text
    token: str = issued.headers["X-Subject-Token"]
    return token


def bound_key(cloud: Cloud, who: Member, app_cred_id: Any, token: str = "") -> Any:
    """POST /v3/credentials with a blob naming the application credential, as Keystone takes."""
    access = cloud.unique("AKIA")
    blob = {"access": access, "secret": f"{access}-secret", "app_cred_id": app_cred_id}
    credential = {"type": "ec2", "user_id": who.id, "project_id": who.project_id}
    body = {"credential": {**credential, "blob": json.dumps(blob)}}
    return cloud.post("/v3/credentials", body, token=token or who.token)


def alice_with_bucket(cloud: Cloud) -> tuple[Member, dict[str, Any]]:
    """A member, her own EC2 key, and a bucket holding one object made with it."""
    alice = cloud.member("member")
    own = ec2_key(cloud, alice)
    assert s3_call(cloud, own, "PUT", "/data").status_code == 200
    assert s3_call(cloud, own, "PUT", "/data/report", b"figures").status_code == 200
    return alice, own


def test_ec2_key_of_a_reader_app_cred_reads_but_cannot_write(cloud: Cloud) -> None:
    alice, own = alice_with_bucket(cloud)
    reader = create_app_cred(cloud, alice, roles=[{"name": "reader"}]).json()
    response = bound_key(cloud, alice, reader["application_credential"]["id"])
    assert response.status_code == 201, response.text
    blob = json.loads(response.json()["credential"]["blob"])
    assert blob["app_cred_id"] == reader["application_credential"]["id"]
    key = {"access": blob["access"], "secret": blob["secret"]}

    got = s3_call(cloud, key, "GET", "/data/report")
    assert got.status_code == 200 and got.content == b"figures"
    refused = s3_call(cloud, key, "PUT", "/data/report", b"overwritten")
    assert refused.status_code == 403 and s3_code(refused) == "AccessDenied"
    assert s3_call(cloud, key, "DELETE", "/data/report").status_code == 403
    # the user's own key keeps the user's roles
    assert s3_call(cloud, own, "PUT", "/data/other", b"x").status_code == 200
    assert s3_call(cloud, own, "GET", "/data/report").content == b"figures"


def test_ec2_key_made_with_an_app_cred_expires_with_it(cloud: Cloud, clock: Any) -> None:
    alice, own = alice_with_bucket(cloud)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
    cred = create_app_cred(cloud, alice, expires_at=soon).json()["application_credential"]
    key = ec2_key(cloud, alice, app_cred_token(cloud, cred))
    generic = cloud.get(f"/v3/credentials/{ec2_id(key)}", token=alice.token)
    assert json.loads(generic.json()["credential"]["blob"])["app_cred_id"] == cred["id"]
    assert s3_call(cloud, key, "PUT", "/data/by-app", b"made").status_code == 200

    clock.advance(6 * 60)
    refused = s3_call(cloud, key, "GET", "/data/report")
    assert refused.status_code == 403 and s3_code(refused) == "InvalidAccessKeyId"
    assert s3_call(cloud, own, "GET", "/data/by-app").content == b"made"


def test_deleting_an_app_cred_deletes_its_ec2_keys(cloud: Cloud) -> None:
    alice, own = alice_with_bucket(cloud)
    cred = create_app_cred(cloud, alice).json()["application_credential"]
    key = ec2_key(cloud, alice, app_cred_token(cloud, cred))
    path = f"/v3/users/{alice.id}/credentials/OS-EC2"
    listed = cloud.get(path, token=alice.token).json()["credentials"]
    assert {c["access"] for c in listed} == {own["access"], key["access"]}
    assert s3_call(cloud, key, "GET", "/data/report").status_code == 200

    app_cred = f"/v3/users/{alice.id}/application_credentials/{cred['id']}"
    assert cloud.delete(app_cred, token=alice.token).status_code == 204
    listed = cloud.get(path, token=alice.token).json()["credentials"]
    assert [c["access"] for c in listed] == [own["access"]]
    assert_keystone_error(cloud.get(f"{path}/{key['access']}", token=alice.token), 404)
    refused = s3_call(cloud, key, "GET", "/data/report")
    assert refused.status_code == 403 and s3_code(refused) == "InvalidAccessKeyId"
    assert len(raw_blobs(cloud)) == 1
    assert s3_call(cloud, own, "GET", "/data/report").status_code == 200


def test_restricted_app_cred_reaches_only_its_own_credentials(cloud: Cloud) -> None:
    alice, own = alice_with_bucket(cloud)
    other_project = cloud.project()["id"]
    cloud.grant(alice.id, other_project, "member")
    cred = create_app_cred(cloud, alice).json()["application_credential"]
    sibling = create_app_cred(cloud, alice, unrestricted=True).json()["application_credential"]
    token = app_cred_token(cloud, cred)
    key = ec2_key(cloud, alice, token)
    path = f"/v3/users/{alice.id}/credentials/OS-EC2"

    # the user's own key, and its secret, stay out of reach
    listed = cloud.get(path, token=token).json()["credentials"]
    assert [c["access"] for c in listed] == [key["access"]]
    assert_keystone_error(cloud.get(f"{path}/{own['access']}", token=token), 404)
    assert_keystone_error(cloud.delete(f"{path}/{own['access']}", token=token), 404)
    generic = cloud.get("/v3/credentials", token=token).json()["credentials"]
    assert [c["id"] for c in generic] == [ec2_id(key)]
    assert_keystone_error(cloud.get(f"/v3/credentials/{ec2_id(own)}", token=token), 404)

    # no key for another project, none bound to another credential, no other kind
    elsewhere = cloud.post(path, {"tenant_id": other_project}, token=token)
    assert_keystone_error(elsewhere, 403)
    assert_keystone_error(bound_key(cloud, alice, sibling["id"], token=token), 403)
    totp = {"credential": {"type": "totp", "user_id": alice.id, "blob": "seed"}}
    assert_keystone_error(cloud.post("/v3/credentials", totp, token=token), 403)
    # nor deleting application credentials, even an unrestricted one
    sibling_path = f"/v3/users/{alice.id}/application_credentials/{sibling['id']}"
    assert_keystone_error(cloud.delete(sibling_path, token=token), 403)
    assert cloud.get(sibling_path, token=alice.token).status_code == 200

    assert cloud.delete(f"{path}/{key['access']}", token=token).status_code == 204
    assert cloud.get(f"{path}/{own['access']}", token=alice.token).status_code == 200


def test_unrestricted_app_cred_sees_the_users_keys_and_binds_its_own(cloud: Cloud) -> None:
    alice, own = alice_with_bucket(cloud)
    cred = create_app_cred(cloud, alice, unrestricted=True).json()["application_credential"]
    token = app_cred_token(cloud, cred)
    key = ec2_key(cloud, alice, token)
    path = f"/v3/users/{alice.id}/credentials/OS-EC2"
    listed = cloud.get(path, token=token).json()["credentials"]
    assert {c["access"] for c in listed} == {own["access"], key["access"]}
    app_cred = f"/v3/users/{alice.id}/application_credentials/{cred['id']}"
    assert cloud.delete(app_cred, token=alice.token).status_code == 204
    assert s3_call(cloud, key, "GET", "/data/report").status_code == 403
    assert s3_call(cloud, own, "GET", "/data/report").status_code == 200


def test_a_key_binds_only_to_the_users_own_app_cred_of_its_project(cloud: Cloud) -> None:
    alice, bob = cloud.member("member"), cloud.member("member")
    bobs = create_app_cred(cloud, bob).json()["application_credential"]
    assert_keystone_error(bound_key(cloud, alice, bobs["id"]), 404)
    assert_keystone_error(bound_key(cloud, alice, "0" * 32), 404)
    assert_keystone_error(bound_key(cloud, alice, 7), 400)

    other_project = cloud.project()["id"]
    cloud.grant(alice.id, other_project, "member")
    other_token = cloud.token_for(alice.id, alice.password, other_project)
    elsewhere = Member(alice.id, alice.name, alice.password, other_project, other_token)
    mine = create_app_cred(cloud, elsewhere).json()["application_credential"]
    assert_keystone_error(bound_key(cloud, alice, mine["id"]), 403)  # alice's project, not its
    made = bound_key(cloud, elsewhere, mine["id"])
    assert made.status_code == 201, made.text
    moved = {"credential": {"project_id": alice.project_id}}
    path = f"/v3/credentials/{made.json()['credential']['id']}"
    assert_keystone_error(cloud.patch(path, moved, token=alice.token), 400)
