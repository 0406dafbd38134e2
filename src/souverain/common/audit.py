"""The audit log: one JSON line per mutating call, chained with an HMAC.

Each record carries the MAC of the one before it, and its own MAC covers its
content and that link, keyed with a secret only the operator holds. Editing,
removing or reordering a line breaks the chain; the head file records the
last sequence number and MAC so that cutting lines off the end is caught too.
Records never contain secrets: callers pass ids and names only. A call on a
resource of a project records that project (`target_project`), and a caller
acting with admin rights on another project's resource, or on a customer's billing account,
is flagged (`admin_action`).

Each line is written to the file before the call returns (a crash of the
process loses nothing); a flusher thread makes the writes durable with one
fdatasync per interval for all lines written in it (group commit), then moves
the head forward. The head may lag the log, never lead it.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from souverain.common.audit_index import AuditIndex
from souverain.common.jsoncodec import encode_canonical

log = logging.getLogger(__name__)

GENESIS = "0" * 64

# Set by the audit middleware per mutating call: where a service notes the projects of
# the resources it resolved, so the record names them without a lookup of its own.
_TARGET: ContextVar[Target | None] = ContextVar("souverain_audit_target", default=None)
MAX_NOTED = 8  # a call acts on a handful of resources; a loop over rows notes no more


@dataclass
class Target:
    """The projects whose resources one call resolved, in order, and the one its path named."""

    projects: list[str] = field(default_factory=list)
    path_project: str | None = None
    # an admin acted on what belongs to a customer but is no project's resource (a billing
    # account): flagged like an admin action on another project's resource
    admin_over_customer: bool = False

    def chosen(self, acting_project: str | None) -> str | None:
        """The project the call acted on: the first noted that is not the caller's own
        (an admin acting on a customer's port through its own router is about the
        customer), else the caller's own, else the one the path named."""
        for project in self.projects:
            if project != acting_project:
                return project
        return self.projects[0] if self.projects else self.path_project


def note_target_project(project_id: str | None) -> None:
    """The resource this call acts on belongs to `project_id`."""
    slot = _TARGET.get()
    if slot is None or not project_id or project_id in slot.projects:
        return
    if len(slot.projects) < MAX_NOTED:
        slot.projects.append(project_id)


def note_admin_over_customer() -> None:
    """The caller, an admin, acts on a customer's object that no project owns (an account
    it holds no role on of its own): the record is flagged `admin_action`."""
    slot = _TARGET.get()
    if slot is not None:
        slot.admin_over_customer = True


def collect_target() -> tuple[Target, object]:
    """A fresh slot for this call, and the token to reset it with."""
    slot = Target()
    return slot, _TARGET.set(slot)


def reset_target(token: object) -> None:
    _TARGET.reset(token)  # type: ignore[arg-type]


def _canonical(record: dict[str, Any]) -> bytes:
    return encode_canonical(record)


def _mac(key: bytes, record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "mac"}
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


def load_or_create_key(path: Path) -> bytes:
    """A 32-byte secret kept in `path` (0600), created on first use.

    Creation is atomic (written aside, then hard-linked into place), so two
    processes starting together end up with the same key.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(32))
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won; use its key
    finally:
        tmp.unlink()
    return path.read_bytes()


def write_private(path: Path, text: str) -> None:
    """Replace a small file atomically, readable by its owner only."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _signed_head(key: bytes, seq: int, mac: str) -> dict[str, Any]:
    head: dict[str, Any] = {"seq": seq, "mac": mac}
    head["head_mac"] = hmac.new(key, _canonical(head), hashlib.sha256).hexdigest()
    return head


def read_head(path: Path, key: bytes) -> dict[str, Any] | None:
    """The head as written, with `valid` telling whether its MAC holds; None if absent."""
    try:
        head = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int):
        return None
    expected = _signed_head(key, head["seq"], str(head.get("mac", "")))["head_mac"]
    head["valid"] = hmac.compare_digest(str(head.get("head_mac", "")), expected)
    return head


class AuditLogDamaged(Exception):
    """The log cannot be continued safely; `souverain audit verify` says where."""


