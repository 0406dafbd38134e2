"""Compute rules behind one facade: flavors, quotas, key pairs, servers and their
state machine, what is plugged into them, and the host's truth.

Each resource family is a module of its own (`flavors`, `quotas`, `keypairs`,
`servers`, `creation`, `actions`, `attachments`, `reconcile`); this class builds them
over one shared core and hands out their methods under the names the API calls.
Every action is a compare-and-set on the server row (`states.py`), so two actions
never run on one server at once; the host work then runs on a worker thread of this
process and ends by writing the new state. A restart finds any action cut short and
either completes it or ends it cleanly (`reconcile`).

The guests are QEMU processes that outlive the control plane; the database holds what
was asked, `QemuDriver` tells what is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.metering import Meter
from souverain.compute.actions import Actions, Backup
from souverain.compute.agents import HostAgents
from souverain.compute.aggregates import Aggregates
from souverain.compute.attachments import Attachments
from souverain.compute.consoles import Consoles
from souverain.compute.core import GIB, NO_VALID_HOST, SYSTEM, BillingState, ComputeCore
from souverain.compute.creation import MAX_USER_DATA, BootVolume, Creation, ServerRequest
from souverain.compute.diagnostics import Diagnosis, Diagnostics
from souverain.compute.evacuation import Evacuation
from souverain.compute.flavors import DEFAULT_FLAVORS, Flavors
from souverain.compute.guests import Guests
from souverain.compute.host_services import HostService, HostServices, ServiceChange
from souverain.compute.keypairs import Keypairs
from souverain.compute.listing import IDS_PER_QUERY, LISTED_COLUMNS, ListedServer
from souverain.compute.migrations import Migrations
from souverain.compute.models import Server
from souverain.compute.qemu import QemuDriver
from souverain.compute.quotas import QUOTA_RESOURCES, Quotas
from souverain.compute.reconcile import HostSync, end_orphaned_builds
from souverain.compute.rescue import Rescue
from souverain.compute.seams import GuestImages, GuestNetworking, GuestVolumes
from souverain.compute.server_groups import GroupRequest, ServerGroups
from souverain.compute.servers import Servers
from souverain.compute.servers import hostname_of as _hostname_of
from souverain.compute.shelving import Shelving
from souverain.compute.states import BILLABLE_VM_STATES, STATUS_FILTER, status_of
from souverain.config import ComputeSettings
from souverain.db.engine import Database
from souverain.identity.service import IdentityService

__all__ = [
    "BILLABLE_VM_STATES",
    "DEFAULT_FLAVORS",
    "GIB",
    "IDS_PER_QUERY",
    "LISTED_COLUMNS",
    "MAX_USER_DATA",
    "NO_VALID_HOST",
    "QUOTA_RESOURCES",
    "STATUS_FILTER",
    "SYSTEM",
    "Backup",
    "BillingState",
    "BootVolume",
    "ComputeService",
    "Diagnosis",
    "GroupRequest",
    "HostService",
    "ListedServer",
    "ServerRequest",
    "ServiceChange",
    "_hostname_of",
    "status_of",
]

log = logging.getLogger("souverain.compute")


class ComputeService:
    """The parts wired together; each method hands its call to the part that owns it."""

    def __init__(
        self,
        db: Database,
        identity: IdentityService,
        images: GuestImages,
        volumes: GuestVolumes,
        network: GuestNetworking,
        driver: QemuDriver,
        clock: Clock,
        settings: ComputeSettings,
    ) -> None:
        core = ComputeCore(db, images, volumes, network, driver, clock, settings)
        self.core = core
        self.db = db
        self.identity = identity  # the API authenticates its requests against it
        self.images = images
        self.volumes = volumes
        self.network = network
        self.driver = driver
        self.clock = clock
        self.settings = settings
        self.host = core.host
        self.hosts = core.hosts
        if settings.local_host:  # an API node of agent hosts runs no guest itself
            self.hosts.register_local(core.capacity)
        quotas = Quotas(core)
        flavors = Flavors(core)
        guests = Guests(core)
        servers = Servers(core, quotas)
        keypairs = Keypairs(core, quotas)
        self.agents = HostAgents(core, guests.forget, guests)
        self.evacuation = Evacuation(core, self.agents)
        self.migrations = Migrations(core, self.agents, guests)
        self.agents.moves = self.migrations
        creation = Creation(core, flavors, quotas, guests, servers, self.agents)
        actions = Actions(core, flavors, guests, servers, self.agents)
        attachments = Attachments(core, guests, self.agents.volumes)
        self._host_sync = HostSync(core, guests)
        self.orphans = self._host_sync.orphans
        self._flavors, self._quotas, self._keypairs = flavors, quotas, keypairs
        self._creation, self._servers, self._guests = creation, servers, guests
        self._actions, self._attachments = actions, attachments
        self.server_groups = ServerGroups(core)
        self.host_services = HostServices(core)
        self.aggregates = Aggregates(core)
        self.diagnostics = Diagnostics(core, guests)
        self.rescue = Rescue(core, guests, actions)
        self.shelving = Shelving(core, guests, actions)
        self.consoles = Consoles(core)

    # ------------------------------------------------------------------ flavors

    def list_flavors(
        self,
        ctx: RequestContext,
        is_public: bool | None = True,
        min_ram: int = 0,
        min_disk: int = 0,
    ) -> list[dict[str, Any]]:
        return self._flavors.list_flavors(ctx, is_public, min_ram, min_disk)

    def get_flavor(self, ctx: RequestContext, flavor_id: str) -> dict[str, Any]:
        return self._flavors.get_flavor(ctx, flavor_id)

    def create_flavor(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        return self._flavors.create_flavor(ctx, data)

    def update_flavor(
        self, ctx: RequestContext, flavor_id: str, description: str | None
    ) -> dict[str, Any]:
        return self._flavors.update_flavor(ctx, flavor_id, description)

    def delete_flavor(self, ctx: RequestContext, flavor_id: str) -> None:
        self._flavors.delete_flavor(ctx, flavor_id)

    def flavor_extra_specs(self, ctx: RequestContext, flavor_id: str) -> dict[str, str]:
        return self._flavors.flavor_extra_specs(ctx, flavor_id)

    def set_flavor_extra_specs(
        self,
        ctx: RequestContext,
        flavor_id: str,
        specs: dict[str, str],
        replace_key: str | None = None,
    ) -> dict[str, str]:
        return self._flavors.set_flavor_extra_specs(ctx, flavor_id, specs, replace_key)

    def delete_flavor_extra_spec(self, ctx: RequestContext, flavor_id: str, key: str) -> None:
        self._flavors.delete_flavor_extra_spec(ctx, flavor_id, key)

    def flavor_access(self, ctx: RequestContext, flavor_id: str) -> list[dict[str, str]]:
        return self._flavors.flavor_access(ctx, flavor_id)

    def change_flavor_access(
        self, ctx: RequestContext, flavor_id: str, project_id: str, add: bool
    ) -> list[dict[str, str]]:
        return self._flavors.change_flavor_access(ctx, flavor_id, project_id, add)

    # ------------------------------------------------------------------ quotas

    def default_quotas(self) -> dict[str, int]:
        return self._quotas.default_quotas()

    def quota_limits(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        return self._quotas.quota_limits(ctx, project_id)

    def quota_usage(
        self, ctx: RequestContext, project_id: str
    ) -> tuple[dict[str, int], dict[str, int]]:
        return self._quotas.quota_usage(ctx, project_id)

    def update_quota(
        self, ctx: RequestContext, project_id: str, changes: dict[str, int], force: bool
    ) -> dict[str, int]:
        return self._quotas.update_quota(ctx, project_id, changes, force)

    def reset_quota(self, ctx: RequestContext, project_id: str) -> None:
        self._quotas.reset_quota(ctx, project_id)

    # ------------------------------------------------------------------ key pairs

    def list_keypairs(
        self, ctx: RequestContext, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        return self._keypairs.list_keypairs(ctx, user_id)

    def get_keypair(
        self, ctx: RequestContext, name: str, user_id: str | None = None
    ) -> dict[str, Any]:
        return self._keypairs.get_keypair(ctx, name, user_id)

    def create_keypair(
        self,
        ctx: RequestContext,
        name: str,
        public_key: str | None,
        key_type: str = "ssh",
        user_id: str | None = None,
    ) -> dict[str, Any]:
        return self._keypairs.create_keypair(ctx, name, public_key, key_type, user_id)

    def delete_keypair(self, ctx: RequestContext, name: str, user_id: str | None = None) -> None:
        self._keypairs.delete_keypair(ctx, name, user_id)

    # ------------------------------------------------------------------ servers: create

    def create_servers(self, ctx: RequestContext, req: ServerRequest) -> list[dict[str, Any]]:
        return self._creation.create_servers(ctx, req)

    # ------------------------------------------------------------------ servers

    def server_view(self, row: Server) -> dict[str, Any]:
        return self._servers.server_view(row)

    def server_views(self, rows: Sequence[Server]) -> list[dict[str, Any]]:
        return self._servers.server_views(rows)

    def get_server(self, ctx: RequestContext, server_id: str) -> dict[str, Any]:
        return self._servers.get_server(ctx, server_id)

    def find_servers(self, ctx: RequestContext, filters: dict[str, Any]) -> list[ListedServer]:
        return self._servers.find_servers(ctx, filters)

    def views_of_servers(self, server_ids: Sequence[str]) -> Iterator[dict[str, Any]]:
        return self._servers.views_of_servers(server_ids)

    def servers_in_use(self, ctx: RequestContext) -> dict[str, int]:
        return self._servers.servers_in_use(ctx)

    def update_server(
        self, ctx: RequestContext, server_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self._servers.update_server(ctx, server_id, data)

    def metadata(self, ctx: RequestContext, server_id: str) -> dict[str, str]:
        return self._servers.metadata(ctx, server_id)

    def set_metadata(
        self, ctx: RequestContext, server_id: str, items: dict[str, str], replace: bool
    ) -> dict[str, str]:
        return self._servers.set_metadata(ctx, server_id, items, replace)

    def delete_metadata(self, ctx: RequestContext, server_id: str, key: str) -> None:
        self._servers.delete_metadata(ctx, server_id, key)

    def tags(self, ctx: RequestContext, server_id: str) -> list[str]:
        return self._servers.tags(ctx, server_id)

    def set_tags(self, ctx: RequestContext, server_id: str, tags: list[str]) -> list[str]:
        return self._servers.set_tags(ctx, server_id, tags)

    def add_tag(self, ctx: RequestContext, server_id: str, tag: str) -> bool:
        return self._servers.add_tag(ctx, server_id, tag)

    def delete_tag(self, ctx: RequestContext, server_id: str, tag: str | None) -> None:
        self._servers.delete_tag(ctx, server_id, tag)

    def instance_actions(
        self, ctx: RequestContext, server_id: str, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        return self._servers.instance_actions(ctx, server_id, request_id)

    def instance_action(
        self, ctx: RequestContext, server_id: str, request_id: str
    ) -> dict[str, Any]:
        return self._servers.instance_action(ctx, server_id, request_id)

    # ------------------------------------------------------------------ servers: actions

    def delete_server(self, ctx: RequestContext, server_id: str) -> None:
        self._actions.delete_server(ctx, server_id)

    def stop(self, ctx: RequestContext, server_id: str) -> None:
        self._actions.stop(ctx, server_id)

    def start(self, ctx: RequestContext, server_id: str) -> None:
        self._actions.start(ctx, server_id)

    def reboot(self, ctx: RequestContext, server_id: str, hard: bool) -> None:
        self._actions.reboot(ctx, server_id, hard)

    def pause(self, ctx: RequestContext, server_id: str) -> None:
        self._actions.pause(ctx, server_id)

    def unpause(self, ctx: RequestContext, server_id: str) -> None:
        self._actions.unpause(ctx, server_id)

    def suspend(self, ctx: RequestContext, server_id: str) -> None:
        self._actions.suspend(ctx, server_id)

    def resume(self, ctx: RequestContext, server_id: str) -> None:
        self._actions.resume(ctx, server_id)

    def create_image(
        self, ctx: RequestContext, server_id: str, name: str, metadata: dict[str, str]
    ) -> str:
        return self._actions.create_image(ctx, server_id, name, metadata)

    def create_backup(self, ctx: RequestContext, server_id: str, backup: Backup) -> str:
        return self._actions.create_backup(ctx, server_id, backup)

    def set_security_group(
        self, ctx: RequestContext, server_id: str, name: str, member: bool
    ) -> None:
        """The server's ports join (member) or leave the project's security group `name`."""
        with self.db.session() as s:
            project_id = self.core.server_row(s, ctx, server_id).project_id
        self.network.set_server_security_group(server_id, project_id, name, member)

    def reset_state(self, ctx: RequestContext, server_id: str, vm_state: str) -> None:
        self._actions.reset_state(ctx, server_id, vm_state)

    def rebuild(
        self, ctx: RequestContext, server_id: str, image_ref: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        return self._actions.rebuild(ctx, server_id, image_ref, changes)

    def resize(self, ctx: RequestContext, server_id: str, flavor_ref: str) -> None:
        self._actions.resize(ctx, server_id, flavor_ref)

    def confirm_resize(self, ctx: RequestContext, server_id: str) -> None:
        moved = self.migrations.holding(server_id)  # a cold migration between agent hosts
        if moved is not None:
            self.migrations.confirm(ctx, server_id, moved)
            return
        self._actions.confirm_resize(ctx, server_id)

    def revert_resize(self, ctx: RequestContext, server_id: str) -> None:
        moved = self.migrations.holding(server_id)
        if moved is not None:
            self.migrations.revert(ctx, server_id, moved)
            return
        self._actions.revert_resize(ctx, server_id)

    def lock(self, ctx: RequestContext, server_id: str, locked: bool) -> None:
        self._actions.lock(ctx, server_id, locked)

    def console_output(self, ctx: RequestContext, server_id: str, length: int | None) -> str:
        return self._actions.console_output(ctx, server_id, length)

    # ------------------------------------------------------------------ volumes and interfaces

    def volume_attachments(self, ctx: RequestContext, server_id: str) -> list[dict[str, Any]]:
        return self._attachments.volume_attachments(ctx, server_id)

    def attach_volume(
        self, ctx: RequestContext, server_id: str, volume_id: str, delete_on_termination: bool
    ) -> dict[str, Any]:
        return self._attachments.attach_volume(ctx, server_id, volume_id, delete_on_termination)

    def detach_volume(self, ctx: RequestContext, server_id: str, volume_id: str) -> None:
        self._attachments.detach_volume(ctx, server_id, volume_id)

    def resize_attached(self, server_id: str, volume_id: str, size_gib: int) -> None:
        self._attachments.resize_attached(server_id, volume_id, size_gib)

    def disk_writes_held(self, server_id: str) -> AbstractContextManager[None]:
        return self._actions.disk_writes_held(server_id)

    def interfaces(self, ctx: RequestContext, server_id: str) -> list[dict[str, Any]]:
        return self._attachments.interfaces(ctx, server_id)

    def attach_interface(
        self,
        ctx: RequestContext,
        server_id: str,
        port_id: str | None,
        network_id: str | None,
        fixed_ip: str | None,
    ) -> dict[str, Any]:
        return self._attachments.attach_interface(ctx, server_id, port_id, network_id, fixed_ip)

    def detach_interface(self, ctx: RequestContext, server_id: str, port_id: str) -> None:
        self._attachments.detach_interface(ctx, server_id, port_id)

    @property
    def meter(self) -> Meter:
        """Where billable changes are recorded (the billing service's, set by the server)."""
        return self.core.meter

    @meter.setter
    def meter(self, meter: Meter) -> None:
        self.core.meter = meter

    def set_up(self) -> None:
        """Once per start: default flavors, the root disks' pool (RBD, made if missing),
        then make the database true to the host."""
        self._flavors.set_up()
        if self.driver.rbd_disks is not None:
            self.driver.rbd_disks.setup()
        log.info("compute: guests run under %s", self.driver.accelerator())
        self.reconcile()

    def close(self) -> None:
        """Let running actions finish; the guests themselves keep running."""
        self.core.close()

    # ------------------------------------------------------------------ the host

    def reconcile(self) -> None:
        self._host_sync.reconcile()

    def sync_power_states(self) -> None:
        self._host_sync.sync_power_states()

    def end_orphaned_builds(self) -> list[str]:
        return end_orphaned_builds(self.core, self.settings.orphaned_build_after)

    def hypervisors(self) -> list[dict[str, Any]]:
        return self.host_services.hypervisors()

    def servers_on_host(self, host: str) -> list[dict[str, str]]:
        return self.host_services.servers_on(host)

    def refresh_addresses(self, server_id: str) -> None:
        """The network told us a port of this server changed (Nova's network-changed event)."""
        with self.db.session() as s:
            row = s.get(Server, server_id)
            if row is None or row.deleted or not isinstance(row.networks, list):
                return
        self.core.set(server_id, addresses=self._guests.addresses(server_id))
