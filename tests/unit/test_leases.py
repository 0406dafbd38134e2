"""Leases: the atomic take/renew/release on a real SQLite file, and the keeper's rule
that a holder stops trusting its hold before anyone else may take it (clock skew)."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from souverain.common.clock import Clock
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from souverain.db.leases import LeaseKeeper, acquire, holder_id, release
from souverain.db.models import Lease

T0 = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
TTL = 30.0
EXAMPLES = itertools.count()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path = tmp_path_factory.mktemp("leases") / "db.sqlite"
    database = Database(make_engine(f"sqlite:///{path}"))
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def holder_of(db: Database, name: str) -> str | None:
    with db.session() as s:
        return s.scalar(select(Lease.holder).where(Lease.name == name))


def test_a_free_lease_is_taken_and_refused_to_another_until_it_expires(db: Database) -> None:
    assert acquire(db, "free", "a", TTL, at(0))
    assert not acquire(db, "free", "b", TTL, at(29.9))
    assert holder_of(db, "free") == "a"
    assert acquire(db, "free", "b", TTL, at(30.1))
    assert holder_of(db, "free") == "b"


def test_the_holder_renews_its_own_lease_and_pushes_its_expiry(db: Database) -> None:
    assert acquire(db, "renew", "a", TTL, at(0))
    assert acquire(db, "renew", "a", TTL, at(20))
    assert not acquire(db, "renew", "b", TTL, at(40))  # would have expired at 30 unrenewed
    assert acquire(db, "renew", "b", TTL, at(50.1))


def test_release_frees_the_lease_at_once_but_only_for_its_holder(db: Database) -> None:
    assert acquire(db, "rel", "a", TTL, at(0))
    release(db, "rel", "b")  # not b's: nothing happens
    assert holder_of(db, "rel") == "a"
    release(db, "rel", "a")
    assert holder_of(db, "rel") is None
    assert acquire(db, "rel", "b", TTL, at(1))


def contend(db: Database, name: str, who: str, start: threading.Barrier, won: list[str]) -> None:
    start.wait()
    if acquire(db, name, who, TTL, at(0)):
        won.append(who)


def test_racing_processes_never_both_take_a_lease(db: Database) -> None:
    for round_ in range(5):
        name, start, won = f"race-{round_}", threading.Barrier(8), []
        threads = [
            threading.Thread(target=contend, args=(db, name, f"p{i}", start, won)) for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1, won
        assert holder_of(db, name) == won[0]


def test_holder_ids_name_the_host_and_process_and_never_repeat() -> None:
    import os

    first, second = holder_id(), holder_id()
    assert first != second
    assert f":{os.getpid()}:" in first


class SimulatedTime:
    """One true time for the whole test; each process's wall clock is off by its skew."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def wall(self, skew: float) -> Clock:
        return Clock(lambda: at(self.t + skew))


def test_a_keeper_holds_for_two_thirds_of_the_ttl_after_each_renewal(db: Database) -> None:
    time = SimulatedTime()
    keeper = LeaseKeeper(db, time.wall(0), TTL, holder="k", monotonic=time.monotonic)
    keeper.want("kept")
    assert not keeper.holds("kept")  # wanted, not yet taken
    keeper.renew_all()
    time.t = 19.9
    assert keeper.holds("kept")
    time.t = 20.0
    assert not keeper.holds("kept")  # the last third is the margin for clock skew


def test_a_keeper_whose_database_fails_stops_holding(tmp_path: Path) -> None:
    broken = Database(make_engine(f"sqlite:///{tmp_path / 'no-schema.sqlite'}"))
    keeper = LeaseKeeper(broken, Clock(), TTL, holder="k")
    keeper.want("x")
    assert keeper.renew("x") is False
    assert not keeper.holds("x")
    broken.dispose()


def test_release_all_ends_every_hold_and_frees_the_rows(db: Database) -> None:
    time = SimulatedTime()
    keeper = LeaseKeeper(db, time.wall(0), TTL, holder="leaving", monotonic=time.monotonic)
    for name in ("r1", "r2"):
        keeper.want(name)
    keeper.renew_all()
    assert keeper.holds("r1") and keeper.holds("r2")
    keeper.release_all()
    assert not keeper.holds("r1") and not keeper.holds("r2")
    assert holder_of(db, "r1") is None and holder_of(db, "r2") is None


def test_a_ttl_that_is_not_positive_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="positive"):
        LeaseKeeper(db, Clock(), 0)


@settings(max_examples=25, deadline=None)
@given(
    skew=st.floats(min_value=-2 * TTL, max_value=TTL / 3 - 1),
    cut_off=st.floats(min_value=0, max_value=3 * TTL),
)
def test_skewed_clocks_within_a_third_of_the_ttl_never_give_two_holders(
    db: Database, skew: float, cut_off: float
) -> None:
    """A renews on time until `cut_off`, then loses the database but keeps running; B,
    whose wall clock is `skew` seconds off, tries every second. At no moment do
    both believe they hold the lease, and B has it within ttl (+ skew behind) of the cut."""
    time = SimulatedTime()
    name = f"skew-{next(EXAMPLES)}"
    a = LeaseKeeper(db, time.wall(0), TTL, holder="a", monotonic=time.monotonic)
    b = LeaseKeeper(db, time.wall(skew), TTL, holder="b", monotonic=time.monotonic)
    a.want(name)
    b.want(name)
    b_took_at = None
    step = 0
    while time.t < cut_off + 2 * TTL + abs(skew):
        if time.t <= cut_off and step % 10 == 0:  # every ttl/3 (step: 1 s)
            a.renew_all()
        b.renew_all()
        assert not (a.holds(name) and b.holds(name)), f"two holders at t={time.t}"
        if b.holds(name) and b_took_at is None:
            b_took_at = time.t
        step += 1
        time.t = float(step)
    assert b_took_at is not None
    assert b_took_at > cut_off - 1e-9
    assert b_took_at <= cut_off - cut_off % 10 + TTL - skew + 1 + 1e-6  # float slack: skew ~1e-9
