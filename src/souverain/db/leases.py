"""Leases: cloud-wide background work (budget checks, sweeps, expiry) runs in the one
process that holds its lease, a row of `leases` taken, renewed and released by single
atomic statements, so it runs exactly once however many processes and hosts serve.

A holder renews every ttl/3 and trusts its hold for 2/3 of the ttl after each renewal
was sent (by its own monotonic clock): a process that loses the database stops its
work before anyone else may take it, as long as the hosts' clocks agree within ttl/3
(the other side judges expiry by its own wall clock). Knows nothing of the work itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from sqlalchemy import delete, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from souverain.common.clock import Clock
from souverain.db.engine import Database, is_outage
from souverain.db.models import Lease

log = logging.getLogger("souverain.leases")

LEASE_TTL = 30.0  # seconds; hosts' clocks must agree within a third of it
RENEWALS_PER_TTL = 3


def holder_id() -> str:
    """This process, unique across the cloud and across restarts: host, pid, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"


def _naive_utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo else now


def acquire(db: Database, name: str, holder: str, ttl: float, now: dt.datetime) -> bool:
    """Take `name` if it is free or expired, or renew it if `holder` has it; whether
    `holder` holds it now. One statement: two processes racing cannot both win."""
    moment = _naive_utc(now)
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(Lease).values(
        name=name, holder=holder, expires_at=moment + dt.timedelta(seconds=ttl)
    )
    statement = statement.on_conflict_do_update(
        index_elements=[Lease.name],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=or_(Lease.expires_at < moment, Lease.holder == holder),
    )
    # RETURNING rather than rowcount: a row comes back only when the insert or the update
    # happened, and psycopg does not report a row count for an upsert
    with db.engine.begin() as conn:
        return conn.execute(statement.returning(Lease.holder)).first() is not None


def release(db: Database, name: str, holder: str) -> None:
    """Give `name` up at once if `holder` has it (another's lease is left alone)."""
    with db.engine.begin() as conn:
        conn.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


class LeaseKeeper:
    """This process's leases: `keep` renews every one of them each ttl/3 until `stop`
    is set, `holds` tells a loop whether to run its tick now, `release_all` gives
    them up on a clean stop so another process takes over at once."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        ttl: float = LEASE_TTL,
        holder: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"a lease's ttl must be positive, not {ttl}")
        self.db = db
        self.clock = clock
        self.ttl = ttl
        self.holder = holder or holder_id()
        self._monotonic = monotonic
        self._valid_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def want(self, name: str) -> None:
        """Compete for `name` from the next renewal on."""
        with self._lock:
            self._valid_until.setdefault(name, 0.0)

    def holds(self, name: str) -> bool:
        with self._lock:
            return self._monotonic() < self._valid_until.get(name, 0.0)

    def renew_all(self) -> None:
        with self._lock:
            names = list(self._valid_until)
        for name in names:
            self.renew(name)

    def renew(self, name: str) -> bool:
        """Take or renew one lease; on a database error the hold lapses by itself."""
        sent = self._monotonic()
        try:
            taken = acquire(self.db, name, self.holder, self.ttl, self.clock.now())
        except Exception as exc:
            if is_outage(exc):  # one line a renewal while the database is away
                log.warning(
                    "lease %s not renewed: the database is unreachable; its work pauses", name
                )
            else:
                log.exception(
                    "renewing lease %s failed; its work pauses here until it is back", name
                )
            return False
        trusted = self.ttl * (RENEWALS_PER_TTL - 1) / RENEWALS_PER_TTL
        with self._lock:
            self._valid_until[name] = sent + trusted if taken else 0.0
        return taken

    def keep(self, stop: threading.Event) -> None:
        """The renewal loop, for a thread of its own."""
        self.renew_all()
        while not stop.wait(self.ttl / RENEWALS_PER_TTL):
            self.renew_all()

    def release_all(self) -> None:
        with self._lock:
            names = list(self._valid_until)
            self._valid_until = dict.fromkeys(names, 0.0)
        for name in names:
            try:
                release(self.db, name, self.holder)
            except Exception:  # the lease then expires by itself within the ttl
                log.exception("releasing lease %s failed; another takes it at its expiry", name)
