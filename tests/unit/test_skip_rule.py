"""The suite's skip rule, run on a throwaway suite with the same conftest: a skip fails
the run where skips are forbidden (CI), and only there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from souverain.config import load_settings

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
HOST_HYGIENE = CONFTEST.parent / "host_hygiene.py"  # the conftest's host check
# the fixtures the conftest registers for every suite
REGISTERED = [CONFTEST.parent / name for name in ("ceph.py", "softhsm.py")]


def _copy_conftest(tmp_path: Path) -> None:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    shutil.copy(HOST_HYGIENE, tmp_path / "tests" / "host_hygiene.py")
    for module in REGISTERED:
        shutil.copy(module, tmp_path / "tests" / module.name)


def _run(tmp_path: Path, forbid: str, *args: str) -> subprocess.CompletedProcess[str]:
    _copy_conftest(tmp_path)
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n\ndef test_runs():\n    pass\n\n\n"
        "def test_skips():\n    pytest.skip('a tool is missing')\n"
    )
    env = {**os.environ, "TESTS_FORBID_SKIPS": forbid}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skip_fails_the_run_where_skips_are_forbidden(tmp_path: Path) -> None:
    run = _run(tmp_path, "1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 test(s) skipped where none may be: test_sample.py::test_skips" in run.stdout


def test_a_skip_in_a_worker_fails_the_run_too(tmp_path: Path) -> None:
    # `make test` runs the suite on pytest-xdist workers (one is enough to have a controller):
    # the controller judges the skips
    run = _run(tmp_path, "1", "-n", "1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 test(s) skipped where none may be: test_sample.py::test_skips" in run.stdout


def test_a_developer_may_allow_skips(tmp_path: Path) -> None:
    run = _run(tmp_path, "0")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout


def test_what_ci_exports_is_no_setting_the_server_refuses() -> None:
    # the servers the tests start read SOUVERAIN_* as settings and refuse unknown ones:
    # a switch named that way failed every CLI and serve test on CI
    ci_run = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    exported = dict(
        line.removeprefix("export ").split("=", 1)
        for line in ci_run.splitlines()
        if line.startswith("export ") and "=" in line
    )
    assert "TESTS_FORBID_SKIPS" in exported
    load_settings(environ=exported)  # raises on an unknown SOUVERAIN_* setting


def test_a_table_left_by_a_worker_fails_the_run(tmp_path: Path) -> None:
    # the host-left-as-found witness also holds on workers: the controller checks at the end
    if os.geteuid() != 0:
        return  # without root no test can make a table, and the rule does not apply
    table = f"souverain-0t{os.getpid() % 100000}"  # sorts first among the tables listed
    _copy_conftest(tmp_path)
    (tmp_path / "test_sample.py").write_text(
        "import subprocess\n\n\ndef test_leaves_a_table():\n"
        f"    subprocess.run(['nft', 'add', 'table', 'inet', '{table}'], check=True)\n"
    )
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "1"],
            cwd=tmp_path,
            env={**os.environ, "TESTS_FORBID_SKIPS": "0"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    # other workers of the outer run may make tables meanwhile, so the count is not asserted
    assert "nftables tables: [" in run.stdout and table in run.stdout, run.stdout
    assert "souverain host decommission" in run.stdout


def test_a_process_left_by_a_worker_fails_the_run_naming_it(tmp_path: Path) -> None:
    # a process this run started and nobody stopped (here a stand-in named haproxy)
    if os.geteuid() != 0:
        return  # without root other processes' environments are unreadable: no check
    _copy_conftest(tmp_path)
    pid_file = tmp_path / "leaked.pid"
    (tmp_path / "test_sample.py").write_text(
        "import subprocess, sys\n\n\ndef test_leaves_a_process():\n"
        "    leaked = subprocess.Popen(\n"
        "        ['haproxy', '-c', 'import time; time.sleep(60)'], executable=sys.executable\n"
        "    )\n"
        f"    open({str(pid_file)!r}, 'w').write(str(leaked.pid))\n"
    )
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "1"],
            cwd=tmp_path,
            env={**os.environ, "TESTS_FORBID_SKIPS": "0"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), 9)
    leaked = pid_file.read_text()
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"1 processes: ['{leaked} haproxy -c import time" in run.stdout, run.stdout
