"""Account lockout after repeated wrong passwords, on a server that locks after three."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import Cloud, CloudFactory, unique

pytestmark = pytest.mark.e2e

ATTEMPTS = 3
GENERIC = "The request you have made requires authentication."


@pytest.fixture(scope="module")
def locking_cloud(start_cloud: CloudFactory) -> Iterator[Cloud]:
    # A slower hash (still well under a tenth of a second) widens the window between
    # reading the failure count and writing it, where parallel wrong guesses could get lost.
    cloud = start_cloud(
        "lockout",
        SOUVERAIN_IDENTITY__LOCKOUT_FAILURE_ATTEMPTS=str(ATTEMPTS),
        SOUVERAIN_IDENTITY__BCRYPT_ROUNDS="8",
    )
    yield cloud
    cloud.stop_and_check()


def message(cloud: Cloud, user_name: str, password: str) -> tuple[int, str]:
    response = cloud.password_login(user_name, password)
    if response.status_code == 201:
        return 201, ""
    return response.status_code, response.json()["error"]["message"]


def test_account_locks_after_three_wrong_passwords_and_admin_unlocks_it_with_enable(
    locking_cloud: Cloud,
) -> None:
    cloud = locking_cloud
    tenant = cloud.make_tenant("locked")
    for _ in range(ATTEMPTS):
        assert message(cloud, tenant.user_name, "wrong-password") == (401, GENERIC)

    status, text = message(cloud, tenant.user_name, tenant.password)
    assert status == 401
    assert "locked" in text and "administrator" in text
    error = cloud.cli_fails("token", "issue", cloud=tenant.cloud_name)
    assert "HTTP 401" in error and "locked" in error
    # The admin sees why: a locked account shows as disabled until it is enabled again.
    assert cloud.admin.identity.get_user(tenant.user_id).is_enabled is False

    cloud.cli_ok("user", "set", "--enable", tenant.user_id)

    issued = cloud.cli_json("token", "issue", cloud=tenant.cloud_name)
    assert issued["user_id"] == tenant.user_id
    assert issued["project_id"] == tenant.project_id


def test_failures_below_the_limit_do_not_lock_and_a_success_resets_the_count(
    locking_cloud: Cloud,
) -> None:
    cloud = locking_cloud
    tenant = cloud.make_tenant("almost")
    for _round in range(2):
        for _ in range(ATTEMPTS - 1):
            assert message(cloud, tenant.user_name, "wrong-password") == (401, GENERIC)
        assert message(cloud, tenant.user_name, tenant.password) == (201, "")


def test_an_unknown_user_gets_the_same_answer_however_often_it_fails(
    locking_cloud: Cloud,
) -> None:
    name = unique("ghost")
    answers = {message(locking_cloud, name, "wrong-password") for _ in range(ATTEMPTS + 2)}
    assert answers == {(401, GENERIC)}


def parallel_wrong_guesses(cloud: Cloud, user_name: str, burst: int) -> set[int]:
    """`burst` wrong passwords for one user, released together; their status codes."""
    start = threading.Barrier(burst)

    def guess(_: int) -> int:
        start.wait()
        return message(cloud, user_name, "wrong-password")[0]

    with ThreadPoolExecutor(max_workers=burst) as pool:
        return set(pool.map(guess, range(burst)))


def test_wrong_passwords_sent_at_once_all_count_towards_the_lockout(locking_cloud: Cloud) -> None:
    cloud = locking_cloud
    tenants = [cloud.make_tenant("burst") for _ in range(4)]
    for tenant in tenants:
        assert parallel_wrong_guesses(cloud, tenant.user_name, burst=20) == {401}
    for tenant in tenants:
        status, text = message(cloud, tenant.user_name, tenant.password)
        assert status == 401, f"{tenant.user_name} was not locked after 20 parallel failures"
        assert "locked" in text
