"""Failed logins, lockout and its end, and the password rules."""

from __future__ import annotations

from typing import Any

from .support import (
    LOCKOUT_ATTEMPTS,
    LOCKOUT_SECONDS,
    PASSWORD_MIN_LENGTH,
    Cloud,
    assert_keystone_error,
    password_auth,
)


def fail_logins(cloud: Cloud, user_id: str, times: int) -> None:
    for _ in range(times):
        assert_keystone_error(cloud.issue(password_auth("wrong-password", user_id=user_id)), 401)


def test_wrong_password_and_unknown_user_get_the_identical_401(cloud: Cloud) -> None:
    alice = cloud.member(role=None)
    responses = [
        cloud.issue(password_auth("wrong-password", user_id=alice.id)),
        cloud.issue(password_auth("wrong-password", user_id="0" * 32)),
        cloud.issue(password_auth("wrong-password", name=alice.name)),
        cloud.issue(password_auth("wrong-password", name="nobody-by-that-name")),
        cloud.issue(password_auth(alice.password, name=alice.name, domain={"id": "nodomain"})),
        cloud.issue(password_auth(alice.password, name=alice.name, domain={"name": "Nope"})),
    ]
    bodies = {r.content for r in responses}
    assert len(bodies) == 1, bodies
    assert_keystone_error(responses[0], 401)
    assert {r.headers["www-authenticate"] for r in responses} == {'Keystone uri="/identity"'}


def test_lockout_after_n_failures_with_a_clear_message(cloud: Cloud, clock: Any) -> None:
    alice = cloud.member(role=None)
    fail_logins(cloud, alice.id, LOCKOUT_ATTEMPTS)
    good = password_auth(alice.password, user_id=alice.id)
    error = assert_keystone_error(cloud.issue(good), 401)
    assert "locked" in error["message"]
    assert "administrator" in error["message"]
    clock.advance(LOCKOUT_SECONDS - 5)
    assert "locked" in assert_keystone_error(cloud.issue(good), 401)["message"]
    clock.advance(10)
    assert cloud.issue(good).status_code == 201


def test_failures_below_the_threshold_are_forgotten_after_a_success(cloud: Cloud) -> None:
    alice = cloud.member(role=None)
    good = password_auth(alice.password, user_id=alice.id)
    fail_logins(cloud, alice.id, LOCKOUT_ATTEMPTS - 1)
    assert cloud.issue(good).status_code == 201
    fail_logins(cloud, alice.id, LOCKOUT_ATTEMPTS - 1)
    assert cloud.issue(good).status_code == 201


def test_lockout_counts_again_after_it_ends(cloud: Cloud, clock: Any) -> None:
    alice = cloud.member(role=None)
    good = password_auth(alice.password, user_id=alice.id)
    fail_logins(cloud, alice.id, LOCKOUT_ATTEMPTS)
    clock.advance(LOCKOUT_SECONDS + 1)
    fail_logins(cloud, alice.id, 1)
    assert cloud.issue(good).status_code == 201, "one failure after the lockout must not re-lock"


def test_admin_reenable_unlocks(cloud: Cloud) -> None:
    alice = cloud.member(role=None)
    fail_logins(cloud, alice.id, LOCKOUT_ATTEMPTS)
    good = password_auth(alice.password, user_id=alice.id)
    assert "locked" in assert_keystone_error(cloud.issue(good), 401)["message"]
    assert cloud.patch(f"/v3/users/{alice.id}", {"user": {"enabled": True}}).status_code == 200
    assert cloud.issue(good).status_code == 201


def test_admin_password_reset_unlocks(cloud: Cloud) -> None:
    alice = cloud.member(role=None)
    fail_logins(cloud, alice.id, LOCKOUT_ATTEMPTS)
    cloud.patch(f"/v3/users/{alice.id}", {"user": {"password": "fresh-Pa55word"}})
    assert cloud.issue(password_auth("fresh-Pa55word", user_id=alice.id)).status_code == 201


def test_lockout_by_name_counts_too(cloud: Cloud) -> None:
    alice = cloud.member(role=None)
    for _ in range(LOCKOUT_ATTEMPTS):
        cloud.issue(password_auth("wrong-password", name=alice.name))
    error = assert_keystone_error(cloud.issue(password_auth(alice.password, name=alice.name)), 401)
    assert "locked" in error["message"]


def test_password_minimum_length(cloud: Cloud) -> None:
    short = "x" * (PASSWORD_MIN_LENGTH - 1)
    error = assert_keystone_error(
        cloud.post("/v3/users", {"user": {"name": "s", "password": short}}), 400
    )
    assert "Password" in error["message"] and short not in error["message"]
    assert cloud.user("ok", password="x" * PASSWORD_MIN_LENGTH)["name"] == "ok"
    alice = cloud.member("member")
    assert_keystone_error(cloud.patch(f"/v3/users/{alice.id}", {"user": {"password": short}}), 400)
    change = {"user": {"original_password": alice.password, "password": short}}
    response = cloud.post(f"/v3/users/{alice.id}/password", change, token=alice.token)
    assert_keystone_error(response, 400)
    assert cloud.issue(password_auth(alice.password, user_id=alice.id)).status_code == 201


def test_user_without_password_cannot_log_in(cloud: Cloud) -> None:
    user = cloud.create("users", "user", name="nopass")
    response = cloud.issue(password_auth("anything-at-all", user_id=user["id"]))
    assert_keystone_error(response, 401)


def test_password_change_endpoint_is_no_way_around_the_lockout(cloud: Cloud) -> None:
    alice = cloud.member("member")
    path = f"/v3/users/{alice.id}/password"
    for _ in range(LOCKOUT_ATTEMPTS):
        guess = {"user": {"original_password": "a-wrong-guess", "password": "next-Pa55word"}}
        assert_keystone_error(cloud.post(path, guess, token=alice.token), 401)
    good = password_auth(alice.password, user_id=alice.id)
    assert "locked" in assert_keystone_error(cloud.issue(good), 401)["message"]
    right = {"user": {"original_password": alice.password, "password": "next-Pa55word"}}
    assert_keystone_error(cloud.post(path, right, token=alice.token), 401)
