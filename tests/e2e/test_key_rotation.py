"""`souverain keys rotate` on a running server: live tokens survive, new ones use the new key."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from souverain.identity.tokens import Keyring, TokenKey
from tests.e2e.conftest import Cloud, CloudFactory, run_souverain

pytestmark = pytest.mark.e2e

# The server rereads its key directory at most once a second.
RELOAD_WAIT = 5.0


@pytest.fixture(scope="module")
def rotating_cloud(start_cloud: CloudFactory) -> Iterator[Cloud]:
    cloud = start_cloud("rotation")
    yield cloud
    cloud.stop_and_check()


def key_dir(cloud: Cloud) -> Path:
    return cloud.data_dir / "keys" / "fernet"


def sealed_with(cloud: Cloud, number: int, token: str) -> bool:
    """Whether key `number` of the repository opens this token."""
    key = TokenKey((key_dir(cloud) / str(number)).read_bytes())
    return Keyring([key]).open(token) is not None


def rotate(cloud: Cloud) -> int:
    result = run_souverain("keys", "rotate", "--data-dir", str(cloud.data_dir))
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split("key ")[1].split()[0])


def wait_for(condition: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + RELOAD_WAIT
    while not check():
        assert time.monotonic() < deadline, f"still not true after {RELOAD_WAIT}s: {condition}"
        time.sleep(0.1)


def test_keys_rotate_while_running_keeps_old_tokens_valid_and_new_tokens_use_the_new_key(
    rotating_cloud: Cloud,
) -> None:
    cloud = rotating_cloud
    old_token = cloud.cli_json("token", "issue")["id"]
    assert sealed_with(cloud, 1, old_token)

    assert rotate(cloud) == 2
    wait_for("new tokens sealed with key 2", lambda: sealed_with(cloud, 2, cloud.admin_token()))

    assert cloud.token_status(old_token) == 200
    assert cloud.validate(old_token).status_code == 200
    new_token = cloud.cli_json("token", "issue")["id"]
    assert sealed_with(cloud, 2, new_token) and not sealed_with(cloud, 1, new_token)
    assert cloud.token_status(new_token) == 200
    assert cloud.validate(new_token).status_code == 200

    # One more rotation retires key 1 (three keys are kept): its tokens end, key 2's live on.
    assert rotate(cloud) == 3
    assert sorted(int(p.name) for p in key_dir(cloud).iterdir()) == [0, 2, 3]
    wait_for("tokens of the retired key refused", lambda: cloud.token_status(old_token) == 401)
    assert cloud.token_status(new_token) == 200
