"""Engine and sessions. SQLite runs in WAL mode with full sync: a commit is on disk.

PostgreSQL (`postgresql+psycopg://...`) runs with pre-ping: a connection the server
dropped (a restart, a failover) is replaced before use, so the service recovers by
itself once the server is back; while it is away, `is_outage` tells the APIs to
answer 503 with Retry-After rather than 500.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # an unreachable server fails a request within connect_timeout (503), not TCP's minutes
    return create_engine(url, pool_pre_ping=True, connect_args=_connect_args(url))


def _connect_args(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_timeout": 5}
    return {}


# What a client is told to wait before retrying while the database is unreachable.
RETRY_AFTER_SECONDS = 5


def is_outage(exc: BaseException) -> bool:
    """The database is unreachable (down, restarting, out of connections), not a bug.

    SQLite's "database is locked" past its busy timeout is one too: retrying helps."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        return "locked" in str(exc.orig) or "busy" in str(exc.orig)
    return exc.connection_invalidated or isinstance(
        exc, (sa_exc.OperationalError, sa_exc.InterfaceError)
    )


class Database:
    """Hands out sessions; one transaction per `session()` block, committed on success."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._factory = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
