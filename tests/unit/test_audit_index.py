"""The audit log's index finds a project's records by reading only their lines, keeps up
with the log at each group commit, and is made again from the log when it does not match
it (another log, lines edited, the index file damaged or gone); the chain is untouched."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from souverain.common.audit import AuditLog, load_or_create_key, verify
from souverain.common.audit_index import AuditIndex, project_key, target_key

P1, P2, P3 = project_key("p1"), project_key("p2"), project_key("p3")


def entry(
    acting: str | None, target: str | None = None, when: str = "2026-01-01"
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "time": f"{when}T00:00:00.000000Z",
        "initiator": {"user_id": "u", "project_id": acting},
        "action": "x",
        "target": {"type": "account", "id": "a1"} if acting is None else {"path": "/"},
    }
    if target:
        record["target_project"] = target
    return record


def written(tmp_path: Path, entries: list[dict[str, Any]]) -> tuple[AuditLog, AuditIndex]:
    index = AuditIndex(tmp_path / "audit.log", {"account"})
    log = AuditLog(tmp_path / "audit.log", load_or_create_key(tmp_path / "k"), fsync=False,
                   index=index)  # fmt: skip
    for item in entries:
        log.append(item)
    log.flush()  # the group commit brings the index up to date
    return log, index


def seqs(index: AuditIndex, keys: list[str], after: int = 0, **kw: Any) -> list[int]:
    return [r["seq"] for r in index.find(keys, after, kw.get("since"), kw.get("limit", 100))]


def test_finds_a_projects_records_reading_only_their_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, index = written(tmp_path, [
        entry("p1"), entry("p2"), entry("p2", "p1"), entry("p3", "p3"), entry("p1", "p1"),
        entry(None), entry("p2", when="2026-03-01"), entry("p1", when="2026-03-01"),
    ])  # fmt: skip
    log.close()
    assert index.path.stat().st_mode & 0o777 == 0o600
    # the lines of other projects' records are never read: garbage there changes nothing
    path = tmp_path / "audit.log"
    lines = path.read_bytes().splitlines(keepends=True)
    for n in (1, 3):  # p2's own record and p3's
        lines[n] = b"x" * (len(lines[n]) - 1) + b"\n"
    path.write_bytes(b"".join(lines))
    assert seqs(index, [P1]) == [1, 3, 5, 8]
    assert seqs(index, [P1, P2], after=2) == [3, 5, 7, 8]  # seq 3 names both: once
    assert seqs(index, [P1], after=3, limit=1) == [5]
    assert seqs(index, [P1], since=dt.datetime(2026, 2, 1, tzinfo=dt.UTC)) == [8]
    assert seqs(index, [target_key("account", "a1")]) == [6]
    assert seqs(index, [project_key("nobody")]) == [] and seqs(index, []) == []
    assert not caplog.records  # found without remaking the index (which reads every line)


def test_an_index_that_does_not_match_the_log_is_made_again(tmp_path: Path) -> None:
    log, index = written(tmp_path, [entry("p1"), entry("p2"), entry("p1")])
    log.close()
    path = tmp_path / "audit.log"
    # an earlier line grew: every later offset moved, the index is found wrong and remade
    lines = path.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b'"action":"x"', b'"action":"xyz"')
    path.write_bytes(b"".join(lines))
    assert seqs(index, [P1]) == [1, 3]
    # another log in its place (its first record differs): the old entries are gone
    path.unlink()
    (tmp_path / "audit.log.head").unlink()
    log, index = written(tmp_path, [entry("p2"), entry("p1", when="2026-02-01")])
    assert seqs(index, [P1]) == [2]
    # a damaged or missing index file is made again from the log
    log.append(entry("p1"))
    index.path.write_bytes(b"not a database" * 100)
    for name in ("-wal", "-shm"):
        Path(f"{index.path}{name}").unlink(missing_ok=True)
    assert seqs(index, [P1]) == [2, 3]
    index.path.unlink()
    assert seqs(index, [P1]) == [2, 3]
    # a line being written is left for the next read; the chain never depended on the index
    log.close()
    with path.open("ab") as handle:
        handle.write(b'{"seq":4,"initiator":{"project_id":"p1"}')
    assert seqs(index, [P1]) == [2, 3]
    path.write_bytes(path.read_bytes().rsplit(b"\n", 1)[0] + b"\n")
    assert verify(path, load_or_create_key(tmp_path / "k")).ok
