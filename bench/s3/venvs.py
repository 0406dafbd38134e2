"""Install a peer into its own virtualenv under bench/.peers, once per set of pins.

The pins live beside this file (one requirements file per peer); a changed
pin reinstalls. Debian packages a peer needs come from apt-get, as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent / ".peers"


def run_logged(argv: list[str], log: Path, cwd: Path | None = None) -> None:
    """Run a setup command, its output appended to `log`; on failure show the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({result.returncode}):\n{tail}")


def ensure_venv(name: str, requirements: Path, check_import: str, log: Path) -> Path:
    """bench/.peers/<name>-venv with `requirements` installed; returns its bin directory."""
    venv = PEERS / f"{name}-venv"
    mark = venv / ".bench-installed"  # holds the requirements text last installed
    wanted = requirements.read_text()
    if mark.exists() and mark.read_text() == wanted:
        return venv / "bin"
    print(f"installing {name} into {venv} (once; log: {log}) ...", flush=True)
    if not (venv / "bin" / "python").exists():
        run_logged([sys.executable, "-m", "venv", str(venv)], log)
    run_logged([str(venv / "bin" / "pip"), "install", "-r", str(requirements)], log)
    run_logged([str(venv / "bin" / "python"), "-c", f"import {check_import}"], log)
    mark.write_text(wanted)
    return venv / "bin"


def ensure_debian_package(command: str, package: str, log: Path) -> str:
    """Path of `command`, installing Debian's `package` first if it is missing."""
    found = shutil.which(command) or (
        f"/usr/sbin/{command}" if Path(f"/usr/sbin/{command}").exists() else None
    )
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(f"{command} is missing: apt-get install -y {package}")
    print(f"installing {package} (apt-get; log: {log}) ...", flush=True)
    run_logged(["apt-get", "update", "-qq"], log)
    env_argv = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run_logged([*env_argv, "apt-get", "install", "-y", "-qq", package], log)
    found = shutil.which(command) or f"/usr/sbin/{command}"
    if not Path(found).exists():
        raise RuntimeError(f"{package} installed but {command} not found")
    return found
