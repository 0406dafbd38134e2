"""The audit log's chain catches edited, removed, reordered and truncated lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from souverain.common.audit import AuditLog, AuditLogDamaged, load_or_create_key, verify


def _log(tmp_path: Path, n: int) -> tuple[Path, bytes]:
    key = load_or_create_key(tmp_path / "audit.key")
    log = AuditLog(tmp_path / "audit.log", key, fsync=False)
    for i in range(n):
        log.append({"action": f"identity.user.create.{i}", "target": {"id": str(i)}})
    log.close()
    return tmp_path / "audit.log", key


def test_intact_log_verifies(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 5)
    verdict = verify(path, key)
    assert verdict.ok and verdict.records == 5


def test_reopened_log_continues_the_chain(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 3)
    log = AuditLog(path, key, fsync=False)
    record = log.append({"action": "more"})
    log.close()
    assert record["seq"] == 4
    assert verify(path, key).ok


def test_edited_line_is_caught(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 5)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace("create.2", "create.X")
    path.write_text("".join(lines))
    verdict = verify(path, key)
    assert not verdict.ok and verdict.line == 3 and "edited" in verdict.problem


def test_removed_line_is_caught(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 5)
    lines = path.read_text().splitlines(keepends=True)
    del lines[1]
    path.write_text("".join(lines))
    verdict = verify(path, key)
    assert not verdict.ok and verdict.line == 2


def test_reordered_lines_are_caught(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 5)
    lines = path.read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    assert not verify(path, key).ok


def test_cut_tail_is_caught_by_the_head(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 5)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]))
    verdict = verify(path, key)
    assert not verdict.ok and "truncated" in verdict.problem


def test_a_rewritten_chain_without_the_key_is_caught(tmp_path: Path) -> None:
    _path, key = _log(tmp_path, 3)
    forged = AuditLog(tmp_path / "forged.log", b"another key" * 3, fsync=False)
    forged.append({"action": "identity.user.create.0", "target": {"id": "0"}})
    forged.close()
    assert not verify(tmp_path / "forged.log", key).ok


def test_torn_last_line_refuses_to_continue(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 2)
    with path.open("ab") as handle:
        handle.write(b'{"seq": 3, "act')
    with pytest.raises(AuditLogDamaged):
        AuditLog(path, key, fsync=False)


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path / "k" / "audit.key")
    assert (tmp_path / "k" / "audit.key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(tmp_path / "k" / "audit.key") == first
    assert json.dumps({"k": first.hex()})


def test_cut_tail_with_the_head_removed_is_caught(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 4)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    (tmp_path / "audit.log.head").unlink()
    verdict = verify(path, key)
    assert not verdict.ok and "head file is missing" in verdict.problem


def test_cut_tail_with_a_forged_head_is_caught(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 4)
    lines = path.read_text().splitlines(keepends=True)[:2]
    path.write_text("".join(lines))
    last = json.loads(lines[-1])
    (tmp_path / "audit.log.head").write_text(json.dumps({"seq": last["seq"], "mac": last["mac"]}))
    verdict = verify(path, key)
    assert not verdict.ok and "edited" in verdict.problem


def test_restart_after_a_cut_records_the_evidence_in_the_chain(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 4)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    (tmp_path / "audit.log.head").unlink()
    log = AuditLog(path, key, fsync=False)
    log.close()
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert records[-1]["action"] == "audit.integrity_warning"
    assert "missing" in records[-1]["detail"]


def test_two_writers_sharing_the_file_keep_one_chain(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "audit.key")
    first = AuditLog(tmp_path / "audit.log", key, fsync=False)
    second = AuditLog(tmp_path / "audit.log", key, fsync=False)
    for i in range(6):
        (first if i % 2 else second).append({"action": f"step.{i}"})
    first.close()
    second.close()
    verdict = verify(tmp_path / "audit.log", key)
    assert verdict.ok and verdict.records == 6
    seqs = [json.loads(x)["seq"] for x in (tmp_path / "audit.log").read_text().splitlines()]
    assert seqs == [1, 2, 3, 4, 5, 6]
