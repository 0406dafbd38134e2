"""POST/GET/HEAD/DELETE /v3/auth/tokens, the token body, scopes, catalog and auth projects."""

from __future__ import annotations

import datetime as dt
from typing import Any

from souverain.common.clock import parse_isotime

from .support import ADMIN_PASSWORD, Cloud, assert_keystone_error, password_auth

ADMIN_BY_NAME = {"name": "admin", "domain": {"id": "default"}}


def admin_auth(scope: Any = None) -> dict[str, Any]:
    return password_auth(ADMIN_PASSWORD, name="admin", scope=scope)


def test_password_project_scoped_token_has_every_keystone_field(cloud: Cloud) -> None:
    response = cloud.issue(admin_auth({"project": {"id": cloud.admin_project_id}}))
    assert response.status_code == 201
    token = response.json()["token"]
    assert response.headers["X-Subject-Token"]
    assert token["methods"] == ["password"]
    assert token["user"]["id"] == cloud.admin_id
    assert token["user"]["name"] == "admin"
    assert token["user"]["domain"] == {"id": "default", "name": "Default"}
    assert token["project"]["id"] == cloud.admin_project_id
    assert token["project"]["domain"]["id"] == "default"
    assert {r["name"] for r in token["roles"]} == {"admin", "member", "reader"}
    assert [s["type"] for s in token["catalog"]] == [
        "identity",
        "compute",
        "image",
        "block-storage",
        "network",
        "object-store",
        "key-manager",
        "s3",
    ]
    swift = token["catalog"][5]["endpoints"][0]["url"]
    assert swift.endswith(f"/object-storage/v1/AUTH_{cloud.admin_project_id}")
    endpoints = token["catalog"][0]["endpoints"]
    assert {e["interface"] for e in endpoints} == {"public", "internal", "admin"}
    assert all(e["url"].endswith("/identity") and e["region_id"] for e in endpoints)
    assert len(token["audit_ids"]) == 1 and token["audit_ids"][0]
    issued = parse_isotime(token["issued_at"])
    expires = parse_isotime(token["expires_at"])
    assert expires - issued == dt.timedelta(seconds=3600)
    assert token["expires_at"].endswith("Z")


def test_project_can_be_named_with_its_domain(cloud: Cloud) -> None:
    scope = {"project": {"name": "admin", "domain": {"name": "Default"}}}
    response = cloud.issue(admin_auth(scope))
    assert response.status_code == 201
    assert response.json()["token"]["project"]["id"] == cloud.admin_project_id


def test_user_by_id_authenticates(cloud: Cloud) -> None:
    response = cloud.issue(password_auth(ADMIN_PASSWORD, user_id=cloud.admin_id))
    assert response.status_code == 201
    assert response.json()["token"]["user"]["id"] == cloud.admin_id


def test_unscoped_token_has_no_roles_and_no_catalog(cloud: Cloud) -> None:
    response = cloud.issue(admin_auth())
    assert response.status_code == 201
    token = response.json()["token"]
    assert "roles" not in token and "catalog" not in token and "project" not in token
    unscoped = response.headers["X-Subject-Token"]
    assert_keystone_error(cloud.get("/v3/auth/catalog", token=unscoped), 403)
    explicit = cloud.issue(admin_auth("unscoped"))
    assert explicit.status_code == 201 and "project" not in explicit.json()["token"]


def test_domain_scoped_token_needs_a_domain_role(cloud: Cloud) -> None:
    assert_keystone_error(cloud.issue(admin_auth({"domain": {"id": "default"}})), 401)
    role = cloud.role_ids["admin"]
    assert cloud.put(f"/v3/domains/default/users/{cloud.admin_id}/roles/{role}").status_code == 204
    response = cloud.issue(admin_auth({"domain": {"name": "Default"}}))
    assert response.status_code == 201
    token = response.json()["token"]
    assert token["domain"] == {"id": "default", "name": "Default"}
    assert "project" not in token
    assert {r["name"] for r in token["roles"]} >= {"admin"}
    assert token["catalog"]


def test_system_scoped_token(cloud: Cloud) -> None:
    response = cloud.issue(admin_auth({"system": {"all": True}}))
    assert response.status_code == 201
    token = response.json()["token"]
    assert token["system"] == {"all": True}
    assert {r["name"] for r in token["roles"]} >= {"admin"}
    assert_keystone_error(cloud.issue(admin_auth({"system": {"all": False}})), 400)


def test_user_without_role_cannot_scope_to_a_project(cloud: Cloud) -> None:
    someone = cloud.member(role=None)
    project = cloud.project()
    scoped = password_auth(
        someone.password, user_id=someone.id, scope={"project": {"id": project["id"]}}
    )
    assert_keystone_error(cloud.issue(scoped), 401)
    assert_keystone_error(
        cloud.issue(
            password_auth(someone.password, user_id=someone.id, scope={"system": {"all": True}})
        ),
        401,
    )
    assert cloud.issue(password_auth(someone.password, user_id=someone.id)).status_code == 201


def test_nocatalog_leaves_the_catalog_out(cloud: Cloud) -> None:
    response = cloud.issue(admin_auth({"project": {"id": cloud.admin_project_id}}), "?nocatalog")
    assert response.status_code == 201
    assert "catalog" not in response.json()["token"]
    assert response.json()["token"]["roles"]
    subject = response.headers["X-Subject-Token"]
    validated = cloud.get("/v3/auth/tokens?nocatalog", headers={"X-Subject-Token": subject})
    assert validated.status_code == 200 and "catalog" not in validated.json()["token"]


