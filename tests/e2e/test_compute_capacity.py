"""Scheduling against a full host: concurrent creates never overbook, and deletes give back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import CloudFactory
from tests.host_cleanup import kill_guests, qemu_processes

FITS = 4
NANO_MIB = 128
RESERVED_MIB = 512


def test_twenty_concurrent_creates_on_a_host_with_room_for_four(
    start_cloud: CloudFactory, tiny_image_file: Path
) -> None:
    cloud = start_cloud(
        "capacity",
        SOUVERAIN_IMAGE__TINY_IMAGE=str(tiny_image_file),
        SOUVERAIN_COMPUTE__HOST_MEMORY_MIB=str(RESERVED_MIB + FITS * NANO_MIB),
        SOUVERAIN_COMPUTE__RESERVED_HOST_MEMORY_MIB=str(RESERVED_MIB),
        SOUVERAIN_COMPUTE__RAM_ALLOCATION_RATIO="1.0",
    )
    data_dir = cloud.server.data_dir
    try:
        # two projects of ten: each stays inside its own instance quota, the host is the limit
        tokens = [cloud.token_for(cloud.make_tenant(f"capacity{i}")) for i in range(2)]
        admin = cloud.admin_token()
        image = cloud.api("GET", "/image/v2/images?name=tiny", token=tokens[0]).json()["images"][0]

        def create(index: int) -> str:
            headers = {"X-Auth-Token": tokens[index % 2], "OpenStack-API-Version": "compute 2.74"}
            body = {
                "server": {
                    "name": f"crowd-{index}",
                    "imageRef": image["id"],
                    "flavorRef": "1",
                    "networks": "none",
                }
            }
            response = httpx.post(
                f"{cloud.base_url}/compute/v2.1/servers", json=body, headers=headers, timeout=60
            )
            assert response.status_code == 202, response.text
            return str(response.json()["server"]["id"])

        with ThreadPoolExecutor(20) as pool:
            ids = list(pool.map(create, range(20)))
        token_of = {server_id: tokens[i % 2] for i, server_id in enumerate(ids)}

        def settled() -> dict[str, Any]:
            states = {}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                states = {
                    i: cloud.api("GET", f"/compute/v2.1/servers/{i}", token=token_of[i]).json()[
                        "server"
                    ]
                    for i in ids
                }
                if all(s["status"] in ("ACTIVE", "ERROR") for s in states.values()):
                    return states
                time.sleep(0.5)
            raise AssertionError({i: s["status"] for i, s in states.items()})

        states = settled()
        active = [i for i, s in states.items() if s["status"] == "ACTIVE"]
        failed = [s for s in states.values() if s["status"] == "ERROR"]
        faults = {s["fault"]["message"] for s in failed}
        assert len(active) == FITS, faults
        assert len(failed) == 20 - FITS
        assert all("No valid host was found" in m for m in faults), faults
        assert len(qemu_processes(data_dir)) == FITS

        def used() -> int:
            hypervisors = cloud.api(
                "GET",
                "/compute/v2.1/os-hypervisors/detail",
                token=admin,
                headers={"OpenStack-API-Version": "compute 2.1"},
            ).json()["hypervisors"]
            return int(hypervisors[0]["memory_mb_used"])

        assert used() == RESERVED_MIB + FITS * NANO_MIB
        for server_id in ids:
            assert (
                cloud.api(
                    "DELETE", f"/compute/v2.1/servers/{server_id}", token=token_of[server_id]
                ).status_code
                == 204
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            cloud.api("GET", f"/compute/v2.1/servers/{i}", token=token_of[i]).status_code != 404
            for i in ids
        ):
            time.sleep(0.5)
        assert used() == RESERVED_MIB
        assert qemu_processes(data_dir) == {}
        cloud.stop_and_check()
    finally:
        kill_guests(data_dir)