class AuditLog:
    """Append-only, hash-chained; safe to call from several threads."""

    def __init__(
        self,
        path: Path,
        key: bytes,
        fsync: bool = True,
        flush_interval: float = 0.2,
        index: AuditIndex | None = None,
    ) -> None:
        self.path = path
        self._index = index  # brought up to date after each group commit
        self.head_path = path.with_name(path.name + ".head")
        self._key = key
        self._fsync = fsync
        self._lock = threading.Lock()
        self._seq, self._last_mac = self._read_tail()
        self._synced_seq = self._seq
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._end = os.fstat(self._fd).st_size
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_loop, args=(flush_interval,), name="audit-flush", daemon=True
        )
        self._flusher.start()
        problem = self._check_head()
        if problem is not None:  # keep the evidence inside the chain itself
            self.append(
                {
                    "action": "audit.integrity_warning",
                    "outcome": "failure",
                    "target": {"type": "audit_log", "id": path.name},
                    "detail": problem,
                }
            )
            self.flush()

    def _read_tail(self) -> tuple[int, str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                if size == 0:
                    return 0, GENESIS
                handle.seek(max(0, size - 65536))
                tail = handle.read()
        except FileNotFoundError:
            return 0, GENESIS
        if not tail.endswith(b"\n"):
            raise AuditLogDamaged(f"{self.path}: the last line is incomplete")
        last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            record = json.loads(last)
            return int(record["seq"]), str(record["mac"])
        except (ValueError, KeyError, TypeError):
            raise AuditLogDamaged(f"{self.path}: the last line is not an audit record") from None

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Chain and write one record. Several processes may share the file: the lock
        serialises them, and a process that finds the file grown re-reads the tail."""
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(self._fd).st_size
                if size != self._end:
                    self._seq, self._last_mac = self._read_tail()
                    self._end = size
                record = dict(entry)
                record["seq"] = self._seq + 1
                record["prev"] = self._last_mac
                record["mac"] = _mac(self._key, record)
                line = _canonical(record) + b"\n"
                os.write(self._fd, line)
                self._end += len(line)  # under the lock, nobody else wrote meanwhile
                self._seq, self._last_mac = record["seq"], record["mac"]
                return record
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def flush(self) -> None:
        """Make every line written so far durable, then move the head forward (never back:
        another process sharing the file may have recorded a later head already)."""
        with self._lock:
            seq, mac = self._seq, self._last_mac
        if seq == self._synced_seq:
            return
        if self._fsync:
            os.fdatasync(self._fd)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            current = read_head(self.head_path, self._key)
            if current is None or not current["valid"] or current["seq"] < seq:
                write_private(self.head_path, json.dumps(_signed_head(self._key, seq, mac)) + "\n")
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._synced_seq = seq
        if self._index is not None:
            try:
                self._index.catch_up()
            except (OSError, sqlite3.Error):  # the index only finds: the next flush retries
                log.warning("audit index not brought up to date", exc_info=True)

    def _check_head(self) -> str | None:
        """At start: is the head consistent with the tail? Say what is wrong if not."""
        if self._seq == 0:
            return None
        head = read_head(self.head_path, self._key)
        if head is None:
            return "the head file is missing or unreadable: records may have been cut"
        if not head.get("valid"):
            return "the head file does not match its MAC: it was edited"
        if head["seq"] > self._seq:
            return f"the log ends at record {self._seq} but the head says {head['seq']}: cut"
        return None

    def _flush_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._flusher.join()
        self.flush()
        os.close(self._fd)


@dataclass
class Verdict:
    ok: bool
    records: int
    problem: str = ""
    line: int = 0


def verify(path: Path, key: bytes) -> Verdict:
    """Walk the chain; report the first line that does not follow from the one before."""
    prev, seq, count = GENESIS, 0, 0
    macs: dict[int, str] = {}
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return Verdict(False, 0, f"{path} does not exist")
    with handle:
        for number, raw in enumerate(handle, start=1):
            count = number
            if not raw.endswith(b"\n"):
                return Verdict(False, count, "incomplete last line", number)
            try:
                record = json.loads(raw)
            except ValueError:
                return Verdict(False, count, "not valid JSON", number)
            if not isinstance(record, dict) or "mac" not in record:
                return Verdict(False, count, "not an audit record", number)
            if not hmac.compare_digest(str(record["mac"]), _mac(key, record)):
                return Verdict(False, count, "content does not match its MAC (edited)", number)
            if record.get("seq") != seq + 1:
                return Verdict(
                    False,
                    count,
                    f"sequence {record.get('seq')} follows {seq} (removed or reordered)",
                    number,
                )
            if record.get("prev") != prev:
                return Verdict(False, count, "chain link broken (removed or reordered)", number)
            prev, seq = record["mac"], record["seq"]
            macs[seq] = prev
    if count == 0:
        return Verdict(True, 0)
    head = read_head(path.with_name(path.name + ".head"), key)
    if head is None:
        return Verdict(False, count, "the head file is missing: the end may have been cut", count)
    if not head["valid"]:
        return Verdict(False, count, "the head file does not match its MAC (edited)", count)
    if head["seq"] > seq or (head["seq"] > 0 and macs.get(head["seq"]) != head.get("mac")):
        return Verdict(
            False,
            count,
            f"log ends at record {seq} but the head says {head['seq']} (truncated)",
            count,
        )
    return Verdict(True, count)
