"""Finds audit records by project without reading the whole log: a small SQLite file
beside the log maps each record's keys (the acting project, the project acted on, an
indexed target such as a billing account) to its sequence number and byte offset.

The log stays the record: its chain is `verify`'s, and nothing here writes it. The index
only finds; it is made from the log alone (the lines past the offset it has read, after
each group commit and before each query), so a lost or stale index costs a re-read, never
a record: an index that does not match the log (another log, cut, edited) is made again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from souverain.common.clock import parse_isotime

log = logging.getLogger(__name__)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS place ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), end_offset INTEGER NOT NULL, first_mac TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries ("
    " key TEXT NOT NULL, seq INTEGER NOT NULL, offset INTEGER NOT NULL, at INTEGER NOT NULL,"
    " PRIMARY KEY (key, seq)) WITHOUT ROWID",
)
UNKNOWN_TIME = -(2**62)  # a record whose time does not parse: before any `since`
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def project_key(project_id: str) -> str:
    return f"project:{project_id}"


def target_key(target_type: str, target_id: str) -> str:
    return f"{target_type}:{target_id}"


def keys_of(record: dict[str, Any], target_types: Collection[str]) -> set[str]:
    """What finds a record: the project that acted, the project acted on, and its target
    when that is of an indexed type."""
    keys: set[str] = set()
    initiator = record.get("initiator")
    acting = initiator.get("project_id") if isinstance(initiator, dict) else None
    for project in (acting, record.get("target_project")):
        if isinstance(project, str) and project:
            keys.add(project_key(project))
    target = record.get("target")
    if not isinstance(target, dict) or target.get("type") not in target_types:
        return keys
    if isinstance(target.get("id"), str) and target["id"]:
        keys.add(target_key(target["type"], target["id"]))
    return keys


def _micros(when: dt.datetime) -> int:
    return (when - EPOCH) // dt.timedelta(microseconds=1)


def _time_of(record: dict[str, Any]) -> int:
    try:
        return _micros(parse_isotime(str(record.get("time"))))
    except (ValueError, OverflowError):
        return UNKNOWN_TIME


def _mac_of(line: bytes) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return ""
    return str(record.get("mac", "")) if isinstance(record, dict) else ""


class AuditIndex:
    """The index of one audit log; safe to use from several threads and processes (each
    call opens its own connection: a connection never crosses a fork)."""

    def __init__(self, log_path: Path, target_types: Collection[str] = ()) -> None:
        self.log_path = log_path
        self.path = log_path.with_name(log_path.name + ".index")
        self.target_types = frozenset(target_types)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._open()
        except sqlite3.DatabaseError:  # not an index any more (damaged): made again
            log.warning("audit index %s is damaged: made again from the log", self.path)
            for name in (self.path.name, self.path.name + "-wal", self.path.name + "-shm"):
                self.path.with_name(name).unlink(missing_ok=True)
            db = self._open()
        try:
            yield db
        finally:
            db.close()

    def _open(self) -> sqlite3.Connection:
        if not self.path.exists():  # private like the log: created before SQLite opens it
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # lost on power loss: re-read from the log
            for statement in SCHEMA:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
        return db

    def catch_up(self, rebuild: bool = False) -> None:
        """Index the complete lines the log gained since the last call (all of them when
        the index does not match the log's start or length, or when asked to)."""
        try:
            handle = self.log_path.open("rb")
        except FileNotFoundError:
            return
        with handle, self._connection() as db:
            db.execute("BEGIN IMMEDIATE")  # one indexer at a time; readers go on (WAL)
            try:
                self._index_tail(db, handle, rebuild)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _index_tail(self, db: sqlite3.Connection, handle: BinaryIO, rebuild: bool) -> None:
        first_mac = _mac_of(handle.readline())
        size = os.fstat(handle.fileno()).st_size
        place = db.execute("SELECT end_offset, first_mac FROM place").fetchone()
        offset = 0
        if place is not None and not rebuild and place[1] == first_mac and place[0] <= size:
            offset = place[0]
        if offset == 0:
            db.execute("DELETE FROM entries")
        handle.seek(offset)
        rows: list[tuple[str, int, int, int]] = []
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # a line being written: the next call reads it
            rows.extend(self._entries(raw, offset))
            offset += len(raw)
        db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", rows)
        db.execute("INSERT OR REPLACE INTO place VALUES (1, ?, ?)", (offset, first_mac))

    def _entries(self, raw: bytes, offset: int) -> list[tuple[str, int, int, int]]:
        try:
            record = json.loads(raw)
            seq = int(record["seq"])
        except (ValueError, KeyError, TypeError):
            return []  # not a record: `verify` says so, the index just passes it by
        at = _time_of(record)
        return [(key, seq, offset, at) for key in keys_of(record, self.target_types)]

    def find(
        self, keys: Collection[str], after_seq: int, since: dt.datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """The records past `after_seq` (and at or after `since`) that one of `keys` finds,
        oldest first, at most `limit`: only those lines of the log are read."""
        if not keys:
            return []
        self.catch_up()
        for attempt in range(2):
            found = self._read(self._places(keys, after_seq, since, limit))
            if found is not None:
                return found
            if attempt == 0:
                log.warning("audit index %s does not match the log: made again", self.path)
                self.catch_up(rebuild=True)
        return []

    def _places(
        self, keys: Collection[str], after_seq: int, since: dt.datetime | None, limit: int
    ) -> list[tuple[int, int]]:
        marks = ",".join("?" * len(keys))
        at = UNKNOWN_TIME - 1 if since is None else _micros(since)
        with self._connection() as db:
            rows = db.execute(
                f"SELECT DISTINCT seq, offset FROM entries WHERE key IN ({marks})"  # noqa: S608
                " AND seq > ? AND at >= ? ORDER BY seq LIMIT ?",
                (*keys, after_seq, at, limit),
            ).fetchall()
        return [(int(seq), int(offset)) for seq, offset in rows]

    def _read(self, places: list[tuple[int, int]]) -> list[dict[str, Any]] | None:
        """The records at those offsets; None when one is not the record the index says."""
        records: list[dict[str, Any]] = []
        with self.log_path.open("rb") as handle:
            for seq, offset in places:
                handle.seek(offset)
                try:
                    record = json.loads(handle.readline())
                except ValueError:
                    return None
                if not isinstance(record, dict) or record.get("seq") != seq:
                    return None
                records.append(record)
        return records
