"""Tokens stop working when what they stand for changes."""

from __future__ import annotations

from typing import Any

from .support import Cloud, assert_keystone_error, password_auth


def works(cloud: Cloud, token: str) -> bool:
    response = cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": token})
    if response.status_code == 200:
        return True
    assert response.status_code == 404, response.text
    return False


def test_user_disable_revokes_and_reenable_does_not_resurrect(cloud: Cloud) -> None:
    alice = cloud.member("member")
    assert cloud.patch(f"/v3/users/{alice.id}", {"user": {"enabled": False}}).status_code == 200
    assert not works(cloud, alice.token)
    assert_keystone_error(cloud.get("/v3/auth/projects", token=alice.token), 401)
    login = password_auth(alice.password, user_id=alice.id)
    assert_keystone_error(cloud.issue(login), 401)
    cloud.patch(f"/v3/users/{alice.id}", {"user": {"enabled": True}})
    assert not works(cloud, alice.token)
    assert cloud.issue(login).status_code == 201


def test_admin_password_reset_revokes(cloud: Cloud) -> None:
    alice = cloud.member("member")
    body = {"user": {"password": "brand-new-Pa55"}}
    assert cloud.patch(f"/v3/users/{alice.id}", body).status_code == 200
    assert not works(cloud, alice.token)
    assert_keystone_error(cloud.issue(password_auth(alice.password, user_id=alice.id)), 401)
    assert cloud.issue(password_auth("brand-new-Pa55", user_id=alice.id)).status_code == 201


def test_own_password_change_needs_the_original_and_revokes(cloud: Cloud) -> None:
    alice = cloud.member("member")
    path = f"/v3/users/{alice.id}/password"
    wrong = {"user": {"original_password": "not-it-at-all", "password": "next-Pa55word"}}
    assert_keystone_error(cloud.post(path, wrong, token=alice.token), 401)
    assert works(cloud, alice.token)
    right = {"user": {"original_password": alice.password, "password": "next-Pa55word"}}
    assert cloud.post(path, right, token=alice.token).status_code == 204
    assert not works(cloud, alice.token)
    assert_keystone_error(cloud.issue(password_auth(alice.password, user_id=alice.id)), 401)
    assert cloud.issue(password_auth("next-Pa55word", user_id=alice.id)).status_code == 201


def test_member_cannot_change_another_users_password(cloud: Cloud) -> None:
    alice, bob = cloud.member("member"), cloud.member("member")
    body = {"user": {"original_password": bob.password, "password": "stolen-Pa55word"}}
    response = cloud.post(f"/v3/users/{bob.id}/password", body, token=alice.token)
    assert response.status_code in (403, 404)
    assert_keystone_error(response, response.status_code)
    assert works(cloud, bob.token)


def test_role_removal_revokes_tokens_on_that_project_only(cloud: Cloud) -> None:
    alice = cloud.member("member")
    other = cloud.project()
    cloud.grant(alice.id, other["id"], "member")
    elsewhere = cloud.token_for(alice.id, alice.password, other["id"])
    role = cloud.role_ids["member"]
    path = f"/v3/projects/{alice.project_id}/users/{alice.id}/roles/{role}"
    assert cloud.delete(path).status_code == 204
    assert not works(cloud, alice.token)
    assert works(cloud, elsewhere)
    cloud.grant(alice.id, alice.project_id, "member")
    assert not works(cloud, alice.token), "a new grant must not bring an old token back"


def test_leaving_a_group_revokes(cloud: Cloud) -> None:
    project = cloud.project()
    group = cloud.create("groups", "group", name="team")
    alice = cloud.member(role=None)
    cloud.grant(group["id"], project["id"], "member", actor="groups")
    cloud.put(f"/v3/groups/{group['id']}/users/{alice.id}")
    token = cloud.token_for(alice.id, alice.password, project["id"])
    assert works(cloud, token)
    assert cloud.delete(f"/v3/groups/{group['id']}/users/{alice.id}").status_code == 204
    assert not works(cloud, token)


