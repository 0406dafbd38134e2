"""Fixtures: a platform (SQLite file, keys, audit log) and its admin client.

`cloud` is a fresh platform per test. `shared_cloud` is one platform per module,
for tests that only read or only send bad input, so they do not pay for a new
data dir each. Every module runs once per database backend (`[sqlite]`, `[postgresql]`:
tests/postgres.py), each platform on its own fresh database. Nothing of our own code is mocked; only the clock is stepped,
through the one `Clock` the platform is built with.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from souverain import server
from souverain.common.clock import Clock
from tests.postgres import _drop_test_databases, database_backend, postgres_session

from .support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient, settings_for


def _fast_tmp_root() -> str | None:
    """RAM-backed when the host has it: the SQLite file stays real, its fsyncs become cheap."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and shutil.disk_usage(shm).free > 256 * 2**20 else None


@contextmanager
def running_platform(clock: SteppingClock, **identity: Any) -> Iterator[server.Platform]:
    root = Path(tempfile.mkdtemp(prefix="souverain-api-", dir=_fast_tmp_root()))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings_for(root / "data", **identity), clock=Clock(clock.now))
        try:
            yield built
        finally:
            built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def platform(clock: SteppingClock) -> Iterator[server.Platform]:
    with running_platform(clock) as built:
        yield built


@pytest.fixture
def client(platform: server.Platform) -> Iterator[TestClient]:
    with TestClient(platform.app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def cloud(client: TestClient, platform: server.Platform) -> Cloud:
    return Cloud(client, platform)


@pytest.fixture(scope="module")
def shared_cloud(database_backend: str) -> Iterator[Cloud]:
    with (
        running_platform(SteppingClock()) as built,
        TestClient(built.app, base_url="http://testserver") as test_client,
    ):
        yield Cloud(test_client, built)


__all__ = ["_drop_test_databases", "database_backend", "postgres_session"]
