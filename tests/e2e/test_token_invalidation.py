"""What ends a token: a password change, a disabled account; and what a failed login says."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import Cloud, unique

pytestmark = pytest.mark.e2e


def test_password_change_with_the_cli_revokes_the_old_tokens(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("passwd")
    old_token = cloud.token_for(tenant)
    assert cloud.token_status(old_token) == 200
    new_password = f"new-{unique('pw')}"
    cloud.secrets.add(new_password)

    cloud.cli_ok(
        "user",
        "password",
        "set",
        "--original-password",
        tenant.password,
        "--password",
        new_password,
        cloud=tenant.cloud_name,
    )

    assert cloud.token_status(old_token) == 401
    assert cloud.password_login(tenant.user_name, tenant.password).status_code == 401
    fresh = cloud.password_login(tenant.user_name, new_password, tenant.project_id)
    assert fresh.status_code == 201
    assert cloud.token_status(fresh.headers["X-Subject-Token"]) == 200


def test_password_reset_by_the_admin_revokes_the_old_tokens(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("reset")
    old_token = cloud.token_for(tenant)
    new_password = f"reset-{unique('pw')}"
    cloud.secrets.add(new_password)
    cloud.admin.identity.update_user(tenant.user_id, password=new_password)
    assert cloud.token_status(old_token) == 401
    assert cloud.password_login(tenant.user_name, new_password).status_code == 201


def test_disabling_a_user_makes_its_token_invalid_for_good(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("disable")
    token = cloud.token_for(tenant)
    assert cloud.token_status(token) == 200

    cloud.cli_ok("user", "set", "--disable", tenant.user_id)
    assert cloud.token_status(token) == 401
    assert cloud.validate(token).status_code == 404
    refused = cloud.password_login(tenant.user_name, tenant.password)
    assert refused.status_code == 401

    # Enabling the user again lets it log in, but does not bring the old token back.
    cloud.admin.identity.update_user(tenant.user_id, is_enabled=True)
    assert cloud.token_status(token) == 401
    assert cloud.token_status(cloud.token_for(tenant)) == 200


def test_wrong_password_and_unknown_user_get_the_same_401(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("enumerate")
    disabled = cloud.make_tenant("enumerate-disabled")
    cloud.admin.identity.update_user(disabled.user_id, is_enabled=False)

    answers = [
        cloud.password_login(tenant.user_name, "wrong-password"),
        cloud.password_login(unique("nobody"), "wrong-password"),
        cloud.password_login(disabled.user_name, disabled.password),
    ]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert len({a.text for a in answers}) == 1
    assert len({a.headers.get("WWW-Authenticate") for a in answers}) == 1

    def cli_error(user_name: str) -> str:
        flags = cloud.user_flags(user_name, "wrong-password", tenant.project_name)
        error = cloud.cli_fails(*flags, "token", "issue", cloud=None)
        return re.sub(r"req-[0-9a-f-]+", "req-ID", error)

    wrong_password, unknown_user = cli_error(tenant.user_name), cli_error(unique("nobody"))
    assert "HTTP 401" in wrong_password
    assert wrong_password == unknown_user
