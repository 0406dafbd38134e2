"""Group commit: concurrent write transactions of one process share one database commit.

Each small PUT or DELETE is a short transaction whose cost is mostly the commit
(a WAL fsync) and the wait for SQLite's single write lock. Callers hand their
work to `GroupCommit.run` from worker threads; the first becomes the leader,
runs every job waiting at that moment in one transaction, each inside its own
savepoint (a failing job rolls back alone), commits once, and wakes the others.
Nobody is answered before the commit that holds their change is durable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

T = TypeVar("T")
MAX_BATCH = 64


@dataclass
class _Job(Generic[T]):
    work: Callable[[Connection], T]
    done: threading.Event = field(default_factory=threading.Event)
    result: T | None = None
    error: BaseException | None = None


class GroupCommit:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._waiting: list[_Job[Any]] = []
        self._leading = False

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a write transaction shared with whoever else is waiting; its result."""
        job: _Job[T] = _Job(work)
        with self._lock:
            self._waiting.append(job)
            lead = not self._leading
            if lead:
                self._leading = True
        if lead:
            self._lead()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _lead(self) -> None:
        while True:
            with self._lock:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                if not batch:
                    self._leading = False
                    return
            self._commit(batch)

    def _commit(self, batch: list[_Job[Any]]) -> None:
        try:
            with self.engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                if len(batch) == 1:  # alone: the transaction is its savepoint
                    job = batch[0]
                    try:
                        job.result = job.work(conn)
                    except Exception as exc:
                        conn.rollback()
                        job.error = exc
                        job.done.set()
                        return
                else:
                    for job in batch:
                        conn.exec_driver_sql("SAVEPOINT job")
                        try:
                            job.result = job.work(conn)
                        except Exception as exc:  # this job's failure is its own
                            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT job")
                            job.error = exc
                        conn.exec_driver_sql("RELEASE SAVEPOINT job")
                conn.commit()
        except BaseException as exc:  # the commit failed: nothing in the batch happened
            for job in batch:
                job.error = job.error or exc
                job.result = None
            for job in batch:
                job.done.set()
            if not isinstance(exc, Exception):
                raise
            return
        for job in batch:
            job.done.set()
