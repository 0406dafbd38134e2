"""Souverain as the identity bench runs it: `souverain serve` on a fresh data dir.

The admin password and the bcrypt cost are handed over through the
environment, the same values Keystone gets.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from processes import Server, free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STATE = HERE.parent / ".peers" / "souverain-state"
DEFAULT_BIN = REPO / ".venv" / "bin" / "souverain"


def start(binary: Path, admin_password: str, rounds: int, workers: int = 1) -> tuple[Server, str]:
    """Start Souverain on a free port; return the server and its identity v3 URL."""
    if not binary.exists():
        raise FileNotFoundError(f"{binary} not found (pip install -e . into .venv first)")
    shutil.rmtree(STATE, ignore_errors=True)
    data_dir = STATE / "data"
    data_dir.mkdir(parents=True)
    port = free_port()
    env = {
        **os.environ,
        "SOUVERAIN_ADMIN_PASSWORD": admin_password,
        "SOUVERAIN_IDENTITY__BCRYPT_ROUNDS": str(rounds),
        "SOUVERAIN_SERVER__WORKERS": str(workers),
        # no guest network here: leave no bridge or nftables table on the host
        "SOUVERAIN_NETWORK__DATAPLANE": "false",
    }
    server = Server(
        "souverain",
        [str(binary), "serve", "--data-dir", str(data_dir), "--port", str(port)],
        log_path=STATE / "serve.log",
        env=env,
        cwd=STATE,
    )
    server.start()
    v3_url = f"http://127.0.0.1:{port}/identity/v3"
    try:
        server.wait_ready(v3_url)
    except BaseException:
        server.stop()
        raise
    return server, v3_url


def python_of(binary: Path) -> Path:
    """The interpreter next to the console script (its venv's python)."""
    return binary.parent / "python"
