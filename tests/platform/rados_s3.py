"""What the RADOS object-store proofs and the benchmark share: a `souverain serve` node whose
object bytes live in a Ceph pool, and a boto3 client of its admin on its S3 port."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.ceph import CephCluster
from tests.platform.conftest import Server, server_env, start_node


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rados_env(cluster: CephCluster, pool: str, **extra: str) -> dict[str, str]:
    """A node's environment: objects in `pool` of `cluster`, every object through RADOS."""
    return server_env(
        SOUVERAIN_CEPH__CONF_FILE=str(cluster.conf),
        SOUVERAIN_CEPH__USER=cluster.user,
        SOUVERAIN_OBJECTSTORE__BACKEND="rados",
        SOUVERAIN_OBJECTSTORE__RADOS_POOL=pool,
        SOUVERAIN_OBJECTSTORE__INLINE_MAX_BYTES="0",
        **extra,
    )


class S3Node:
    """One serving process on fixed ports."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port, self.s3_port = free_port(), free_port()
        env = {"SOUVERAIN_SERVER__PUBLIC_URL": f"http://127.0.0.1:{self.port}", **env}
        self.server: Server = start_node(data_dir, self.port, self.s3_port, env)

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def credentials(self) -> tuple[str, str]:
        """An EC2 key pair of the admin in the admin project."""
        token = self.server.token()
        _, _, body = self.server.get(
            "/identity/v3/auth/tokens", {"X-Auth-Token": token, "X-Subject-Token": token}
        )
        who = json.loads(body)["token"]
        status, _, body = self.server.request(
            "POST",
            f"/identity/v3/users/{who['user']['id']}/credentials/OS-EC2",
            json.dumps({"tenant_id": who["project"]["id"]}).encode(),
            {"X-Auth-Token": token, "Content-Type": "application/json"},
        )
        assert status == 201, body
        cred = json.loads(body)["credential"]
        return cred["access"], cred["secret"]

    def stop(self) -> int:
        code, _, _ = self.server.stop()
        return code


def s3_client(endpoint: str, access: str, secret: str, **config: Any) -> Any:
    """boto3 as a customer configures it, retries off (the test sees every 503)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="fr-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            **{"max_pool_connections": 16, **config},
        ),
    )


def rados_objects(cluster: CephCluster, pool: str) -> set[str]:
    """The RADOS objects in `pool`, listed from outside with the `rados` CLI."""
    listed = subprocess.run(
        ["rados", "-p", pool, "ls"], env=cluster.env(), capture_output=True, text=True, check=True
    )
    return set(listed.stdout.split())
