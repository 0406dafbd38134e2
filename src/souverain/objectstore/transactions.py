"""How the object store's rules open transactions: plain connections on the hot paths.

A request's reads and single writes take a Core connection (no ORM unit of work per
request); writes on SQLite take the write lock at BEGIN, so two writers never
deadlock upgrading a read lock. Knows nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from souverain.db.engine import Database


@contextmanager
def connect(db: Database, write: bool = False) -> Iterator[Connection]:
    """A plain connection for the hot paths: no ORM unit of work per request."""
    with db.engine.connect() as conn:
        if write and conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn
        if write:
            conn.commit()  # a read ends with the connection (rolled back: nothing to keep)


def begin_write(s: Session) -> None:
    """Take SQLite's write lock at the start: no deadlock when two writers upgrade."""
    if s.get_bind().dialect.name == "sqlite":
        s.connection().exec_driver_sql("BEGIN IMMEDIATE")