def test_token_method_rescopes_and_keeps_expiry_and_audit_chain(cloud: Cloud, clock: Any) -> None:
    first = cloud.issue(admin_auth())
    unscoped = first.headers["X-Subject-Token"]
    clock.advance(60)
    body = {
        "auth": {
            "identity": {"methods": ["token"], "token": {"id": unscoped}},
            "scope": {"project": {"id": cloud.admin_project_id}},
        }
    }
    second = cloud.issue(body)
    assert second.status_code == 201, second.text
    token = second.json()["token"]
    assert token["methods"] == ["token", "password"]  # the proof behind it, as Keystone shows
    assert token["project"]["id"] == cloud.admin_project_id
    assert token["expires_at"] == first.json()["token"]["expires_at"]
    assert token["audit_ids"][1] == first.json()["token"]["audit_ids"][0]
    assert second.headers["X-Subject-Token"] != unscoped


def test_token_method_with_bad_token_is_401(cloud: Cloud) -> None:
    body = {"auth": {"identity": {"methods": ["token"], "token": {"id": "nope"}}}}
    assert_keystone_error(cloud.issue(body), 401)


def test_validate_get_and_head_and_revoke_with_delete(cloud: Cloud) -> None:
    alice = cloud.member("member")
    got = cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": alice.token})
    assert got.status_code == 200
    assert got.headers["X-Subject-Token"] == alice.token
    token = got.json()["token"]
    assert token["user"]["id"] == alice.id
    assert token["project"]["id"] == alice.project_id
    assert {r["name"] for r in token["roles"]} == {"member", "reader"}
    head = cloud.head("/v3/auth/tokens", headers={"X-Subject-Token": alice.token})
    assert head.status_code == 200 and head.content == b""
    assert (
        cloud.delete("/v3/auth/tokens", headers={"X-Subject-Token": alice.token}).status_code == 204
    )
    assert_keystone_error(
        cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": alice.token}), 404
    )
    assert (
        cloud.head("/v3/auth/tokens", headers={"X-Subject-Token": alice.token}).status_code == 404
    )
    assert_keystone_error(cloud.get("/v3/projects", token=alice.token), 401)
    assert_keystone_error(
        cloud.delete("/v3/auth/tokens", headers={"X-Subject-Token": alice.token}), 404
    )


def test_user_validates_and_revokes_its_own_token(cloud: Cloud) -> None:
    alice = cloud.member("member")
    headers = {"X-Subject-Token": alice.token}
    assert cloud.get("/v3/auth/tokens", token=alice.token, headers=headers).status_code == 200
    assert cloud.delete("/v3/auth/tokens", token=alice.token, headers=headers).status_code == 204
    assert_keystone_error(cloud.get("/v3/auth/projects", token=alice.token), 401)


def test_member_cannot_see_or_revoke_another_users_token(cloud: Cloud) -> None:
    alice, bob = cloud.member("member"), cloud.member("member")
    headers = {"X-Subject-Token": bob.token}
    assert_keystone_error(cloud.get("/v3/auth/tokens", token=alice.token, headers=headers), 404)
    assert_keystone_error(cloud.delete("/v3/auth/tokens", token=alice.token, headers=headers), 404)
    assert cloud.get("/v3/projects", token=bob.token).status_code == 200


def test_validate_needs_the_subject_header(cloud: Cloud) -> None:
    assert_keystone_error(cloud.get("/v3/auth/tokens"), 400)
    assert_keystone_error(cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": "x"}), 404)


def test_expired_token_is_refused(cloud: Cloud, clock: Any) -> None:
    alice = cloud.member("member")
    clock.advance(3601)
    assert_keystone_error(cloud.get("/v3/auth/projects", token=alice.token), 401)
    assert_keystone_error(
        cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": alice.token}), 401
    )


def test_auth_catalog_lists_the_identity_endpoints(cloud: Cloud) -> None:
    response = cloud.get("/v3/auth/catalog")
    assert response.status_code == 200
    catalog = response.json()["catalog"]
    assert catalog[0]["type"] == "identity"
    assert len(catalog[0]["endpoints"]) == 3


def test_auth_projects_lists_the_projects_the_user_has_a_role_on(cloud: Cloud) -> None:
    alice = cloud.member("member")
    other = cloud.project()
    cloud.grant(alice.id, other["id"], "reader")
    cloud.project()  # one she has no role on
    unscoped = cloud.token_for(alice.id, alice.password, None)
    response = cloud.get("/v3/auth/projects", token=unscoped)
    assert response.status_code == 200
    assert {p["id"] for p in response.json()["projects"]} == {alice.project_id, other["id"]}
    cloud.patch(f"/v3/projects/{other['id']}", {"project": {"enabled": False}})
    response = cloud.get("/v3/auth/projects", token=unscoped)
    assert {p["id"] for p in response.json()["projects"]} == {alice.project_id}


def test_auth_domains_and_system(cloud: Cloud) -> None:
    assert cloud.get("/v3/auth/system").json()["system"] == [{"all": True}]
    assert cloud.get("/v3/auth/domains").json()["domains"] == []
    alice = cloud.member("member")
    assert cloud.get("/v3/auth/system", token=alice.token).json()["system"] == []


def test_several_methods_at_once_are_refused(cloud: Cloud) -> None:
    body = admin_auth()
    body["auth"]["identity"]["methods"] = ["password", "token"]
    body["auth"]["identity"]["token"] = {"id": "x"}
    assert_keystone_error(cloud.issue(body), 401)


def test_unknown_method_is_refused(cloud: Cloud) -> None:
    body = {"auth": {"identity": {"methods": ["kerberos"], "kerberos": {"user": {"id": "x"}}}}}
    assert_keystone_error(cloud.issue(body), 401)
    body = {"auth": {"identity": {"methods": ["kerberos"]}}}
    assert_keystone_error(cloud.issue(body), 400)
