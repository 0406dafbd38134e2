"""Two API nodes on one PostgreSQL behind HAProxy, two agent hosts (simulation driver):
kill -9 one API node in the middle of 200 server creates. Every create either answered
(202) or failed cleanly at the client; every server that exists ends ACTIVE or, if its
node died before placing it, in ERROR with a fault that says what to do: none is left
half-made, and every 202 names a server that exists."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.haproxy import HAProxy
from tests.platform.conftest import Server, server_env, start_node
from tests.platform.test_host_agents import AgentProcess
from tests.platform.test_scale_out import _free_port
from tests.postgres import postgres_server

pytestmark = pytest.mark.e2e
CREATES = 200


def _call(base: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("X-Auth-Token", token)
    request.add_header("Content-Type", "application/json")
    request.add_header("OpenStack-API-Version", "compute 2.90")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _image(base: str, token: str) -> str:
    status, made = _call(
        base,
        "POST",
        "/image/v2/images",
        token,
        {"name": "sim", "disk_format": "raw", "container_format": "bare"},
    )
    assert status == 201, made
    request = urllib.request.Request(
        f"{base}/image/v2/images/{made['id']}/file", data=b"\0" * 4096, method="PUT"
    )
    request.add_header("X-Auth-Token", token)
    request.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(request, timeout=30):
        pass
    return str(made["id"])


def test_killing_an_api_node_during_creates_leaves_nothing_half_made(tmp_path: Path) -> None:
    with postgres_server() as pg:
        url = pg.url(pg.create_database())
        _run(tmp_path, url)


def _run(tmp_path: Path, url: str) -> None:
    port_a, port_b = _free_port(), _free_port()
    balancer = HAProxy([("127.0.0.1", port_a), ("127.0.0.1", port_b)], "/identity/v3")
    env = server_env(
        SOUVERAIN_DATABASE__URL=url,
        SOUVERAIN_SERVER__PUBLIC_URL=balancer.url,
        SOUVERAIN_COMPUTE__LOCAL_HOST="false",
        SOUVERAIN_COMPUTE__ORPHANED_BUILD_AFTER="5",
        SOUVERAIN_COMPUTE__QUOTA_INSTANCES="-1",
        SOUVERAIN_COMPUTE__QUOTA_CORES="-1",
        SOUVERAIN_COMPUTE__QUOTA_RAM="-1",
        SOUVERAIN_NETWORK__DATAPLANE="false",
    )
    nodes: list[Server] = []
    agents: list[AgentProcess] = []
    try:
        nodes.append(start_node(tmp_path / "a", port_a, _free_port(), env))
        shutil.copytree(tmp_path / "a" / "keys", tmp_path / "b" / "keys")
        nodes.append(start_node(tmp_path / "b", port_b, _free_port(), env))
        balancer.start()
        for name in ("hv1", "hv2"):
            agent = AgentProcess(name, tmp_path / name, nodes[0])
            agent.env["SOUVERAIN_AGENT__API_URL"] = balancer.url
            agent.env["SOUVERAIN_AGENT__SIMULATED_VCPUS"] = str(CREATES)  # room for all
            agent.env["SOUVERAIN_AGENT__SIMULATED_MEMORY_MIB"] = str(CREATES * 1024)
            agent.start()
            agents.append(agent)
        _creates_through_a_node_kill(balancer.url, nodes)
    finally:
        for agent in agents:
            agent.kill()
        balancer.stop()
        for node in nodes:
            if node.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait(timeout=30)


def _creates_through_a_node_kill(base: str, nodes: list[Server]) -> None:
    token = nodes[0].token()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, hypervisors = _call(base, "GET", "/compute/v2.1/os-hypervisors/detail", token)
        if status == 200 and sum(h["state"] == "up" for h in hypervisors["hypervisors"]) == 2:
            break
        time.sleep(0.2)
    image = _image(base, token)
    answered: dict[int, Any] = {}
    lock = threading.Lock()

    def create(index: int) -> None:
        body = {"server": {"name": f"ha-{index}", "imageRef": image, "flavorRef": "1",
                           "networks": "none"}}  # fmt: skip
        try:
            result: Any = _call(base, "POST", "/compute/v2.1/servers", token, body)
        except OSError as exc:  # the node died under the request: a clean client error
            result = ("connection", str(exc))
        with lock:
            answered[index] = result
            if len(answered) == CREATES // 3:
                os.killpg(nodes[1].proc.pid, signal.SIGKILL)  # type: ignore[union-attr]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(CREATES)))
    accepted = {r[1]["server"]["id"] for r in answered.values() if r[0] == 202}
    refused = [r for r in answered.values() if r[0] != 202]
    assert len(accepted) + len(refused) == CREATES
    assert all(r[0] in ("connection", 502, 503, 504) for r in refused), refused[:3]
    assert len(accepted) >= CREATES // 2  # the surviving node took the rest
    # every server that exists settles: ACTIVE, or ERROR with the cut-short fault
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status, listed = _call(base, "GET", "/compute/v2.1/servers/detail?limit=1000", token)
        assert status == 200, listed
        states = {s["id"]: s for s in listed["servers"]}
        if all(s["status"] in ("ACTIVE", "ERROR") for s in states.values()):
            break
        time.sleep(0.5)
    assert accepted <= set(states), "a 202 named a server that does not exist"
    unsettled = [s["status"] for s in states.values() if s["status"] not in ("ACTIVE", "ERROR")]
    assert not unsettled, unsettled
    for server in states.values():
        if server["status"] == "ERROR":
            assert "delete it and create it again" in server["fault"]["message"]
