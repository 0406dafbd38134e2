"""The README's "Trying Ceph on one machine" commands, typed as written, give a healthy
cluster QEMU opens an RBD image on (in a temporary directory, on a free port)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ceph import START_TIMEOUT, _free_port

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Trying Ceph on one machine"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Ceph daemons run as root here")


def readme_commands() -> str:
    """The section's first indented block, unindented."""
    text = README.read_text().split(SECTION, 1)[1]
    block: list[str] = []
    for line in text.splitlines()[1:]:
        if line.startswith("    ") or (block and not line.strip()):
            block.append(line[4:])
        elif block:
            break
    return "\n".join(block).strip() + "\n"


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "ceph-demo"
    try:
        yield root
    finally:
        _kill_daemons(root)


def _kill_daemons(root: Path) -> None:
    pids = []
    for pidfile in (root / "run").glob("*.pid"):
        with_pid = pidfile.read_text().strip()
        if with_pid.isdigit():
            pids.append(int(with_pid))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)


def test_the_readme_commands_start_a_healthy_cluster(demo_dir: Path) -> None:
    commands = readme_commands()
    assert "D=/tmp/ceph-demo;" in commands and commands.count("3300") == 2
    port = str(_free_port())
    script = commands.replace("D=/tmp/ceph-demo;", f"D={demo_dir};").replace("3300", port)
    script = script.replace("./scripts/install-system-packages", "true")
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=START_TIMEOUT * 2,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "virtual size: 1 GiB" in result.stdout  # qemu-img opened it through rbd
    env["CEPH_CONF"] = str(demo_dir / "ceph.conf")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        health = subprocess.run(
            ["ceph", "health", "--format", "json"], capture_output=True, text=True, env=env
        )
        status = json.loads(health.stdout)["status"] if health.returncode == 0 else health.stderr
        if status == "HEALTH_OK":
            break
        assert time.monotonic() < deadline, status
        time.sleep(1)
    listed = subprocess.run(["rbd", "ls", "demo"], capture_output=True, text=True, env=env)
    assert listed.stdout.split() == ["disk"]
    assert len(list((demo_dir / "run").glob("*.pid"))) == 5  # mon, mgr, three OSDs
