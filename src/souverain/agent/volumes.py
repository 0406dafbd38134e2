"""The agent's volumes: a guest holds the RBD volumes its assignment names (`volumes`)
and no other, hot-plugged through the same QemuDriver the all-in-one uses; the agent
reports what each guest holds, which is what moves the volumes' statuses on the control
plane (compute/agent_volumes.py).

The host reaches the cluster with its own `[ceph]` settings: the assignment names pool
and image only. A guest that does not run holds nothing; the volumes it should hold go
on QEMU's command line at its next start (`disks`).

Must not: touch the root disk, or open a volume itself (QEMU's rbd driver does).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from souverain.agent.client import ControlPlaneError, InternalClient
from souverain.common.ceph import CephConnection, RbdRef
from souverain.compute.guests import disk_id
from souverain.compute.qemu import Disk, DriverError, QemuDriver

log = logging.getLogger("souverain.agent")
DETACH_WAIT = 10.0  # seconds a guest has to let go per round; the next round asks again
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PREFIX = disk_id("")


class VolumeFailure(Exception):
    """A volume the assignment names that this host cannot open, and why."""


class HostVolumes:
    def __init__(
        self, qemu: QemuDriver, ceph: CephConnection | None, client: InternalClient
    ) -> None:
        self.qemu = qemu
        self.ceph = ceph
        self.client = client
        self._reported: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def disks(self, server: dict[str, Any]) -> tuple[Disk, ...]:
        """The volumes a guest starts with (those it should hold), in attach order."""
        found: list[Disk] = []
        for doc in server.get("volumes") or []:
            try:
                found.append(self._disk(doc))
            except VolumeFailure as exc:  # reported by converge; the guest starts without
                log.warning("server %s: %s", server.get("id"), exc)
        return tuple(found)

    def _disk(self, doc: Any) -> Disk:
        if not isinstance(doc, dict) or not _ID.match(str(doc.get("id"))):
            raise VolumeFailure("the assignment names a volume without a valid id")
        rbd = doc.get("rbd")
        if not isinstance(rbd, dict) or not all(
            _NAME.match(str(rbd.get(k, ""))) for k in ("pool", "image")
        ):
            raise VolumeFailure(f"volume {doc['id']} is not an RBD image this host can open")
        if self.ceph is None:
            raise VolumeFailure(
                "this host has no cluster access for RBD volumes: set ceph.conf_file in its "
                "agent's configuration"
            )
        return Disk(
            id=disk_id(str(doc["id"])),
            format="raw",
            readonly=bool(doc.get("readonly")),
            serial=str(doc["id"])[:20],
            rbd=RbdRef(str(rbd["pool"]), str(rbd["image"])),
            ceph=self.ceph.access,
        )

    def converge(self, server: dict[str, Any]) -> None:
        """Plug what the guest should hold, unplug what it should not, report the result
        when it changed (or while the control plane waits for it: `releasing`)."""
        server_id = str(server["id"])
        wanted = [doc for doc in server.get("volumes") or [] if isinstance(doc, dict)]
        if self.qemu.pid(server_id) is None:
            held, failed = self._checked(wanted)  # opened at the guest's next start
        else:
            held, failed = self._plug(server_id, wanted)
        key = (tuple(sorted(held)), tuple(sorted(failed)))
        waiting = bool(wanted or server.get("releasing") or failed)
        if self._reported.get(server_id, ((), ())) == key and not (
            waiting and server_id not in self._reported
        ):
            return
        try:
            self.client.report_volumes(server_id, sorted(held), failed)
        except ControlPlaneError as exc:
            log.warning("server %s: volumes not reported (%s); again next round", server_id, exc)
            return
        self._reported[server_id] = key

    def _checked(self, wanted: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
        held: list[str] = []
        failed: dict[str, str] = {}
        for doc in wanted:
            try:
                held.append(self._disk(doc).id[len(_PREFIX) :])
            except VolumeFailure as exc:
                failed[str(doc.get("id"))[:36]] = str(exc)[:255]
        return held, failed

    def _plug(
        self, server_id: str, wanted: list[dict[str, Any]]
    ) -> tuple[list[str], dict[str, str]]:
        failed: dict[str, str] = {}
        keep = set()
        for doc in wanted:
            try:
                disk = self._disk(doc)
                keep.add(disk.id)
                self.qemu.attach_disk(server_id, disk)
            except (VolumeFailure, DriverError) as exc:
                failed[str(doc.get("id"))[:36]] = str(exc)[:255]
        for device in self._plugged(server_id) - keep:
            if not self.qemu.detach_disk(server_id, device, DETACH_WAIT):
                log.info("server %s has not let go of %s yet", server_id, device)
        return sorted(d[len(_PREFIX) :] for d in self._plugged(server_id)), failed

    def _plugged(self, server_id: str) -> set[str]:
        """The volume devices the running guest has (its QOM peripherals named vol-*)."""
        return {d for d in self.qemu._peripherals(server_id) if d.startswith(_PREFIX)}

    def forget(self, server_id: str) -> None:
        self._reported.pop(server_id, None)
