"""Which database errors are an outage (503, Retry-After) and which are a bug (500)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import exc, text

from souverain.db.engine import is_outage, make_engine


def _error_of(url: str, statement: str) -> BaseException:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    except exc.SQLAlchemyError as error:
        return error
    finally:
        engine.dispose()
    raise AssertionError("the statement did not fail")


def test_a_missing_table_is_a_bug_not_an_outage(tmp_path: Path) -> None:
    assert not is_outage(_error_of(f"sqlite:///{tmp_path / 'db'}", "SELECT * FROM nowhere"))


def test_a_locked_sqlite_database_is_an_outage(tmp_path: Path) -> None:
    path = tmp_path / "db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        engine = make_engine(f"sqlite:///{path}")
        try:
            with pytest.raises(exc.OperationalError) as raised, engine.connect() as conn:
                conn.execute(text("INSERT INTO t VALUES (1)"))
        finally:
            engine.dispose()
    finally:
        holder.close()
    assert is_outage(raised.value)


def test_an_unreachable_postgresql_is_an_outage_and_a_constraint_is_not() -> None:
    # nothing listens on port 1: the connection is refused at once
    assert is_outage(_error_of("postgresql+psycopg://nobody@127.0.0.1:1/none", "SELECT 1"))
    assert is_outage(exc.TimeoutError("QueuePool limit reached"))
    constraint = exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert not is_outage(constraint)
