"""The moto peer: `moto_server`, moto's stand-alone S3 (threaded werkzeug, state in memory).

moto accepts any access key and does not check signatures; the bench signs
for it all the same, so it receives the very requests the others do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from processes import Server, free_port
from sigv4 import Credentials
from target import MOTO, Target
from venvs import ensure_venv

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "moto-requirements.txt"


def ensure_installed(log: Path) -> Path:
    return ensure_venv("moto", REQUIREMENTS, "moto.server, werkzeug", log)


def installed_version(bin_dir: Path) -> str:
    for dist in (bin_dir.parent / "lib").glob("python3*/site-packages/moto-*.dist-info"):
        return dist.name.removeprefix("moto-").removesuffix(".dist-info")
    return "?"


def start(bin_dir: Path, state: Path, region: str) -> Target:
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    port = free_port()
    server = Server(
        "moto_server",
        [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        log_path=state / "moto_server.log",
        cwd=state,
    )
    server.start()
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/moto-api/")
    except BaseException:
        server.stop()
        raise
    return Target(
        MOTO,
        f"127.0.0.1:{port}",
        [server],
        Credentials("bench", "bench-secret", region),
        setup=f"moto {installed_version(bin_dir)} (moto_server, threaded werkzeug, in memory)",
    )
