"""PostgreSQL restarted under load, under a real `souverain serve`: while the database is
down every API answers 503 in its own error format with Retry-After (or the client sees a
clean connection error), never a 500; once it is back the API answers again without any
restart of ours; every create that was acknowledged is there afterwards. The background
loops log one line a round while it is away, not a traceback.

Three clients for LOAD_SECONDS: Nova keypairs and Neutron networks over HTTP, S3 objects
through boto3 (its retries off: each answer is seen as it came). PostgreSQL is stopped
(`pg_ctl stop -m fast`, what a restart does first) at RESTART_AT, started DOWN_FOR later.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from tests.host_cleanup import kill_guests
from tests.platform.conftest import Server, server_env, start_node
from tests.platform.test_scale_out import _free_port
from tests.postgres import PostgresServer, postgres_server

pytestmark = pytest.mark.e2e
LOAD_SECONDS = 20.0
RESTART_AT = 6.0
DOWN_FOR = 3.0
PAUSE = 0.05  # between one client's requests: a bounded load on a shared 2-core machine
BUCKET = "restart-load"


@dataclass
class Outcomes:
    """What each client was told, by kind: names acknowledged, refusals, and the rest."""

    acknowledged: dict[str, list[str]] = field(default_factory=dict)
    unavailable: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    after_restart: dict[str, int] = field(default_factory=dict)  # acknowledged once back
    wrong: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, outcome: str, name: str, back: bool) -> None:
        with self.lock:
            if outcome == "ok":
                self.acknowledged.setdefault(kind, []).append(name)
                if back:
                    self.after_restart[kind] = self.after_restart.get(kind, 0) + 1
            elif outcome == "503":
                self.unavailable[kind] = self.unavailable.get(kind, 0) + 1
            elif outcome == "connection":
                self.dropped[kind] = self.dropped.get(kind, 0) + 1
            else:
                self.wrong.append(f"{kind} {name}: {outcome}")


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with postgres_server() as pg:
        yield pg


def _http(
    url: str, method: str, token: str, body: Any = None
) -> tuple[int | str, Message | None, bytes]:
    """Status, headers and body; ("connection", None, reason) when no answer came."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("X-Auth-Token", token)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return "connection", None, repr(exc).encode()


def _judge_openstack(answer: tuple[int | str, Message | None, bytes], unavailable: str) -> str:
    """ok, 503 (in the API's own format, with Retry-After), connection, or what was wrong."""
    status, headers, raw = answer
    if status == "connection":
        return "connection"
    if status in (200, 201):
        return "ok"
    if status == 503 and headers is not None:
        try:
            body = json.loads(raw)
        except ValueError:
            return f"503 not JSON: {raw[:200]!r}"
        if unavailable not in body or int(headers.get("Retry-After", "0")) <= 0:
            return f"503 in the wrong format: {headers.items()} {raw[:200]!r}"
        return "503"
    return f"{status}: {raw[:300]!r}"


def _judge_s3(call: Callable[[], Any]) -> str:
    try:
        call()
    except botocore.exceptions.ClientError as exc:
        meta = exc.response["ResponseMetadata"]
        retry_after = meta.get("HTTPHeaders", {}).get("retry-after", "0")
        if (
            meta["HTTPStatusCode"] == 503
            and exc.response["Error"]["Code"] == "ServiceUnavailable"
            and int(retry_after) > 0
        ):
            return "503"
        return f"{meta['HTTPStatusCode']} {exc.response['Error']} retry-after {retry_after}"
    except (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectionClosedError,
        botocore.exceptions.ReadTimeoutError,
    ):
        return "connection"
    return "ok"


def _admin(node: Server, base: str) -> dict[str, Any]:
    """A token and an EC2 credential for S3."""
    token = node.token()
    who = node.scope_of(token)
    status, _, raw = _http(
        f"{base}/identity/v3/users/{who['user']['id']}/credentials/OS-EC2",
        "POST",
        token,
        {"tenant_id": who["project"]["id"]},
    )
    assert status == 201, raw
    return {"token": token, "credential": json.loads(raw)["credential"]}


