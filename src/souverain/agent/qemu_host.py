"""The agent's QEMU driver: the same `QemuDriver` the all-in-one runs, fed from the
assignment instead of the database.

A guest's files live under the agent's data dir (`compute/instances/<id>`): its root
disk (a qcow2 overlay on the image, fetched once per image from the control plane into
`images/`), its config drive (written from the documents the assignment carries while
the server is being built). QEMU runs detached, so a killed agent leaves its guests
running and the next one adopts them by their instance dirs and pidfiles.

With the VXLAN overlay (the assignment carries `network` and each server its `ports`),
a guest's NICs are taps on its networks' bridges, made and filtered by agent/network.py
before QEMU starts. Without it, a server with ports gets an isolated user-mode NIC with
its port's MAC (its port keeps its addresses), as the all-in-one does without a data plane.

With `compute.disk_backend = "rbd"` (and this agent's own `[ceph]` settings) a root disk is
an RBD clone of the image's snapshot the build names, made in the cluster (no download);
the disk is shared: a guest that leaves this host leaves its disk, and an evacuated server
arrives on its existing disk (the dead host's lock broken) instead of a new one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
from pathlib import Path
from typing import Any

from souverain.agent.client import ControlPlaneError, InternalClient
from souverain.agent.network import AgentNetwork, NetworkFailure
from souverain.agent.runner import DriverFailure
from souverain.agent.volumes import HostVolumes
from souverain.common.ceph import CephConnection, RbdRef
from souverain.compute import scheduler
from souverain.compute.qemu import DriverError, GuestSpec, Nic, PowerState, QemuDriver
from souverain.compute.rbd_disks import RbdRootDisks
from souverain.config import ComputeSettings

log = logging.getLogger("souverain.agent")
# The guest's power state as the agent reports it; anything else is "stopped".
_STATES = {
    PowerState.RUNNING: "running",
    PowerState.PAUSED: "paused",
    PowerState.SUSPENDED: "suspended",
}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class QemuHostDriver:
    kind = "QEMU"

    def __init__(
        self,
        state_dir: Path,
        client: InternalClient,
        name: str,
        settings: ComputeSettings,
        accelerator: str | None = None,
        network: AgentNetwork | None = None,
        ceph: CephConnection | None = None,
    ) -> None:
        self.qemu = QemuDriver(
            state_dir / "compute",
            console_max_bytes=settings.console_max_bytes,
            accelerator=accelerator,
        )
        if settings.disk_backend == "rbd":
            if ceph is None:
                raise DriverError(
                    'compute.disk_backend = "rbd" needs the cluster: set ceph.conf_file in '
                    "this agent's configuration"
                )
            self.qemu.rbd_disks = RbdRootDisks(ceph, settings.rbd_pool)
        self.images = state_dir / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.client = client
        self.name = name
        self.settings = settings
        self.network = network
        self._network_error: str | None = None
        # the RBD volumes its guests hold (agent/volumes.py), through this host's [ceph]
        self.volumes = HostVolumes(self.qemu, ceph, client)

    # ------------------------------------------------------------------ the host's network

    def apply_network(self, assignment: dict[str, Any]) -> None:
        """Taps, bridges, segments and firewall as the assignment's `network` says, before
        any guest converges; a failure holds back guests with ports (not the others)."""
        plan = assignment.get("network")
        if self.network is None or not isinstance(plan, dict):
            return
        try:
            self.network.apply(plan, list(assignment.get("servers") or []))
            self._network_error = None
        except NetworkFailure as exc:
            log.warning("%s", exc)
            self._network_error = str(exc)

    def _nics(self, server: dict[str, Any]) -> tuple[Nic, ...]:
        if server.get("networks") == "none":
            return ()
        ports = server.get("ports")
        if self.network is None or not isinstance(ports, list):
            return (Nic(mac=str(server["mac"]), kind="user"),)
        if self._network_error is not None:
            raise DriverFailure(self._network_error)
        return tuple(
            Nic(
                mac=str(port["mac"]),
                kind="tap",
                ifname=self.network.tap_name(str(port["id"])),
                id=f"nic-{port['id']}",
            )
            for port in ports
        )

    # ------------------------------------------------------------------ what runs here

    def guests(self) -> dict[str, str]:
        instances = self.qemu.root / "instances"
        if not instances.is_dir():
            return {}
        return {
            d.name: self._state(d.name)
            for d in instances.iterdir()
            if _UUID.match(d.name) and self.qemu.root_disk_path(d.name).exists()
        }

    def _state(self, server_id: str) -> str:
        power = self.qemu.power_state(server_id)
        return _STATES.get(power, "stopped")

    # ------------------------------------------------------------------ converge

    def converge(self, server: dict[str, Any]) -> str:
        server_id = str(server["id"])
        if not _UUID.match(server_id):
            raise DriverFailure(f"{server_id[:64]!r} is not a server id")
        want = server["desired"]
        if want == "absent":  # deleted: its RBD disk goes too
            self.volumes.forget(server_id)
            self.qemu.destroy(server_id)
            self.qemu.delete_files(server_id)
            return "absent"
        try:
            if server.get("task") == "rebuild_spawning":
                self._rebuild(server)
            elif not self.qemu.root_disk_path(server_id).exists():
                self._build(server)
            if server.get("reboot"):
                self._reboot(server)
            self._power(server, want, self._state(server_id))
            self.volumes.converge(server)
        except (DriverError, OSError, ControlPlaneError) as exc:
            raise DriverFailure(str(exc)) from exc
        return self._state(server_id)

    def _power(self, server: dict[str, Any], want: str, state: str) -> None:
        """From the guest's power state to the wanted one (running, stopped or paused)."""
        server_id = str(server["id"])
        if want == state:
            return
        if want == "stopped":
            if state == "paused":  # a paused guest cannot take the ACPI shutdown
                self.qemu.destroy(server_id)
            elif state == "suspended":  # its saved memory is dropped, as a power-off
                self._drop_saved_state(server_id)
            else:
                self.qemu.shutdown(server_id, self.settings.shutdown_timeout)
        elif want == "suspended":
            if state == "stopped":
                raise DriverFailure("the guest is not running on this host: nothing to suspend")
            self.qemu.suspend(server_id)
        elif state == "paused" and want == "running":
            self.qemu.unpause(server_id)
        else:
            if state == "suspended":
                self.qemu.resume(self._spec(server))
            elif state == "stopped":
                self.qemu.start(self._spec(server))
            if want == "paused":
                self.qemu.pause(server_id)

    def _drop_saved_state(self, server_id: str) -> None:
        (self.qemu.instance_dir(server_id) / "suspended.state").unlink(missing_ok=True)

    def _build(self, server: dict[str, Any]) -> None:
        build = server.get("build")
        if not isinstance(build, dict):
            raise DriverFailure(
                "its disk is not on this host and the control plane sent no build for it"
            )
        if build.get("root_volume") or not build.get("disk_format"):
            raise DriverFailure("agent hosts boot servers from images only for now")
        server_id, image_id = str(server["id"]), str(server["image_id"])
        parent = _rbd_parent(build.get("rbd"))
        # a clone of the image's snapshot needs no local copy of the image
        image = self.images / "none" if parent and self.qemu.rbd_disks else self._image(image_id)
        self.qemu.make_root_disk(
            server_id, (image_id, image, str(build["disk_format"])), server["disk_gib"], parent
        )
        self._write_config_drive(server_id, build)

    def _write_config_drive(self, server_id: str, build: dict[str, Any]) -> None:
        user_data = None
        if build.get("user_data"):
            try:
                user_data = base64.b64decode(build["user_data"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise DriverFailure("its user data is not base64") from exc
        self.qemu.write_config_drive(
            server_id, build["meta_data"], user_data, build["network_data"]
        )

    def _rebuild(self, server: dict[str, Any]) -> None:
        """Build the guest anew from its (new) image, once per rebuild: whatever was here
        goes first (an evacuated server's new host has nothing to remove). An evacuated
        server whose root disk is on RBD keeps it, as Nova's evacuate on shared storage:
        this host never had the server, its clone exists, the dead host's lock is broken."""
        server_id = str(server["id"])
        directory = self.qemu.instance_dir(server_id)
        done = directory / "rebuild.done"
        action = str(server.get("action"))
        with contextlib.suppress(OSError):
            if done.read_text() == action:
                return
        disks = self.qemu.rbd_disks
        if disks is not None and not directory.exists() and disks.exists(server_id):
            pointer = disks.adopt(directory, server_id)
            fenced = disks.fence(pointer)
            log.info(
                "server %s evacuated here on its RBD disk (%d lock(s) broken)", server_id, fenced
            )
            build = server.get("build")
            if isinstance(build, dict):
                self._write_config_drive(server_id, build)
        else:
            self.qemu.destroy(server_id)
            self.qemu.delete_files(server_id)
            self._build(server)
        done.write_text(action)

    def _reboot(self, server: dict[str, Any]) -> None:
        """Reboot the guest once per request: the instance action it answers is kept in
        its dir, so the next watches (which name it until the report lands) leave it be."""
        server_id, reboot = str(server["id"]), server["reboot"]
        done = self.qemu.instance_dir(server_id) / "reboot.done"
        action = str(reboot.get("action"))
        with contextlib.suppress(OSError):
            if done.read_text() == action:
                return
        if reboot.get("hard"):
            self.qemu.destroy(server_id)
        else:
            self.qemu.shutdown(server_id, self.settings.shutdown_timeout)
        self._drop_saved_state(server_id)  # a reboot starts afresh
        self.qemu.start(self._spec(server))
        done.write_text(action)

    def _image(self, image_id: str) -> Path:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", image_id):
            raise DriverFailure(f"invalid image id {image_id[:64]!r}")
        path = self.images / image_id
        if not path.exists():
            self.client.download_image(image_id, path)
        return path

    def _spec(self, server: dict[str, Any]) -> GuestSpec:
        server_id = str(server["id"])
        directory = self.qemu.instance_dir(server_id)
        drive = directory / "disk.config"
        nics = self._nics(server)
        return GuestSpec(
            uuid=server_id,
            name=str(server["name"]),
            vcpus=int(server["vcpus"]),
            memory_mib=int(server["memory_mib"]),
            disk=self.qemu.root_disk_path(server_id),
            config_drive=drive if drive.exists() else None,
            nics=nics,
            disks=self.volumes.disks(server),
        )

    def console_stamp(self, server_id: str) -> tuple[int, int] | None:
        if not _UUID.match(server_id):
            return None
        try:
            st = (self.qemu.instance_dir(server_id) / "console.log").stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def console_output(self, server_id: str) -> str:
        return self.qemu.console_output(server_id)

    def remove(self, server_id: str) -> None:
        """A guest nothing assigns here any more (it moved, or was evacuated while this
        host was away): its QEMU and files go; a shared RBD disk stays with the server."""
        if not _UUID.match(server_id):
            return
        self.volumes.forget(server_id)
        self.qemu.destroy(server_id)
        self.qemu.delete_files(server_id, keep_shared_disk=True)

    def report(self) -> dict[str, Any]:
        capacity = scheduler.host_capacity(self.name, self.qemu.root, self.settings)
        return {
            "vcpus": capacity.vcpus,
            "memory_mib": capacity.memory_mib,
            "disk_gib": capacity.disk_gib,
            "physical_vcpus": capacity.physical_vcpus,
            "physical_memory_mib": capacity.physical_memory_mib,
            "physical_disk_gib": capacity.physical_disk_gib,
            "hypervisor_type": self.kind,
            "hypervisor_version": 0,
        }


def _rbd_parent(doc: Any) -> RbdRef | None:
    """The image's clone parent the control plane names in a build (image.backend rbd)."""
    if not isinstance(doc, dict):
        return None
    try:
        return RbdRef(str(doc["pool"]), str(doc["image"]), str(doc["snapshot"]))
    except KeyError:
        return None
