"""Start the real `souverain serve` as a subprocess on a free port and a temp data dir."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.host_cleanup import kill_guests
from tests.postgres import TEST_BACKENDS, Backend, postgres_session
from tests.public_net import public_network_env

SOUVERAIN = str(Path(sys.executable).with_name("souverain"))
ADMIN_PASSWORD = "platform-admin-pw"


@dataclass
class Server:
    data_dir: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> Server:
        clouds = self.data_dir / "clouds.yaml"
        before = clouds.stat().st_mtime_ns if clouds.exists() else None
        out_path, err_path = self.logs
        out, err = out_path.open("a"), err_path.open("a")
        self.proc = subprocess.Popen(
            [
                SOUVERAIN,
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                "0",
                "--s3-port",
                "0",
                *self.args,
            ],
            env=self.env,
            # files, not pipes: a pipe nobody reads stops the server once full (a long test
            # with agents' heartbeats logging fills 64 KiB in about a minute)
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,  # its workers too can be stopped as one group
        )
        out.close()
        err.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out_text, err_text = self.output()
                raise RuntimeError(f"server exited {self.proc.returncode}: {out_text}\n{err_text}")
            if clouds.exists() and clouds.stat().st_mtime_ns != before:
                try:
                    self.get("/identity/v3")
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise TimeoutError("server did not come up")

    @property
    def logs(self) -> tuple[Path, Path]:
        """Where its stdout and stderr go: beside its data dir."""
        return (
            self.data_dir.with_name(f"{self.data_dir.name}.out"),
            self.data_dir.with_name(f"{self.data_dir.name}.err"),
        )

    def output(self) -> tuple[str, str]:
        """Everything it wrote so far to stdout and stderr."""
        return tuple(  # type: ignore[return-value]
            p.read_text(errors="replace") if p.exists() else "" for p in self.logs
        )

    @property
    def database_url(self) -> str:
        """Where this server keeps its state: its setting, else the data dir's SQLite file."""
        return (
            self.env.get("SOUVERAIN_DATABASE__URL") or f"sqlite:///{self.data_dir / 'souverain.db'}"
        )

    @property
    def auth_url(self) -> str:
        data = yaml.safe_load((self.data_dir / "clouds.yaml").read_text())
        return str(data["clouds"]["souverain"]["auth"]["auth_url"])

    @property
    def base(self) -> str:
        return self.auth_url.rsplit("/identity", 1)[0]

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
        return self.request("GET", path, headers=headers)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Message, bytes]:
        req = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def token(self, password: str = ADMIN_PASSWORD) -> str:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": "admin", "domain": {"id": "default"}, "password": password}
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
            }
        }
        status, headers, _ = self.request(
            "POST",
            "/identity/v3/auth/tokens",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 201, status
        return headers["X-Subject-Token"]

    def scope_of(self, token: str) -> dict[str, Any]:
        """What the token says: its user, project and roles (Keystone's token body)."""
        status, _, body = self.get(
            "/identity/v3/auth/tokens", {"X-Auth-Token": token, "X-Subject-Token": token}
        )
        assert status == 200, body
        return dict(json.loads(body)["token"])

    def assert_audit_intact(self) -> None:
        """`souverain audit verify` on this server's data dir says the chain is whole."""
        result = subprocess.run(
            [SOUVERAIN, "audit", "verify", "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str, str]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        out, err = self.output()
        return self.proc.returncode, out, err


def start_node(
    data_dir: Path, port: int, s3_port: int, env: dict[str, str], ready: str = "/identity/v3"
) -> Server:
    """`souverain serve` on fixed ports, in a process group of its own (a kill takes its
    workers too), its output in `<data dir>.log` (a pipe nobody reads would stop it once
    full); returned once `ready` answers (the port is bound before start-up ends)."""
    node = Server(data_dir, env)
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir.parent / f"{data_dir.name}.log").open("w") as log:
        node.proc = subprocess.Popen(
            [
                *(SOUVERAIN, "serve", "--data-dir", str(data_dir)),
                *("--port", str(port), "--s3-port", str(s3_port)),
            ],
            env=env,
            stdout=log,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}{ready}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert node.proc.poll() is None, f"the node exited: see {data_dir}.log"
        try:
            with urllib.request.urlopen(url, timeout=5):
                return node
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} never answered")


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUVERAIN_")}
    env.update(
        {
            "SOUVERAIN_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "SOUVERAIN_IDENTITY__BCRYPT_ROUNDS": "4",
            "SOUVERAIN_AUDIT__FSYNC": "false",
            **public_network_env(),
        }
    )
    env.update(extra)
    return env


ServerFactory = Callable[..., Server]


@pytest.fixture(params=TEST_BACKENDS)
def backend(request: pytest.FixtureRequest, postgres_session: None) -> Iterator[Backend]:
    """The database the test's servers keep their state in: `[sqlite]` or `[postgresql]`."""
    Backend.use(request.param)
    try:
        yield Backend
    finally:
        Backend.drop_since(0)
        Backend.use("sqlite")


@pytest.fixture
def make_server(tmp_path: Path, backend: type[Backend]) -> Iterator[ServerFactory]:
    """Servers made here are killed at the end of the test if still running. Servers of one
    data dir share its database (a restart finds its state): SQLite's file or a fresh
    PostgreSQL database, per the backend."""
    made: list[Server] = []
    urls: dict[Path, str] = {}

    def factory(data_dir: Path | None = None, args: list[str] | None = None, **env: str) -> Server:
        data_dir = data_dir or tmp_path / "data"
        if data_dir not in urls:
            urls[data_dir] = backend.database_url()
        if urls[data_dir]:
            env.setdefault("SOUVERAIN_DATABASE__URL", urls[data_dir])
        server = Server(data_dir, server_env(**env), list(args or []))
        made.append(server)
        return server

    yield factory
    for server in made:
        if server.proc is not None and server.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.communicate(timeout=30)
        kill_guests(server.data_dir)  # its bridges and tables outlive it by design


__all__ = ["postgres_session"]
