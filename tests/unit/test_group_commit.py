"""Group commit on a real SQLite file: jobs share commits, a failing job rolls back alone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from souverain.db.engine import make_engine
from souverain.objectstore.batch import GroupCommit


@pytest.fixture
def writes(tmp_path: Path) -> GroupCommit:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    return GroupCommit(engine)


def rows(writes: GroupCommit) -> dict[str, int]:
    with writes.engine.connect() as conn:
        return {k: v for k, v in conn.execute(text("SELECT k, v FROM t"))}


def insert(key: str, value: int) -> object:
    def work(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t VALUES (:k, :v)"), {"k": key, "v": value})
        return value

    return work


def test_every_job_of_many_threads_lands_exactly_once(writes: GroupCommit) -> None:
    results: dict[int, int] = {}

    def client(i: int) -> None:
        results[i] = writes.run(insert(f"k{i}", i))  # type: ignore[arg-type]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i for i in range(64)}
    assert rows(writes) == {f"k{i}": i for i in range(64)}


def test_a_failing_job_rolls_back_alone(writes: GroupCommit) -> None:
    writes.run(insert("taken", 1))  # type: ignore[arg-type]
    barrier = threading.Barrier(3)
    outcomes: dict[str, object] = {}

    def client(name: str, work: object) -> None:
        barrier.wait()
        try:
            outcomes[name] = writes.run(work)  # type: ignore[arg-type]
        except Exception as exc:
            outcomes[name] = type(exc).__name__

    def half_then_fail(conn: Connection) -> None:
        conn.execute(text("INSERT INTO t VALUES ('half', 5)"))
        conn.execute(text("INSERT INTO t VALUES ('taken', 2)"))  # duplicate key

    threads = [
        threading.Thread(target=client, args=("good", insert("good", 3))),
        threading.Thread(target=client, args=("bad", half_then_fail)),
        threading.Thread(target=client, args=("other", insert("other", 4))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == {"good": 3, "bad": "IntegrityError", "other": 4}
    assert rows(writes) == {"taken": 1, "good": 3, "other": 4}  # nothing of 'half' remains


def test_a_job_alone_that_fails_leaves_nothing(writes: GroupCommit) -> None:
    writes.run(insert("taken", 1))  # type: ignore[arg-type]

    def half_then_fail(conn: Connection) -> None:
        conn.execute(text("INSERT INTO t VALUES ('half', 5)"))
        conn.execute(text("INSERT INTO t VALUES ('taken', 2)"))

    with pytest.raises(Exception, match="UNIQUE"):
        writes.run(half_then_fail)
    assert rows(writes) == {"taken": 1}
    assert writes.run(insert("after", 7)) == 7  # type: ignore[arg-type]
