"""The peer: OpenStack Keystone from PyPI, configured as a production deployment would be.

SQL backend (SQLite file), Fernet tokens, oslo.cache in-process memory cache,
bcrypt at the bench's cost, served by gunicorn with one sync worker per core.
Installs itself into bench/.peers/keystone-venv once; every run gets fresh
state (database, keys, config) under bench/.peers/keystone-state.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from processes import Server, free_port

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent / ".peers"
VENV = PEERS / "keystone-venv"
STATE = PEERS / "keystone-state"
REQUIREMENTS = HERE / "keystone-requirements.txt"
_INSTALLED_MARK = VENV / ".bench-installed"  # holds the requirements text last installed

WSGI_APP = "keystone.server.wsgi:initialize_public_application()"


def ensure_installed(log: Path) -> None:
    """Create the venv and install Keystone + gunicorn unless the same pins are there."""
    wanted = REQUIREMENTS.read_text()
    if _INSTALLED_MARK.exists() and _INSTALLED_MARK.read_text() == wanted:
        return
    print(f"installing Keystone into {VENV} (once; log: {log}) ...", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    if not (VENV / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", str(VENV)], log)
    _run([str(VENV / "bin" / "pip"), "install", "-r", str(REQUIREMENTS)], log)
    _run([str(VENV / "bin" / "python"), "-c", "import keystone.server.wsgi, gunicorn"], log)
    _INSTALLED_MARK.write_text(wanted)


def installed_version() -> str:
    out = subprocess.run(
        [str(VENV / "bin" / "python"), "-c",
         "import importlib.metadata as m; print(m.version('keystone'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def _run(argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{argv[0]} {argv[1]} failed ({result.returncode}):\n{tail}")


def _config(state: Path, rounds: int) -> str:
    return f"""\
[DEFAULT]
log_file = {state / "keystone.log"}
use_stderr = false

[database]
connection = sqlite:///{state / "keystone.db"}

[token]
provider = fernet

[fernet_tokens]
key_repository = {state / "fernet-keys"}

[credential]
key_repository = {state / "credential-keys"}

[cache]
enabled = true
backend = dogpile.cache.memory

[identity]
password_hash_algorithm = bcrypt
password_hash_rounds = {rounds}
"""


def start(admin_password: str, rounds: int, workers: int) -> tuple[Server, str]:
    """Configure, bootstrap and start Keystone; return the server and its v3 URL."""
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    config = STATE / "keystone.conf"
    config.write_text(_config(STATE, rounds))
    port = free_port()
    public_url = f"http://127.0.0.1:{port}/v3"

    manage = [str(VENV / "bin" / "keystone-manage"), "--config-file", str(config)]
    owner = ["--keystone-user", pwd.getpwuid(os.getuid()).pw_name,
             "--keystone-group", grp.getgrgid(os.getgid()).gr_name]  # fmt: skip
    setup_log = STATE / "setup.log"
    # The password goes through the environment, not argv, so `ps` never shows it.
    env = {**os.environ, "OS_BOOTSTRAP_PASSWORD": admin_password}
    _run([*manage, "db_sync"], setup_log)
    _run([*manage, "fernet_setup", *owner], setup_log)
    _run([*manage, "credential_setup", *owner], setup_log)
    _run(
        [*manage, "bootstrap",
         "--bootstrap-username", "admin",
         "--bootstrap-project-name", "admin",
         "--bootstrap-role-name", "admin",
         "--bootstrap-region-id", "RegionOne",
         "--bootstrap-public-url", public_url,
         "--bootstrap-internal-url", public_url],
        setup_log, env=env,
    )  # fmt: skip

    # Keystone's oslo.config parses sys.argv inside the workers, so gunicorn gets
    # no arguments: it reads ./gunicorn.conf.py from its working directory.
    (STATE / "gunicorn.conf.py").write_text(_gunicorn_config(port, workers))
    server = Server(
        "keystone",
        [str(VENV / "bin" / "gunicorn")],
        log_path=STATE / "gunicorn.log",
        env={**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(config)},
        cwd=STATE,
    )
    server.start()
    try:
        server.wait_ready(public_url)
    except BaseException:
        server.stop()
        raise
    return server, public_url


def _gunicorn_config(port: int, workers: int) -> str:
    return f"""\
wsgi_app = {WSGI_APP!r}
bind = "127.0.0.1:{port}"
workers = {workers}
worker_class = "sync"
timeout = 120
control_socket_disable = True  # else every gunicorn shares ~/.gunicorn/gunicorn.ctl
"""