def _s3(s3_port: int, credential: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{s3_port}",
        aws_access_key_id=credential["access"],
        aws_secret_access_key=credential["secret"],
        region_name="fr-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


class Load:
    """The clients, each in its own thread, until `until` (monotonic)."""

    def __init__(self, base: str, token: str, s3: Any, outcomes: Outcomes) -> None:
        self.base, self.token, self.s3, self.outcomes = base, token, s3, outcomes
        self.back_at = float("inf")  # when PostgreSQL was started again

    def keypair(self, index: int) -> tuple[str, str]:
        name = f"kp-{index}"
        answer = _http(
            f"{self.base}/compute/v2.1/os-keypairs", "POST", self.token, {"keypair": {"name": name}}
        )
        return name, _judge_openstack(answer, "serviceUnavailable")

    def network(self, index: int) -> tuple[str, str]:
        name = f"net-{index}"
        answer = _http(
            f"{self.base}/network/v2.0/networks", "POST", self.token, {"network": {"name": name}}
        )
        return name, _judge_openstack(answer, "NeutronError")

    def object(self, index: int) -> tuple[str, str]:
        key = f"object-{index}"
        body = f"acknowledged {index}".encode()
        return key, _judge_s3(lambda: self.s3.put_object(Bucket=BUCKET, Key=key, Body=body))

    def run(self, kind: str, make: Callable[[int], tuple[str, str]], until: float) -> None:
        index = 0
        while time.monotonic() < until:
            sent = time.monotonic()
            name, outcome = make(index)
            self.outcomes.note(kind, outcome, name, back=sent > self.back_at)
            index += 1
            time.sleep(PAUSE)


def test_a_postgresql_restart_under_load_gives_503s_then_recovers_losing_nothing_acknowledged(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    port, s3_port = _free_port(), _free_port()
    env = server_env(
        SOUVERAIN_DATABASE__URL=own_postgres.url(own_postgres.create_database()),
        SOUVERAIN_NETWORK__DATAPLANE="false",
        SOUVERAIN_COMPUTE__QUOTA_KEY_PAIRS="-1",
        SOUVERAIN_NETWORK__QUOTA_NETWORKS="-1",
    )
    node = start_node(tmp_path / "data", port, s3_port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        admin = _admin(node, base)
        s3 = _s3(s3_port, admin["credential"])
        s3.create_bucket(Bucket=BUCKET)
        outcomes = Outcomes()
        load = Load(base, admin["token"], s3, outcomes)
        _load_through_a_restart(load, own_postgres)
        assert not outcomes.wrong, outcomes.wrong[:5]
        assert sum(outcomes.unavailable.values()) + sum(outcomes.dropped.values()) > 0, (
            "no request met the outage: the restart did not happen under load"
        )
        for kind in ("keypair", "network", "object"):  # recovered, no restart of ours
            assert outcomes.after_restart.get(kind, 0) > 0, (kind, outcomes)
        _every_acknowledged_create_is_there(load)
        assert node.proc is not None and node.proc.poll() is None
    finally:
        if node.proc is not None and node.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGTERM)
            node.proc.wait(timeout=60)
        kill_guests(node.data_dir)
    log = (tmp_path / "data.log").read_text()
    assert node.proc.returncode == 0, log[-3000:]
    assert "unexpected error" not in log  # no request met a 500
    # the background loops said the database was away, a line a round, no traceback
    assert "identity sync: the database is unreachable" in log
    assert "identity sync failed" not in log
    assert "renewing lease" not in log  # the lease keeper too: a line, not a traceback


def _load_through_a_restart(load: Load, pg: PostgresServer) -> None:
    start = time.monotonic()
    until = start + LOAD_SECONDS
    clients = [
        threading.Thread(target=load.run, args=(kind, make, until), name=kind)
        for kind, make in (
            ("keypair", load.keypair),
            ("network", load.network),
            ("object", load.object),
        )
    ]
    for client in clients:
        client.start()
    try:
        time.sleep(RESTART_AT)
        pg.stop()
        time.sleep(DOWN_FOR)
    finally:
        pg.start()
        load.back_at = time.monotonic()
        for client in clients:
            client.join()


def _every_acknowledged_create_is_there(load: Load) -> None:
    acknowledged = load.outcomes.acknowledged
    status, _, raw = _http(f"{load.base}/compute/v2.1/os-keypairs", "GET", load.token)
    assert status == 200, raw
    keypairs = {k["keypair"]["name"] for k in json.loads(raw)["keypairs"]}
    assert set(acknowledged["keypair"]) <= keypairs, set(acknowledged["keypair"]) - keypairs
    status, _, raw = _http(f"{load.base}/network/v2.0/networks", "GET", load.token)
    assert status == 200, raw
    networks = {n["name"] for n in json.loads(raw)["networks"]}
    assert set(acknowledged["network"]) <= networks, set(acknowledged["network"]) - networks
    keys: set[str] = set()
    for page in load.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys.update(item["Key"] for item in page.get("Contents", []))
    assert set(acknowledged["object"]) <= keys, set(acknowledged["object"]) - keys
    for key in acknowledged["object"][-3:]:  # and their bytes
        index = key.rsplit("-", 1)[1]
        body = load.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert body == f"acknowledged {index}".encode()
