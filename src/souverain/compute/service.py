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

from souverain.common.clock import Clock
from souverain.common.metering import Meter
from souverain.compute.actions import Actions
from souverain.compute.attachments import Attachments
from souverain.compute.core import GIB, NO_VALID_HOST, SYSTEM, BillingState, ComputeCore
from souverain.compute.creation import MAX_USER_DATA, BootVolume, Creation, ServerRequest
from souverain.compute.flavors import DEFAULT_FLAVORS, Flavors
from souverain.compute.guests import Guests
from souverain.compute.keypairs import Keypairs
from souverain.compute.listing import IDS_PER_QUERY, LISTED_COLUMNS, ListedServer
from souverain.compute.models import Server
from souverain.compute.qemu import QemuDriver
from souverain.compute.quotas import QUOTA_RESOURCES, Quotas
from souverain.compute.reconcile import HostSync
from souverain.compute.seams import GuestImages, GuestNetworking, GuestVolumes
from souverain.compute.servers import Servers
from souverain.compute.servers import hostname_of as _hostname_of
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
    "BillingState",
    "BootVolume",
    "ComputeService",
    "ListedServer",
    "ServerRequest",
    "_hostname_of",
    "status_of",
]

log = logging.getLogger("souverain.compute")


class ComputeService:
    """The parts wired together; its methods are the parts' own bound methods, so each
    signature is written once, where the rule is."""

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
        self.capacity = core.capacity
        quotas = Quotas(core)
        flavors = Flavors(core)
        guests = Guests(core)
        servers = Servers(core, quotas)
        keypairs = Keypairs(core, quotas)
        creation = Creation(core, flavors, quotas, guests, servers)
        actions = Actions(core, flavors, guests, servers)
        attachments = Attachments(core, guests)
        self._flavors = flavors
        self._guests = guests
        self._host_sync = HostSync(core, guests)
        self.orphans = self._host_sync.orphans
        self.reconcile = self._host_sync.reconcile
        self.sync_power_states = self._host_sync.sync_power_states
        self.hypervisor = self._host_sync.hypervisor
        self._hand_out_catalog(flavors, quotas, keypairs)
        self._hand_out_servers(servers, creation)
        self._hand_out_actions(actions, attachments)

    def _hand_out_catalog(self, flavors: Flavors, quotas: Quotas, keypairs: Keypairs) -> None:
        self.list_flavors = flavors.list_flavors
        self.get_flavor = flavors.get_flavor
        self.create_flavor = flavors.create_flavor
        self.update_flavor = flavors.update_flavor
        self.delete_flavor = flavors.delete_flavor
        self.flavor_extra_specs = flavors.flavor_extra_specs
        self.set_flavor_extra_specs = flavors.set_flavor_extra_specs
        self.delete_flavor_extra_spec = flavors.delete_flavor_extra_spec
        self.flavor_access = flavors.flavor_access
        self.change_flavor_access = flavors.change_flavor_access

        self.default_quotas = quotas.default_quotas
        self.quota_limits = quotas.quota_limits
        self.quota_usage = quotas.quota_usage
        self.update_quota = quotas.update_quota
        self.reset_quota = quotas.reset_quota

        self.list_keypairs = keypairs.list_keypairs
        self.get_keypair = keypairs.get_keypair
        self.create_keypair = keypairs.create_keypair
        self.delete_keypair = keypairs.delete_keypair

    def _hand_out_servers(self, servers: Servers, creation: Creation) -> None:
        self.server_view = servers.server_view
        self.server_views = servers.server_views
        self.get_server = servers.get_server
        self.find_servers = servers.find_servers
        self.views_of_servers = servers.views_of_servers
        self.servers_in_use = servers.servers_in_use
        self.update_server = servers.update_server
        self.metadata = servers.metadata
        self.set_metadata = servers.set_metadata
        self.delete_metadata = servers.delete_metadata
        self.tags = servers.tags
        self.set_tags = servers.set_tags
        self.add_tag = servers.add_tag
        self.delete_tag = servers.delete_tag
        self.instance_actions = servers.instance_actions
        self.instance_action = servers.instance_action

        self.create_servers = creation.create_servers

    def _hand_out_actions(self, actions: Actions, attachments: Attachments) -> None:
        self.delete_server = actions.delete_server
        self.stop = actions.stop
        self.start = actions.start
        self.reboot = actions.reboot
        self.pause = actions.pause
        self.unpause = actions.unpause
        self.suspend = actions.suspend
        self.resume = actions.resume
        self.create_image = actions.create_image
        self.rebuild = actions.rebuild
        self.resize = actions.resize
        self.confirm_resize = actions.confirm_resize
        self.revert_resize = actions.revert_resize
        self.lock = actions.lock
        self.console_output = actions.console_output

        self.volume_attachments = attachments.volume_attachments
        self.attach_volume = attachments.attach_volume
        self.detach_volume = attachments.detach_volume
        self.resize_attached = attachments.resize_attached
        self.interfaces = attachments.interfaces
        self.attach_interface = attachments.attach_interface
        self.detach_interface = attachments.detach_interface

    @property
    def meter(self) -> Meter:
        """Where billable changes are recorded (the billing service's, set by the server)."""
        return self.core.meter

    @meter.setter
    def meter(self, meter: Meter) -> None:
        self.core.meter = meter

    def set_up(self) -> None:
        """Once per start: default flavors, then make the database true to the host."""
        self._flavors.set_up()
        log.info("compute: guests run under %s", self.driver.accelerator())
        self.reconcile()

    def close(self) -> None:
        """Let running actions finish; the guests themselves keep running."""
        self.core.close()

    def refresh_addresses(self, server_id: str) -> None:
        """The network told us a port of this server changed (Nova's network-changed event)."""
        with self.db.session() as s:
            row = s.get(Server, server_id)
            if row is None or row.deleted or not isinstance(row.networks, list):
                return
        self.core.set(server_id, addresses=self._guests.addresses(server_id))
