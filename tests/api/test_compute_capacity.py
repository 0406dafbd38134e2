"""A host's capacity under concurrent creates, through the in-process API, on both backends.

The host has room for exactly ten t1.nano servers (1,280 MiB at a RAM ratio of 1.0); twenty
creates released together all get their 202, ten are placed and ten end in ERROR with
Nova's "No valid host", and the host's accounting is exact. On PostgreSQL this holds only
because a claim locks the host first (compute/scheduler.py `lock_host`): at READ COMMITTED
two claims would otherwise both see the same free room.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from souverain import server
from souverain.common.clock import Clock
from souverain.compute import scheduler
from souverain.compute.models import Server
from tests.host_cleanup import kill_guests
from tests.vm.guest_support import build_tiny_image, missing_requirements

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient, settings_for
from .test_quotas import all_at_once

CREATES = 20
ROOM = 10
NANO_MIB = 128  # flavor "1", t1.nano: 1 vCPU, 128 MiB, 1 GiB


@pytest.fixture(scope="module")
def cloud(database_backend: str) -> Iterator[Cloud]:
    missing = missing_requirements()
    if missing is not None:
        pytest.skip(f"server creates need real guests: {missing}")
    root = Path(tempfile.mkdtemp(prefix="souverain-capacity-", dir=_fast_tmp_root()))
    settings = settings_for(root / "data")
    settings.image.tiny_image = build_tiny_image()
    compute = settings.compute
    compute.host_memory_mib, compute.reserved_host_memory_mib = ROOM * NANO_MIB, 0
    compute.ram_allocation_ratio = 1.0
    compute.host_vcpus, compute.host_disk_gib = 100, 1000
    compute.quota_instances, compute.quota_cores, compute.quota_ram = 100, 100, 100_000
    compute.shutdown_timeout = 5
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings, clock=Clock(SteppingClock().now))
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                yield Cloud(client, built)
        finally:
            built.close()
    finally:
        kill_guests(root / "data")
        shutil.rmtree(root, ignore_errors=True)


def _nova(cloud: Cloud, token: str, method: str, path: str, body: Any = None) -> Any:
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.37"}
    return cloud.client.request(method, "/compute/v2.1" + path, headers=headers, json=body)


def _decided(cloud: Cloud, ids: list[str]) -> tuple[int, int]:
    """(placed on the host, refused) among `ids`, from the database."""
    with cloud.platform.db.session() as s:
        placed = s.scalar(select(func.count()).where(Server.id.in_(ids), Server.host.is_not(None)))
        refused = s.scalar(
            select(func.count()).where(Server.id.in_(ids), Server.vm_state == "error")
        )
    return int(placed or 0), int(refused or 0)


def _wait(predicate: Any, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_twenty_concurrent_creates_on_a_host_with_room_for_ten_place_exactly_ten(
    cloud: Cloud,
) -> None:
    alice = cloud.member()
    images = cloud.client.get("/image/v2/images?name=tiny", headers=alice.headers).json()
    request = {
        "server": {
            "name": "c",
            "imageRef": images["images"][0]["id"],
            "flavorRef": "1",
            "networks": "none",
        }
    }
    responses = all_at_once(
        lambda _: _nova(cloud, alice.token, "POST", "/servers", request), CREATES
    )
    assert sorted(r.status_code for r in responses) == [202] * CREATES, [
        r.text for r in responses if r.status_code != 202
    ]
    ids = [r.json()["server"]["id"] for r in responses]
    try:
        _wait(lambda: sum(_decided(cloud, ids)) == CREATES, "every build to be placed or refused")
        assert _decided(cloud, ids) == (ROOM, CREATES - ROOM)
        with cloud.platform.db.session() as s:
            used = scheduler.usage(s, cloud.platform.compute.host)
        assert (used.servers, used.memory_mib, used.vcpus) == (ROOM, ROOM * NANO_MIB, ROOM)
        refused = [_nova(cloud, alice.token, "GET", f"/servers/{i}").json()["server"] for i in ids]
        faults = [s["fault"]["message"] for s in refused if s["status"] == "ERROR"]
        assert len(faults) == CREATES - ROOM and all("No valid host" in f for f in faults)
    finally:
        for server_id in ids:
            _nova(cloud, alice.token, "DELETE", f"/servers/{server_id}")
        for server_id in ids:
            _wait(
                lambda sid=server_id: (
                    _nova(cloud, alice.token, "GET", f"/servers/{sid}").status_code == 404
                ),
                f"{server_id} to go",
            )