def test_group_grant_removal_revokes_members(cloud: Cloud) -> None:
    project = cloud.project()
    group = cloud.create("groups", "group", name="team")
    alice = cloud.member(role=None)
    cloud.put(f"/v3/groups/{group['id']}/users/{alice.id}")
    cloud.grant(group["id"], project["id"], "member", actor="groups")
    token = cloud.token_for(alice.id, alice.password, project["id"])
    role = cloud.role_ids["member"]
    cloud.delete(f"/v3/projects/{project['id']}/groups/{group['id']}/roles/{role}")
    assert not works(cloud, token)


def test_role_delete_revokes_holders(cloud: Cloud) -> None:
    custom = cloud.create("roles", "role", name="operator")
    project = cloud.project()
    alice = cloud.member(role=None)
    cloud.put(f"/v3/projects/{project['id']}/users/{alice.id}/roles/{custom['id']}")
    token = cloud.token_for(alice.id, alice.password, project["id"])
    assert works(cloud, token)
    assert cloud.delete(f"/v3/roles/{custom['id']}").status_code == 204
    assert not works(cloud, token)


def test_project_disable_revokes_and_refuses_new_tokens(cloud: Cloud) -> None:
    alice = cloud.member("member")
    unscoped = cloud.token_for(alice.id, alice.password, None)
    body = {"project": {"enabled": False}}
    assert cloud.patch(f"/v3/projects/{alice.project_id}", body).status_code == 200
    assert not works(cloud, alice.token)
    assert works(cloud, unscoped), "only tokens scoped to the project are affected"
    scoped = password_auth(
        alice.password, user_id=alice.id, scope={"project": {"id": alice.project_id}}
    )
    assert_keystone_error(cloud.issue(scoped), 401)
    cloud.patch(f"/v3/projects/{alice.project_id}", {"project": {"enabled": True}})
    assert not works(cloud, alice.token)
    assert cloud.issue(scoped).status_code == 201


def test_project_delete_revokes(cloud: Cloud) -> None:
    alice = cloud.member("member")
    assert cloud.delete(f"/v3/projects/{alice.project_id}").status_code == 204
    assert not works(cloud, alice.token)
    assert_keystone_error(cloud.get("/v3/auth/projects", token=alice.token), 401)


def test_domain_disable_revokes_its_users_tokens(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name="tenant-co")
    project = cloud.project(domain_id=domain["id"])
    user = cloud.user(domain_id=domain["id"], password="tenant-Pa55word")
    cloud.grant(user["id"], project["id"], "member")
    token = cloud.token_for(user["id"], "tenant-Pa55word", project["id"])
    cloud.patch(f"/v3/domains/{domain['id']}", {"domain": {"enabled": False}})
    assert not works(cloud, token)
    assert_keystone_error(cloud.issue(password_auth("tenant-Pa55word", user_id=user["id"])), 401)


def test_user_delete_revokes(cloud: Cloud) -> None:
    alice = cloud.member("member")
    assert cloud.delete(f"/v3/users/{alice.id}").status_code == 204
    assert not works(cloud, alice.token)


def test_revoking_one_token_leaves_the_others(cloud: Cloud) -> None:
    alice = cloud.member("member")
    second = cloud.token_for(alice.id, alice.password, alice.project_id)
    cloud.delete("/v3/auth/tokens", headers={"X-Subject-Token": alice.token})
    assert not works(cloud, alice.token)
    assert works(cloud, second)


def test_revocations_survive_a_restart(cloud: Cloud, platform: Any, clock: Any) -> None:
    from souverain import server
    from souverain.common.clock import Clock

    alice = cloud.member("member")
    keep = cloud.token_for(alice.id, alice.password, alice.project_id)
    cloud.delete("/v3/auth/tokens", headers={"X-Subject-Token": alice.token})
    restarted = server.prepare(platform.settings, clock=Clock(clock.now))
    try:
        assert restarted.identity.validate(alice.token) is None
        assert restarted.identity.validate(keep) is not None
    finally:
        restarted.close()
