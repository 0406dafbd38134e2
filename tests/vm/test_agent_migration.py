"""The agent's halves of a move (agent/migration.py) on two hosts' real QEMU drivers in one
process, the control plane played by a recording client (the one edge faked here; the
whole flow with real agents and a real control plane is tests/platform/test_host_migration.py).

What the platform test cannot easily cut short: a destination agent restarted while it
waits starts over cleanly (one QEMU waiting, on new ports); a source whose destination is
not there reports the failure and its guest runs on, untouched; a cold export is stopped
once the move no longer needs it."""

from __future__ import annotations

import base64
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from souverain.agent.migration import EXPORT_PID, MigrationHalves
from souverain.agent.qemu_host import QemuHostDriver
from souverain.compute.qemu import PowerState
from souverain.config import ComputeSettings
from tests.vm.guest_support import TINY_IMAGE, build_tiny_image, missing_requirements

COUNTER = b'#!/bin/sh\n( n=0; while true; do n=$((n+1)); echo "<2>tick $n" > /dev/kmsg; sleep 1; done ) &\n'


class RecordingControlPlane:
    """The internal API as an agent sees it: images to download, reports recorded."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, str, dict[str, Any]]] = []

    def download_image(self, image_id: str, dest: Path) -> None:
        shutil.copyfile(TINY_IMAGE, dest)

    def report_migration(self, migration_id: int, step: str, fields: dict[str, Any]) -> None:
        self.reports.append((migration_id, step, fields))


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    missing = missing_requirements()
    if missing:
        pytest.fail(missing)
    build_tiny_image()
    plane = RecordingControlPlane()
    made = {}
    for name in ("src", "dst"):
        host = QemuHostDriver(
            tmp_path_factory.mktemp(name),
            plane,
            name,
            ComputeSettings(),  # type: ignore[arg-type]
        )
        made[name] = (host, MigrationHalves(host, plane, "127.0.0.1"))  # type: ignore[arg-type]
    try:
        yield {"plane": plane, **made}
    finally:
        for host, _ in made.values():
            for server_id in host.guests():
                host.remove(server_id)
            shutil.rmtree(host.qemu.run_dir, ignore_errors=True)


def _server(desired: str = "running") -> dict[str, Any]:
    server_id = str(uuid.uuid4())
    build = {
        "disk_format": "qcow2",
        "root_volume": False,
        "meta_data": {"uuid": server_id, "name": "mover", "hostname": "mover"},
        "user_data": base64.b64encode(COUNTER).decode(),
        "network_data": {"links": [], "networks": [], "services": []},
    }
    return {
        "id": server_id, "name": "mover", "desired": desired, "task": "spawning",
        "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "image_id": "tiny",
        "flavor": "tiny", "networks": "none", "mac": "fa:16:3e:00:00:99", "build": build,
    }  # fmt: skip


def _with(server: dict[str, Any], mig_id: int, kind: str, role: str, status: str,
          endpoint: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    doc = {"id": mig_id, "type": kind, "role": role, "status": status, "endpoint": endpoint,
           "build": server["build"]}  # fmt: skip
    return {**server, "task": None, "migration": doc}


def _ticks(host: QemuHostDriver, server_id: str) -> int:
    log = host.qemu._console(server_id)
    return log.read_bytes().count(b"tick ") if log.exists() else 0


def _until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.2)


def test_a_restarted_destination_starts_over_and_a_missing_one_fails_the_send(
    agents: dict[str, Any],
) -> None:
    (src, src_half), (dst, _) = agents["src"], agents["dst"]
    plane: RecordingControlPlane = agents["plane"]
    server = _server()
    assert src.converge(server) == "running"
    _until(lambda: _ticks(src, server["id"]) >= 2, 120, "the guest counting on the source")
    pid = src.qemu.pid(server["id"])

    assert MigrationHalves(dst, plane, "127.0.0.1").handle(_with(server, 7, "live-migration",
                                                                 "destination", "preparing"))  # fmt: skip
    first_pid = dst.qemu.pid(server["id"])
    # the agent restarts: a new process knows nothing of what the last one did
    restarted = MigrationHalves(dst, plane, "127.0.0.1")
    assert restarted.handle(_with(server, 7, "live-migration", "destination", "preparing"))
    (one, two) = [r for r in plane.reports if r[0] == 7]
    assert one[1] == two[1] == "listening"
    assert one[2] != two[2]  # ports picked again
    assert dst.qemu.pid(server["id"]) not in (None, first_pid)
    # the destination is gone before the source sends: the failure is reported, the
    # guest runs on under the same QEMU
    dst.remove(server["id"])
    endpoint = {"address": "127.0.0.1", **two[2]}
    assert src_half.handle(_with(server, 7, "live-migration", "source", "running", endpoint))
    _until(lambda: plane.reports[-1][1] != "listening", 60, "the send's report")  # beside
    step, fields = plane.reports[-1][1:]
    assert step == "failed" and "failed" in fields["message"]
    assert src.qemu.pid(server["id"]) == pid
    assert src.qemu.power_state(server["id"]) == PowerState.RUNNING
    before = _ticks(src, server["id"])
    _until(lambda: _ticks(src, server["id"]) > before, 20, "the guest counting on")
    # the same status again does nothing more (done once per process)
    assert src_half.handle(_with(server, 7, "live-migration", "source", "running", endpoint))
    assert plane.reports[-1] == (7, step, fields)
    src.remove(server["id"])


def test_a_cold_move_pulls_the_disk_and_the_export_stops(agents: dict[str, Any]) -> None:
    (src, src_half), (dst, dst_half) = agents["src"], agents["dst"]
    plane: RecordingControlPlane = agents["plane"]
    server = _server("stopped")
    assert src.converge(server) == "stopped"
    assert src_half.handle(_with(server, 8, "migration", "source", "migrating"))
    step, fields = plane.reports[-1][1:]
    assert step == "exported", fields
    pidfile = src.qemu.instance_dir(server["id"]) / EXPORT_PID
    assert pidfile.exists()
    endpoint = {"address": "127.0.0.1", **fields}
    assert dst_half.handle(_with(server, 8, "migration", "destination", "post-migrating",
                                 endpoint))  # fmt: skip
    assert plane.reports[-1][1:] == ("arrived", {"running": False})
    assert (dst.qemu.instance_dir(server["id"]) / "disk.qcow2").exists()
    assert (dst.qemu.instance_dir(server["id"]) / "disk.config").exists()
    # kept stopped until confirmed; then the source's copy goes, the destination boots it
    assert src_half.handle(_with(server, 8, "migration", "source", "finished"))
    assert not pidfile.exists()
    assert not dst_half.handle(_with(server, 8, "migration", "destination", "finished"))
    src.remove(server["id"])
    assert dst.converge({**server, "desired": "running", "task": None}) == "running"
    _until(lambda: _ticks(dst, server["id"]) >= 1, 120, "the moved guest booting")
    dst.remove(server["id"])


def test_a_live_move_told_to_complete_runs_on_the_destination(agents: dict[str, Any]) -> None:
    (src, src_half), (dst, dst_half) = agents["src"], agents["dst"]
    plane: RecordingControlPlane = agents["plane"]
    server = _server()
    assert src.converge(server) == "running"
    _until(lambda: _ticks(src, server["id"]) >= 2, 120, "the guest counting on the source")
    assert dst_half.handle(_with(server, 9, "live-migration", "destination", "preparing"))
    assert plane.reports[-1][:2] == (9, "listening")
    endpoint = {"address": "127.0.0.1", **plane.reports[-1][2], "force_complete": True}
    sending = _with(server, 9, "live-migration", "source", "running", endpoint)
    assert src_half.handle(sending)  # the send starts beside the loop
    assert src_half.handle(sending)  # the next watch: told to complete, the guest pauses
    _until(lambda: plane.reports[-1][:2] == (9, "sent"), 120, "the guest sent")
    console = plane.reports[-1][2]["console"]
    assert b"tick 2" in base64.b64decode(console)
    arriving = {**endpoint, "console": console}
    assert dst_half.handle(_with(server, 9, "live-migration", "destination", "post-migrating",
                                 arriving))  # fmt: skip
    assert plane.reports[-1] == (9, "arrived", {"running": True})
    assert dst.qemu.power_state(server["id"]) == PowerState.RUNNING
    before = _ticks(dst, server["id"])
    _until(lambda: _ticks(dst, server["id"]) > before, 20, "the count going on there")
    src.remove(server["id"])  # what the source's agent does once nothing assigns it
    dst.remove(server["id"])
