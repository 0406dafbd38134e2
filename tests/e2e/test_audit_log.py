"""`souverain audit verify` on the log a running server wrote, and on copies someone tampered with."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Cloud, run_souverain, unique

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def audited(cloud: Cloud) -> dict[str, str]:
    """Mutating calls, good and bad, so the log holds known lines whatever ran before."""
    project = cloud.cli_json("project", "create", unique("audited"))
    password = f"audit-{unique('pw')}"
    cloud.secrets.add(password)
    user = cloud.admin.identity.create_user(name=unique("audited"), password=password)
    assert cloud.password_login(user.name, "wrong-password").status_code == 401
    cloud.admin.identity.delete_user(user)
    return {"project_id": project["id"], "user_id": user.id}


def records(data_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (data_dir / "audit.log").read_text().splitlines()]


def wait_for_head(data_dir: Path, timeout: float = 5.0) -> None:
    """The head follows the log within a flush interval; an audit copies a log at rest."""
    deadline = time.monotonic() + timeout
    while True:
        last = records(data_dir)[-1]
        head = json.loads((data_dir / "audit.log.head").read_text())
        if (head["seq"], head["mac"]) == (last["seq"], last["mac"]):
            return
        assert time.monotonic() < deadline, f"head {head} still behind record {last['seq']}"
        time.sleep(0.05)


def copy_of_audit_trail(cloud: Cloud, dest: Path) -> Path:
    """What an auditor takes away: the log, its head and the keys, in a data dir of their own."""
    wait_for_head(cloud.data_dir)
    data = dest / "data"
    data.mkdir()
    for name in ("audit.log", "audit.log.head"):
        shutil.copy2(cloud.data_dir / name, data / name)
    shutil.copytree(cloud.data_dir / "keys", data / "keys")
    return data


def verify(data_dir: Path) -> tuple[int, str]:
    result = run_souverain("audit", "verify", "--data-dir", str(data_dir))
    return result.returncode, result.stdout + result.stderr


def test_audit_verify_passes_on_the_log_the_running_server_wrote(
    cloud: Cloud, audited: dict[str, str]
) -> None:
    code, output = verify(cloud.data_dir)
    written = records(cloud.data_dir)
    assert code == 0, output
    assert f"audit log OK: {len(written)} records" in output

    created = [r for r in written if r["action"] == "identity.project.create"]
    assert any(
        r["target"] == {"type": "project", "id": audited["project_id"]}
        and r["outcome"] == "success"
        for r in created
    )
    deleted = [r for r in written if r["action"] == "identity.user.delete"]
    assert any(r["target"] == {"type": "user", "id": audited["user_id"]} for r in deleted)
    assert any(
        r["action"] == "identity.token.issue" and r["outcome"] == "failure" and r["status"] == 401
        for r in written
    )
    assert [r["seq"] for r in written] == list(range(1, len(written) + 1))


def test_audit_log_names_who_and_what_but_holds_no_secret(
    cloud: Cloud, audited: dict[str, str]
) -> None:
    cloud.assert_no_secret_in(cloud.data_dir / "audit.log")
    text = (cloud.data_dir / "audit.log").read_text()
    assert audited["user_id"] in text


def edit_one_line(lines: list[str]) -> list[str]:
    record = json.loads(lines[2])
    record["outcome"] = "failure" if record["outcome"] == "success" else "success"
    edited = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return [*lines[:2], edited, *lines[3:]]


def remove_a_line(lines: list[str]) -> list[str]:
    return [*lines[:2], *lines[3:]]


def swap_two_lines(lines: list[str]) -> list[str]:
    return [*lines[:2], lines[3], lines[2], *lines[4:]]


def cut_the_last_line(lines: list[str]) -> list[str]:
    return lines[:-1]


@pytest.mark.parametrize(
    ("tamper", "problem", "line"),
    [
        (edit_one_line, "content does not match its MAC (edited)", 3),
        (remove_a_line, "sequence 4 follows 2 (removed or reordered)", 3),
        (swap_two_lines, "sequence 4 follows 2 (removed or reordered)", 3),
        (cut_the_last_line, "but the head says", None),
    ],
)
def test_audit_verify_fails_on_a_tampered_copy(
    cloud: Cloud,
    audited: dict[str, str],
    tmp_path: Path,
    tamper: Callable[[list[str]], list[str]],
    problem: str,
    line: int | None,
) -> None:
    copy = copy_of_audit_trail(cloud, tmp_path)
    code, output = verify(copy)
    assert code == 0, f"the untouched copy must verify first: {output}"
    log = copy / "audit.log"
    lines = log.read_text().splitlines()
    assert len(lines) >= 5

    log.write_text("\n".join(tamper(lines)) + "\n")

    code, output = verify(copy)
    assert code == 1
    assert f"audit log BROKEN at line {line or len(lines) - 1}: " in output
    assert problem in output


def remove_the_head(data: Path) -> None:
    (data / "audit.log.head").unlink()


def rewrite_the_head_from_the_log(data: Path) -> None:
    last = json.loads((data / "audit.log").read_text().splitlines()[-1])
    (data / "audit.log.head").write_text(json.dumps({"seq": last["seq"], "mac": last["mac"]}))


@pytest.mark.parametrize("cover_up", [remove_the_head, rewrite_the_head_from_the_log])
def test_audit_verify_fails_when_the_end_is_cut_and_the_head_covered_up(
    cloud: Cloud, audited: dict[str, str], tmp_path: Path, cover_up: Callable[[Path], None]
) -> None:
    copy = copy_of_audit_trail(cloud, tmp_path)
    log = copy / "audit.log"
    log.write_text("\n".join(cut_the_last_line(log.read_text().splitlines())) + "\n")
    cover_up(copy)
    code, output = verify(copy)
    assert code == 1, output
