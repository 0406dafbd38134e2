"""The agent's half of volumes on agent hosts (agent/volumes.py), with a real QemuDriver
on an empty instance dir (no guest runs: what it should hold goes on its command line)
and the control plane's HTTP edge played by a recorder: the disks QEMU gets from an
assignment, hostile assignments refused volume by volume, reports sent only when what
the guest holds changed or the control plane waits for them.
The running-guest path (hot-plug, unplug) is tests/platform/test_agent_volumes.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from souverain.agent.volumes import HostVolumes
from souverain.common.ceph import CephAccess, CephConnection, RbdRef
from souverain.compute.qemu import QemuDriver

SERVER = "0b6f6a4e-9d8e-4f5c-8b8a-1c2d3e4f5a6b"
VOL = "4d1f0f7e-2b9a-4c35-9a57-0e6f8d7c6b5a"
DOC = {"id": VOL, "device": "/dev/vdc", "serial": VOL[:20], "rbd": {"pool": "v", "image": "i"}}


class Reports:
    """The internal API's edge: what the agent would PUT, recorded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], dict[str, str]]] = []

    def report_volumes(
        self, server_id: str, held: list[str], failed: dict[str, str] | None = None
    ) -> None:
        self.sent.append((server_id, held, failed or {}))


def _volumes(tmp_path: Path, ceph: bool = True) -> tuple[HostVolumes, Reports]:
    reports = Reports()
    access = CephConnection(CephAccess(conf=tmp_path / "ceph.conf", user="hv")) if ceph else None
    return HostVolumes(QemuDriver(tmp_path / "compute"), access, reports), reports  # type: ignore[arg-type]


def test_a_guest_starts_with_the_volumes_its_assignment_names(tmp_path: Path) -> None:
    volumes, _ = _volumes(tmp_path)
    [disk] = volumes.disks({"id": SERVER, "volumes": [DOC]})
    assert (disk.id, disk.format, disk.serial) == (f"vol-{VOL}", "raw", VOL[:20])
    assert disk.rbd == RbdRef("v", "i")
    assert disk.ceph == CephAccess(conf=tmp_path / "ceph.conf", user="hv")  # its own


@pytest.mark.parametrize(
    "doc",
    [
        "x",
        {**DOC, "id": "../etc"},
        {**DOC, "rbd": None},
        {**DOC, "rbd": {"pool": "v"}},
        {**DOC, "rbd": {"pool": "-v", "image": "i"}},
        {**DOC, "rbd": {"pool": "v", "image": "i/../j"}},
        {**DOC, "rbd": {"pool": "v", "image": "i,conf=/etc/passwd"}},
    ],
)
def test_hostile_volume_docs_are_left_out(tmp_path: Path, doc: Any) -> None:
    volumes, reports = _volumes(tmp_path)
    assert volumes.disks({"id": SERVER, "volumes": [doc, DOC]}) == volumes.disks(
        {"id": SERVER, "volumes": [DOC]}
    )
    volumes.converge({"id": SERVER, "volumes": [doc] if isinstance(doc, dict) else []})
    if isinstance(doc, dict):
        [(_, held, failed)] = reports.sent
        assert held == [] and list(failed) == [str(doc["id"])[:36]]


def test_a_host_without_cluster_access_says_what_to_set(tmp_path: Path) -> None:
    volumes, reports = _volumes(tmp_path, ceph=False)
    assert volumes.disks({"id": SERVER, "volumes": [DOC]}) == ()
    volumes.converge({"id": SERVER, "volumes": [DOC]})
    [(_, held, failed)] = reports.sent
    assert held == [] and "set ceph.conf_file" in failed[VOL]


def test_reports_go_when_what_is_held_changes_or_is_awaited(tmp_path: Path) -> None:
    volumes, reports = _volumes(tmp_path)
    volumes.converge({"id": SERVER, "volumes": []})
    assert reports.sent == []  # nothing held, nothing awaited: nothing to say
    volumes.converge({"id": SERVER, "volumes": [DOC]})
    volumes.converge({"id": SERVER, "volumes": [DOC]})
    assert reports.sent == [(SERVER, [VOL], {})]  # once
    volumes.converge({"id": SERVER, "volumes": [], "releasing": [VOL]})
    assert reports.sent[-1] == (SERVER, [], {})
    # a restarted agent still answers a detach the control plane waits for
    fresh, again = _volumes(tmp_path)
    fresh.converge({"id": SERVER, "volumes": [], "releasing": [VOL]})
    assert again.sent == [(SERVER, [], {})]
