"""Two serving processes on one database (two Platforms on one SQLite file, as two API
nodes or two workers are): the cloud-wide budget check runs in one of them only, and
the other takes it over within the ttl when the first stops (release) or dies (its
lease expires unrenewed). Only the clock of nothing is faked: real threads, real time."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from souverain import server
from souverain.config import Settings
from souverain.server import BUDGETS_LEASE, LEASED_WORK

from .support import ADMIN_PASSWORD, settings_for

TTL = 2.0  # seconds: wide enough margins (ttl/3) for a loaded 2-core machine
INTERVAL = 0.05
CLOSED: list[server.Platform] = []  # closed by the test itself


def stop(platform: server.Platform) -> None:
    platform.close()
    CLOSED.append(platform)


class Ticks:
    """When each platform ran the budget check (its real one, then noted)."""

    def __init__(self) -> None:
        self.at: dict[str, list[float]] = {"a": [], "b": []}
        self._lock = threading.Lock()

    def watch(self, label: str, platform: server.Platform, patch: pytest.MonkeyPatch) -> None:
        real = platform.billing.check_budgets

        def noted() -> list[tuple[str, Decimal]]:
            with self._lock:
                self.at[label].append(time.monotonic())
            return real()

        patch.setattr(platform.billing, "check_budgets", noted)

    def count(self, label: str) -> int:
        with self._lock:
            return len(self.at[label])

    def first_after(self, label: str, moment: float) -> float | None:
        with self._lock:
            return next((t for t in self.at[label] if t > moment), None)


def fast(settings: Settings) -> Settings:
    billing = settings.billing.model_copy(update={"budget_check_interval": INTERVAL})
    return settings.model_copy(update={"billing": billing})


@pytest.fixture
def two_nodes() -> Iterator[tuple[server.Platform, server.Platform]]:
    root = Path(tempfile.mkdtemp(prefix="souverain-leases-"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            settings = fast(settings_for(root / "data"))
            a = server.prepare(settings)
        b = server.open_platform(settings)
        try:
            yield a, b
        finally:
            for node in (a, b):
                if not any(node is closed for closed in CLOSED):
                    node.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def wait_for(condition: object, timeout: float) -> float:
    """Seconds until `condition()` held; fails after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout}s")


def die(platform: server.Platform) -> None:
    """What a SIGKILL leaves: no thread renews, nothing is released."""
    platform._stop.set()
    for worker in platform._workers:
        worker.join()


def started(
    a: server.Platform, b: server.Platform, patch: pytest.MonkeyPatch
) -> tuple[Ticks, str, str]:
    ticks = Ticks()
    ticks.watch("a", a, patch)
    ticks.watch("b", b, patch)
    a.start_background(lease_ttl=TTL)
    b.start_background(lease_ttl=TTL)
    wait_for(lambda: ticks.count("a") + ticks.count("b") >= 5, 5)
    time.sleep(TTL)  # several renewals: the holder keeps it, the other never runs
    holder = "a" if ticks.count("a") else "b"
    other = "b" if holder == "a" else "a"
    assert ticks.count(other) == 0, "both ran the cloud-wide budget check"
    assert ticks.count(holder) >= 3
    return ticks, holder, other


def test_only_one_of_two_nodes_runs_the_budget_check_and_the_other_takes_over_on_stop(
    two_nodes: tuple[server.Platform, server.Platform], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_nodes
    ticks, holder, other = started(a, b, monkeypatch)
    nodes = {"a": a, "b": b}
    stopped_at = time.monotonic()
    stop(nodes[holder])  # a clean stop releases: the other's next renewal takes it
    taken = wait_for(lambda: ticks.first_after(other, stopped_at) is not None, TTL)
    assert taken < TTL
    assert max(ticks.at[holder]) < min(ticks.at[other])
    assert nodes[other].holds(BUDGETS_LEASE)
    # every cloud-wide loop moved with it (renewed one after the other, within a round)
    wait_for(lambda: all(nodes[other].holds(name) for name in LEASED_WORK), TTL)


def test_when_the_holder_dies_its_lease_expires_and_the_other_takes_over(
    two_nodes: tuple[server.Platform, server.Platform], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_nodes
    ticks, holder, other = started(a, b, monkeypatch)
    nodes = {"a": a, "b": b}
    died_at = time.monotonic()
    die(nodes[holder])
    # the lease ran at most ttl from its last renewal; the other tries every ttl/3
    taken = wait_for(lambda: ticks.first_after(other, died_at) is not None, 3 * TTL)
    assert taken <= TTL + TTL / 3 + 0.5
    assert taken > TTL / 3, "taken before the dead holder's lease could have expired"
    assert max(ticks.at[holder]) < min(ticks.at[other])
