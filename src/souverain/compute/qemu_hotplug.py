"""Hot-plug: volumes and NICs added to and removed from a running guest over QMP.

A device leaves in two steps (the guest acknowledges the unplug, then its block node or
netdev is closed); each call can be repeated until the job is done.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from souverain.compute.qemu_guest import (
    Disk,
    DriverError,
    Nic,
    blockdev_nodes,
    check_disk,
    check_disk_id,
    device_properties,
    guest_device_name,
    nic_args,
    node_names,
    secret_id,
    secret_object,
)
from souverain.compute.qemu_monitor import QemuMonitor

DETACH_POLL_INTERVAL = 0.1
NODE_RELEASE_TIMEOUT = 5.0
# QEMU takes a repeated unplug request once the last is 5 s old (virtual clock)
UNPLUG_RESEND_INTERVAL = 6.0


class QemuHotplug(QemuMonitor):
    """Volumes and NICs of running guests."""

    # ----------------------------------------------------------------- volumes

    guest_device_name = staticmethod(guest_device_name)

    def attach_disk(self, uuid: str, disk: Disk) -> None:
        """Hot-plug a volume into a running (or paused) guest; already attached is fine.

        The guest names it with the lowest free vdX letter (see guest_device_name).
        """
        check_disk(disk)
        with self._instance_lock(uuid):
            self._require_running(uuid)
            if disk.id in self._peripherals(uuid):
                return
            # left by a detach the guest finished late (or is finishing now)
            if not self._delete_nodes_once_free(uuid, disk.id):
                raise DriverError(f"volume {disk.id} is still being released by server {uuid}")
            try:
                if disk.passphrase is not None:  # over the monitor socket, never argv
                    _keep_qmp_messages_out_of_logs()
                    with contextlib.suppress(DriverError):  # left by an attach cut short
                        self._qmp(uuid, "object-del", id=secret_id(disk.id))
                    self._qmp(uuid, "object-add", **secret_object(disk))
                for node in blockdev_nodes(disk):
                    self._qmp(uuid, "blockdev-add", **node)
                self._qmp(uuid, "device_add", **device_properties(disk))
            except DriverError:
                with contextlib.suppress(DriverError):  # QEMU's first message is the one
                    self._delete_nodes(uuid, disk.id)
                raise

    def detach_disk(self, uuid: str, disk_id: str, timeout: float = 30.0) -> bool:
        """Ask the guest to release a volume, wait for it, then close the file.

        True once released and the file closed (or when there is nothing to release: no such
        device, no process); False if the guest has not let go within `timeout`: the device
        stays, the unplug stays requested (a paused guest completes it when it runs again), the
        caller decides. Called again after a False, it finishes the job.
        """
        check_disk_id(disk_id)
        with self._instance_lock(uuid):
            if self.pid(uuid) is None:
                return True
            if not self._unplugged(uuid, disk_id, timeout):
                return False
            return self._delete_nodes_once_free(uuid, disk_id)

    def _unplugged(self, uuid: str, device_id: str, timeout: float) -> bool:
        """Ask the guest to release a device until it does or `timeout` passes. The request
        is made again every few seconds: one made while the guest boots, before its hotplug
        driver listens, is otherwise lost (QEMU takes a repeat once the first has aged)."""
        deadline = time.monotonic() + timeout
        while device_id in self._peripherals(uuid):
            now = time.monotonic()
            if now >= deadline:
                return False
            try:
                self._qmp(uuid, "device_del", id=device_id)
            except DriverError as exc:
                # asked a moment ago and not yet done: keep waiting for the same unplug
                if "already in the process of unplug" not in str(exc):
                    raise
            resend = min(deadline, now + UNPLUG_RESEND_INTERVAL)
            while device_id in self._peripherals(uuid) and time.monotonic() < resend:
                time.sleep(DETACH_POLL_INTERVAL)
        return True

    def _delete_nodes_once_free(self, uuid: str, disk_id: str) -> bool:
        """blockdev-del the nodes of a device that is gone: it leaves the QOM tree a moment
        before it lets go of its block node, and until then blockdev-del says "in use"."""
        deadline = time.monotonic() + NODE_RELEASE_TIMEOUT
        while True:
            try:
                self._delete_nodes(uuid, disk_id)
                return True
            except DriverError as exc:
                if "is in use" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    return False
            time.sleep(DETACH_POLL_INTERVAL)

    def has_disk(self, uuid: str, disk_id: str) -> bool:
        """Whether the running guest has the volume's device (False when not running)."""
        check_disk_id(disk_id)
        if self.pid(uuid) is None:
            return False
        return disk_id in self._peripherals(uuid)

    # ----------------------------------------------------------------- NICs

    def attach_nic(self, uuid: str, nic: Nic) -> None:
        """Hot-plug a tap NIC into a running (or paused) guest; already there is fine."""
        if nic.kind != "tap" or not nic.id or nic.ifname is None:
            raise DriverError("a hot-plugged NIC is a tap with an id")
        nic_args(0, nic)  # validates the id, MAC and tap name
        with self._instance_lock(uuid):
            self._require_running(uuid)
            if nic.id in self._peripherals(uuid):
                return
            netdev_id = f"{nic.id}-net"
            netdev: dict[str, Any] = {
                "type": "tap",
                "id": netdev_id,
                "ifname": nic.ifname,
                "script": "no",
                "downscript": "no",
            }
            with contextlib.suppress(DriverError):  # left by a detach cut short
                self._qmp(uuid, "netdev_del", id=netdev_id)
            self._qmp(uuid, "netdev_add", **netdev)
            device: dict[str, Any] = {
                "driver": "virtio-net-pci",
                "id": nic.id,
                "netdev": netdev_id,
                "mac": nic.mac.lower(),
            }
            try:
                self._qmp(uuid, "device_add", **device)
            except DriverError:
                with contextlib.suppress(DriverError):
                    self._qmp(uuid, "netdev_del", id=netdev_id)
                raise

    def detach_nic(self, uuid: str, nic_id: str, timeout: float = 30.0) -> bool:
        """Unplug a NIC (the guest acknowledges), then close its tap. False on timeout."""
        check_disk_id(nic_id)
        with self._instance_lock(uuid):
            if self.pid(uuid) is None:
                return True
            if not self._unplugged(uuid, nic_id, timeout):
                return False
            with contextlib.suppress(DriverError):  # never added, or gone with the device
                self._qmp(uuid, "netdev_del", id=f"{nic_id}-net")
            return True

    def resize_disk(self, uuid: str, disk_id: str, size_bytes: int) -> None:
        """Grow an attached volume (and its file) to `size_bytes`; the guest sees the change."""
        check_disk_id(disk_id)
        with self._instance_lock(uuid):
            self._require_running(uuid)
            node, _ = node_names(disk_id)
            current = self._node_sizes(uuid).get(node)
            if current is None:
                raise DriverError(f"server {uuid} has no volume {disk_id}")
            if size_bytes < current:
                raise DriverError(f"volume is {current} bytes; it can grow but not shrink")
            if size_bytes > current:
                resize: dict[str, Any] = {"node-name": node, "size": size_bytes}
                self._qmp(uuid, "block_resize", **resize)

    def _peripherals(self, uuid: str) -> set[str]:
        """The ids of the guest's devices that have one (the volumes)."""
        children = self._qmp(uuid, "qom-list", path="/machine/peripheral")
        return {
            str(child["name"])
            for child in children
            if str(child.get("type", "")).startswith("child<")
        }

    def _node_sizes(self, uuid: str) -> dict[str, int]:
        nodes = self._qmp(uuid, "query-named-block-nodes", flat=True)
        return {str(node["node-name"]): int(node["image"]["virtual-size"]) for node in nodes}

    def _delete_nodes(self, uuid: str, disk_id: str) -> None:
        """blockdev-del the volume's format and file nodes, whichever exist, then its
        passphrase's secret object if it has one."""
        existing = self._node_sizes(uuid)
        for node in node_names(disk_id):
            if node in existing:
                delete: dict[str, Any] = {"node-name": node}
                self._qmp(uuid, "blockdev-del", **delete)
        with contextlib.suppress(DriverError):  # a plain volume has none
            self._qmp(uuid, "object-del", id=secret_id(disk_id))

    def _volume_slots(self, uuid: str) -> dict[str, int]:
        """Each volume's and NIC's PCI slot on bus 0 (the devices that carry an id)."""
        slots: dict[str, int] = {}
        for bus in self._qmp(uuid, "query-pci"):
            for device in bus["devices"]:
                if device.get("qdev_id"):
                    slots[str(device["qdev_id"])] = int(device["slot"])
        return slots

    # ----------------------------------------------------------------- statistics

    def block_stats(self, uuid: str) -> dict[str, dict[str, int]]:
        """Each block device's I/O counters (QMP query-blockstats), by device id; empty
        when the guest does not run."""
        if self.pid(uuid) is None:
            return {}
        try:
            found = self._qmp(uuid, "query-blockstats")
        except DriverError:
            return {}
        out: dict[str, dict[str, int]] = {}
        for entry in found or []:
            stats = entry.get("stats", {})
            out[_block_name(entry)] = {
                "read_bytes": int(stats.get("rd_bytes", 0)),
                "read_requests": int(stats.get("rd_operations", 0)),
                "write_bytes": int(stats.get("wr_bytes", 0)),
                "write_requests": int(stats.get("wr_operations", 0)),
                "errors_count": int(stats.get("failed_rd_operations", 0))
                + int(stats.get("failed_wr_operations", 0)),
            }
        return out


def _keep_qmp_messages_out_of_logs() -> None:
    """qemu.qmp logs every message it sends at DEBUG ("--> {...}"): an object-add of a
    volume's passphrase must not reach a log even when an operator turns debugging on."""
    qmp_log = logging.getLogger("qemu.qmp")
    if qmp_log.getEffectiveLevel() < logging.INFO:
        qmp_log.setLevel(logging.INFO)


def _block_name(entry: dict[str, Any]) -> str:
    """A query-blockstats entry's name: its -drive id ("root", "config"), else the id of
    its device ("vol-<volume id>", from "/machine/peripheral/<id>/virtio-backend")."""
    if entry.get("device"):
        return str(entry["device"])
    parts = str(entry.get("qdev", "")).split("/")
    if "peripheral" in parts and parts.index("peripheral") + 1 < len(parts):
        return parts[parts.index("peripheral") + 1]
    return str(entry.get("node-name", ""))
