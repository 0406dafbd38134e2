"""Two API processes on one database: a change made through one is enforced by the other.

This is the scale-out shape (several API nodes, one shared database, the same
key repository), on a shared SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.host_cleanup import kill_guests
from tests.platform.conftest import ADMIN_PASSWORD, SOUVERAIN, Server, server_env
from tests.postgres import Backend

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: Server, port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert server.proc is not None and server.proc.poll() is None, server.output()
        try:  # the port is bound before start-up ends: wait for an answer, not a connection
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/identity/v3", timeout=5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} never opened")


def _start(data_dir: Path, port: int, env: dict[str, str], s3_port: int = 0) -> Server:
    server = Server(data_dir, env)
    server.proc = subprocess.Popen(
        [
            SOUVERAIN,
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--s3-port",
            str(s3_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_ready(server, port)
    return server


def _api_node(env: dict[str, str], dir_a: Path) -> dict[str, str]:
    """Node B: node A's database, and no data plane of its own. On one host the one data
    plane is node A's: a second would claim the same external range, which a start refuses."""
    return dict(
        env,
        SOUVERAIN_DATABASE__URL=env.get("SOUVERAIN_DATABASE__URL")
        or f"sqlite:///{dir_a / 'souverain.db'}",
        SOUVERAIN_NETWORK__DATAPLANE="false",
    )


def _status_until(server: Server, base: str, token: str, want: int, within: float) -> int:
    deadline = time.monotonic() + within
    status = 0
    while time.monotonic() < deadline:
        server_base = base
        status, _, _ = _request(server_base, token)
        if status == want:
            return status
        time.sleep(0.1)
    return status


def _request(base: str, token: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        base + "/identity/v3/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": token},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_revocation_through_one_node_is_enforced_by_the_other(
    tmp_path: Path, backend: type[Backend]
) -> None:
    port_a, port_b = _free_port(), _free_port()
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    env = server_env(SOUVERAIN_SERVER__PUBLIC_URL=f"http://127.0.0.1:{port_a}")
    if url := backend.database_url():
        env["SOUVERAIN_DATABASE__URL"] = url
    node_a = _start(dir_a, port_a, env)
    nodes = [node_a]
    try:
        shutil.copytree(dir_a / "keys", dir_b / "keys")
        env_b = _api_node(env, dir_a)
        node_b = _start(dir_b, port_b, env_b)
        nodes.append(node_b)
        base_a, base_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        token = node_a.token(ADMIN_PASSWORD)
        # node_a.token() talks to the public URL, which is node A
        assert _request(base_b, token)[0] == 200
        status, _, _ = node_a.request(
            "DELETE",
            "/identity/v3/auth/tokens",
            None,
            {"X-Auth-Token": token, "X-Subject-Token": token},
        )
        assert status == 204
        assert _request(base_a, token)[0] == 401
        assert _status_until(node_b, base_b, token, 401, within=5) == 401
        body = json.loads(_request(base_b, node_a.token(ADMIN_PASSWORD))[2])
        assert body["token"]["user"]["name"] == "admin"
    finally:
        for node in nodes:
            code, _, _ = node.stop()
            kill_guests(node.data_dir)  # its bridge and tables outlive it by design
            assert code == 0


def test_bucket_settings_changed_through_one_node_hold_on_the_other(
    tmp_path: Path, backend: type[Backend]
) -> None:
    """Bucket settings are cached per node; another node's change shows within seconds."""
    port_a, port_b, s3_a, s3_b = (_free_port() for _ in range(4))
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    env = server_env(SOUVERAIN_SERVER__PUBLIC_URL=f"http://127.0.0.1:{port_a}")
    if url := backend.database_url():
        env["SOUVERAIN_DATABASE__URL"] = url
    node_a = _start(dir_a, port_a, env, s3_a)
    nodes = [node_a]
    try:
        shutil.copytree(dir_a / "keys", dir_b / "keys")
        env_b = _api_node(env, dir_a)
        nodes.append(_start(dir_b, port_b, env_b, s3_b))
        token = node_a.token(ADMIN_PASSWORD)
        status, _, body = node_a.request(
            "GET",
            "/identity/v3/auth/tokens",
            None,
            {"X-Auth-Token": token, "X-Subject-Token": token},
        )
        who = json.loads(body)["token"]
        status, _, body = node_a.request(
            "POST",
            f"/identity/v3/users/{who['user']['id']}/credentials/OS-EC2",
            json.dumps({"tenant_id": who["project"]["id"]}).encode(),
            {"X-Auth-Token": token, "Content-Type": "application/json"},
        )
        assert status == 201, body
        cred = json.loads(body)["credential"]
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{s3_a}",
            aws_access_key_id=cred["access"],
            aws_secret_access_key=cred["secret"],
            region_name="fr-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket="shared-settings")
        s3.put_object(Bucket="shared-settings", Key="small", Body=b"kept in the database")
        listing_on_b = f"http://127.0.0.1:{s3_b}/shared-settings"

        def anonymous_status() -> int:
            try:
                with urllib.request.urlopen(listing_on_b, timeout=10) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert anonymous_status() == 403  # node B now holds the private settings
        s3.put_bucket_acl(Bucket="shared-settings", ACL="public-read")
        deadline = time.monotonic() + 5
        while anonymous_status() != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert anonymous_status() == 200
    finally:
        for node in nodes:
            code, _, _ = node.stop()
            kill_guests(node.data_dir)  # its bridge and tables outlive it by design
            assert code == 0
