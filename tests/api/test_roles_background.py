"""The loops a serving process starts follow its roles: an api-only node takes no lease
and runs none of the cloud-wide loops; a background node takes every lease."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from souverain import server
from souverain.db.models import Lease
from souverain.server import LEASED_WORK

from .support import ADMIN_PASSWORD, settings_for

CLOUD_WIDE_LOOPS = {"leases", "billing-budgets", "objectstore-expirer"}


@pytest.fixture
def data_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="souverain-roles-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _platform(root: Path, roles: str, monkeypatch: pytest.MonkeyPatch) -> server.Platform:
    settings = settings_for(root / "data")
    settings.server.roles = roles
    monkeypatch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
    return server.prepare(settings)


def _lease_rows(platform: server.Platform) -> dict[str, str]:
    with platform.db.session() as s:
        return {row.name: row.holder for row in s.scalars(select(Lease))}


@contextlib.contextmanager
def _serving(
    root: Path, roles: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[server.Platform, set[str]]]:
    """A platform of these roles with its background started; the loops it runs."""
    platform = _platform(root, roles, monkeypatch)
    try:
        platform.start_background(lease_ttl=2.0)
        yield platform, {worker.name for worker in platform._workers}
    finally:
        platform.close()


def test_an_api_only_node_takes_no_lease_and_runs_no_cloud_wide_loop(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, database_backend: str
) -> None:
    with _serving(data_root, "api", monkeypatch) as (platform, names):
        assert names == {"identity-sync", "compute-sync", "objectstore-meter"}
        time.sleep(0.5)  # a lease keeper would have taken them all by now
        assert platform.leases is None
        assert platform.held_leases() == []
        assert _lease_rows(platform) == {}


def test_a_background_node_takes_every_lease(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, database_backend: str
) -> None:
    with _serving(data_root, "background", monkeypatch) as (platform, names):
        assert names >= CLOUD_WIDE_LOOPS
        assert "network-egress" not in names
        deadline = time.monotonic() + 5
        while set(platform.held_leases()) != set(LEASED_WORK) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(platform.held_leases()) == set(LEASED_WORK)
        assert set(_lease_rows(platform)) == set(LEASED_WORK)
