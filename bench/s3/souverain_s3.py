"""Souverain as the S3 bench runs it: `souverain serve` with its S3 port, on a fresh data dir.

The bench signs in to Keystone v3 as the bootstrap admin and asks for EC2
credentials, as a user of the platform would (`openstack ec2 credentials
create`); S3 requests are then signed with them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from processes import Server, ServerFailed, free_port, log_tail
from sigv4 import Credentials
from target import SOUVERAIN, Target

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_BIN = REPO / ".venv" / "bin" / "souverain"


def _post_json(url: str, body: dict[str, Any], token: str | None = None) -> tuple[Any, dict]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read()), dict(response.headers.items())
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")[:400]
        raise ServerFailed(f"Souverain: POST {url} -> HTTP {error.code}: {text}") from error


def ec2_credentials(v3_url: str, password: str, region: str) -> Credentials:
    """Admin token by password (project admin), then EC2 credentials for that project."""
    document, headers = _post_json(
        f"{v3_url}/auth/tokens",
        {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": "admin", "domain": {"name": "Default"},
                                 "password": password}
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
            }
        },
    )  # fmt: skip
    token = {k.lower(): v for k, v in headers.items()}["x-subject-token"]
    user_id = document["token"]["user"]["id"]
    project_id = document["token"]["project"]["id"]
    created, _ = _post_json(
        f"{v3_url}/users/{user_id}/credentials/OS-EC2", {"tenant_id": project_id}, token
    )
    credential = created["credential"]
    return Credentials(credential["access"], credential["secret"], region)


def _wait_listening(server: Server, port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        server.raise_if_exited()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.25)
    raise ServerFailed(
        f"Souverain answers on its identity port but nothing listens on --s3-port {port} "
        f"after {timeout_s:.0f}s: is the S3 service (src/souverain/objectstore) in this "
        f"build?\nLast lines of {server.log_path}:\n{log_tail(server.log_path)}"
    )


def start(binary: Path, state: Path, workers: int, region: str) -> Target:
    """Start Souverain with identity and S3 on free ports; return it with EC2 credentials."""
    if not binary.exists():
        raise FileNotFoundError(f"{binary} not found (make install first)")
    shutil.rmtree(state, ignore_errors=True)
    data_dir = state / "data"
    data_dir.mkdir(parents=True)
    port, s3_port = free_port(), free_port()
    password = secrets.token_urlsafe(18)
    env = {
        **os.environ,
        "SOUVERAIN_ADMIN_PASSWORD": password,
        "SOUVERAIN_SERVER__WORKERS": str(workers),
        # no guest network here: leave no bridge or nftables table on the host
        "SOUVERAIN_NETWORK__DATAPLANE": "false",
    }
    server = Server(
        "souverain",
        [str(binary), "serve", "--data-dir", str(data_dir), "--port", str(port),
         "--s3-port", str(s3_port)],
        log_path=state / "serve.log",
        env=env,
        cwd=state,
    )  # fmt: skip
    server.start()
    v3_url = f"http://127.0.0.1:{port}/identity/v3"
    try:
        server.wait_ready(v3_url)
        _wait_listening(server, s3_port)
        credentials = ec2_credentials(v3_url, password, region)
    except BaseException:
        server.stop()
        raise
    return Target(
        SOUVERAIN,
        f"127.0.0.1:{s3_port}",
        [server],
        credentials,
        setup=f"Souverain (souverain serve, {workers} worker(s), data dir on the same disk)",
    )
