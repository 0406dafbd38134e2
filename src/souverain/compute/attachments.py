"""Volumes and ports plugged into a server: hot into a running guest over QMP, or on
its command line at its next start.

Plugging is no task of the state machine: it runs under the server's lock, and the
volume's own moves (reserve, attached, begin_detach, ...) keep the volume side atomic.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.compute import states
from souverain.compute.agent_volumes import AgentVolumes
from souverain.compute.agents import is_agent_host
from souverain.compute.core import GIB, SYSTEM, ComputeCore, check_unlocked
from souverain.compute.guests import Guests, disk_id, disk_of, nic_id
from souverain.compute.models import Server
from souverain.compute.qemu import DriverError, Nic

log = logging.getLogger("souverain.compute")


class Attachments:
    def __init__(self, core: ComputeCore, guests: Guests, on_agents: AgentVolumes) -> None:
        self.core = core
        self.on_agents = on_agents  # servers of agent hosts: their host plugs volumes in
        self.db = core.db
        self.driver = core.driver
        self.volumes = core.volumes
        self.network = core.network
        self.guests = guests

    def _pluggable(self, ctx: RequestContext, server_id: str, verb: str) -> Server:
        """The server's row (detached), or 409 when its state takes nothing plugged in."""
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            check_unlocked(ctx, row)
            if not states.may_plug(row.vm_state, row.task_state):
                raise states.plug_refusal(verb, server_id, row.vm_state, row.task_state)
            s.expunge(row)
            return row

    # ------------------------------------------------------------------ volumes

    def volume_attachments(self, ctx: RequestContext, server_id: str) -> list[dict[str, Any]]:
        self.core.check_visible(ctx, server_id)
        return [
            {**a, "server_id": server_id}
            for a in self.volumes.attachments_of(server_id)
            if a.get("status") in ("in-use", "detaching", "attaching")
        ]

    def attach_volume(
        self, ctx: RequestContext, server_id: str, volume_id: str, delete_on_termination: bool
    ) -> dict[str, Any]:
        row = self._pluggable(ctx, server_id, "attach_volume")
        with self.core.server_lock(server_id):
            device = self.guests.next_device(server_id)
            if self._on_agent_host(row):
                return self.on_agents.attach(ctx, row, volume_id, device, delete_on_termination)
            handle = self.volumes.reserve(ctx, volume_id, server_id)
            attachment_id = str(uuid.uuid4())
            try:
                if self.driver.pid(server_id) is not None:
                    disk = disk_of(
                        {
                            "volume_id": handle.id,
                            "path": handle.path,
                            "format": handle.format,
                            "rbd": handle.rbd,
                            "ceph": handle.ceph,
                            "readonly": handle.readonly,
                            "passphrase": handle.passphrase,
                        }
                    )
                    self.driver.attach_disk(server_id, disk)
            except Exception as exc:
                self.volumes.unreserve(volume_id)
                if isinstance(exc, DriverError):
                    raise Conflict(f"Attaching volume {volume_id} failed: {exc}") from None
                raise
            self.volumes.attached(
                volume_id, server_id, device, attachment_id, delete_on_termination
            )
            self.core.set(server_id)
            with self.db.session() as s:
                self.core.record_action(s, ctx, server_id, row.project_id, "attach_volume")
        return {
            "volume_id": volume_id,
            "server_id": server_id,
            "device": device,
            "attachment_id": attachment_id,
            "delete_on_termination": delete_on_termination,
        }

    def detach_volume(self, ctx: RequestContext, server_id: str, volume_id: str) -> None:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            check_unlocked(ctx, row)
            if row.root_volume_id == volume_id:
                raise BadRequest(
                    f"Volume {volume_id} is the root disk of server {server_id}; "
                    "it goes when the server does."
                )
            if row.task_state:
                raise Conflict(
                    f"Cannot 'detach_volume' instance {server_id} while it is in "
                    f"task_state {row.task_state}"
                )
            project_id = row.project_id
            s.expunge(row)
        if self._on_agent_host(row):
            self.on_agents.detach(ctx, row, volume_id)
            return
        self.volumes.begin_detach(ctx, volume_id, server_id)
        with self.db.session() as s:
            action_id = self.core.record_action(s, ctx, server_id, project_id, "detach_volume")
        self.core.submit(self._detach_disk, server_id, volume_id, action_id)

    def _on_agent_host(self, row: Server) -> bool:
        with self.db.session() as s:
            return is_agent_host(s, row.host)

    def _detach_disk(self, server_id: str, volume_id: str, action_id: int) -> None:
        timeout = self.volumes.settings.detach_timeout
        with self.core.server_lock(server_id):
            try:
                released = self.driver.detach_disk(server_id, disk_id(volume_id), timeout)
            except Exception as exc:
                log.warning("detach of %s from %s failed: %s", volume_id, server_id, exc)
                released = False
            if released:
                self.volumes.detached(volume_id)
                self.core.finish_action(action_id)
            else:
                self.volumes.roll_back_detach(volume_id)
                self.core.finish_action(
                    action_id,
                    f"The guest did not release volume {volume_id} within {timeout:g} s; "
                    "it is still attached. Unmount it in the guest and try again.",
                )

    def resize_attached(self, server_id: str, volume_id: str, size_gib: int) -> None:
        """Extend of an attached volume: grow it through QEMU so the guest sees it at once."""
        with self.db.session() as s:
            row = s.get(Server, server_id)
            if row is not None and is_agent_host(s, row.host):  # its QEMU is not ours
                raise DriverError(
                    f"server {server_id} runs on agent host {row.host}; extend the volume "
                    "while it is detached"
                )
        with self.core.server_lock(server_id):
            if self.driver.pid(server_id) is None:
                raise DriverError("the server is not running; extend the volume while detached")
            self.driver.resize_disk(server_id, disk_id(volume_id), size_gib * GIB)

    # ------------------------------------------------------------------ interfaces (ports)

    def interfaces(self, ctx: RequestContext, server_id: str) -> list[dict[str, Any]]:
        self.core.check_visible(ctx, server_id)
        return self.guests.ports(server_id)

    def attach_interface(
        self,
        ctx: RequestContext,
        server_id: str,
        port_id: str | None,
        network_id: str | None,
        fixed_ip: str | None,
    ) -> dict[str, Any]:
        """Plug a port (given, or made on a network) into the server, hot if it runs."""
        row = self._pluggable(ctx, server_id, "attach_interface")
        if self.network.dataplane is None:
            raise BadRequest("This cloud runs no network data plane: no port can be attached.")
        if row.networks != "none" and not isinstance(row.networks, list):
            raise BadRequest(
                "This server has the isolated user-mode NIC: create it with networks to "
                "attach ports."
            )
        if port_id is None and network_id is None:
            network_id = self.network.get_or_create_auto_network(ctx)["id"]
        with self.core.server_lock(server_id):
            port = self.network.create_port_for_server(
                ctx,
                network_id=network_id,
                port_id=port_id,
                fixed_ip=fixed_ip,
                server_id=server_id,
                project_id=row.project_id,
            )
            try:
                self._plug_port(server_id, port)
            except Exception as exc:
                self.network.release_port(port["id"])
                if isinstance(exc, DriverError):
                    raise Conflict(f"Attaching port {port['id']} failed: {exc}") from None
                raise
            if not isinstance(row.networks, list):
                self.core.set(server_id, networks=[])
            self.core.set(server_id, addresses=self.guests.addresses(server_id))
            with self.db.session() as s:
                self.core.record_action(s, ctx, server_id, row.project_id, "attach_interface")
            return dict(self.network.get_port(SYSTEM, port["id"]))

    def _plug_port(self, server_id: str, port: dict[str, Any]) -> None:
        self.network.bind_port(port["id"], server_id, self.core.host)
        if self.driver.pid(server_id) is not None:
            tap = self.network.wire_port(port["id"])
            nic = Nic(mac=port["mac_address"], kind="tap", ifname=tap, id=nic_id(port["id"]))
            self.driver.attach_nic(server_id, nic)

    def detach_interface(self, ctx: RequestContext, server_id: str, port_id: str) -> None:
        row = self._pluggable(ctx, server_id, "detach_interface")
        if port_id not in [p["id"] for p in self.network.ports_of(server_id, row.project_id)]:
            raise NotFound(f"Port {port_id[:64]} is not attached")
        with self.db.session() as s:
            action_id = self.core.record_action(
                s, ctx, server_id, row.project_id, "detach_interface"
            )
        self.core.submit(self._unplug_port, server_id, port_id, action_id)

    def _unplug_port(self, server_id: str, port_id: str, action_id: int) -> None:
        timeout = self.core.settings.shutdown_timeout
        with self.core.server_lock(server_id):
            try:
                released = self.driver.detach_nic(server_id, nic_id(port_id), timeout)
            except Exception as exc:
                log.warning("detach of port %s from %s failed: %s", port_id, server_id, exc)
                released = False
            if not released:
                self.core.finish_action(
                    action_id,
                    f"The guest did not release port {port_id} within {timeout:g} s; it "
                    "is still attached. Try again.",
                )
                return
            # the server stops showing the port before the port shows itself free
            self.core.set(server_id, addresses=self.guests.addresses(server_id, without=port_id))
            self.network.release_port(port_id)
            self.core.finish_action(action_id)
