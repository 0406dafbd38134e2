"""Creating servers: the request checked against images, volumes, flavors, key pairs,
networks and quota; the rows inserted in one transaction under the project's quota
lock; then each guest built on a worker thread.

A create that is refused leaves nothing behind: ports are made before any row and
let go if the rows are not inserted.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound
from souverain.compute import scheduler
from souverain.compute.agents import HostAgents
from souverain.compute.core import GIB, NO_VALID_HOST, ComputeCore
from souverain.compute.flavors import Flavors
from souverain.compute.guests import Guests, new_admin_password
from souverain.compute.keypairs import keypair_of
from souverain.compute.models import Server, ServerGroupMember
from souverain.compute.qemu import DriverError, GuestSpec, PowerState
from souverain.compute.quotas import Quotas
from souverain.compute.scheduler import PlacementRequest
from souverain.compute.server_groups import group_for_create
from souverain.compute.servers import Servers, hostname_of
from souverain.image.service import BootImage

log = logging.getLogger("souverain.compute")

MAX_USER_DATA = 65535  # bytes of base64 text, as Nova


@dataclass(frozen=True)
class BootVolume:
    """The root disk is a volume: a new one from an image, or an existing one."""

    source: str  # "image" or "volume"
    uuid: str
    size_gib: int = 0
    delete_on_termination: bool = False
    volume_type: str | None = None  # the new volume's type (from an image; Nova's 2.67)


@dataclass(frozen=True)
class ServerRequest:
    """A validated create request; the API turns the wire body into this."""

    name: str
    image_ref: str
    flavor_ref: str
    key_name: str | None = None
    user_data: str | None = None
    metadata: dict[str, str] | None = None
    networks: Any = "auto"
    availability_zone: str | None = None
    min_count: int = 1
    max_count: int = 1
    description: str | None = None
    hostname: str | None = None
    tags: tuple[str, ...] = ()
    config_drive: bool = True
    boot_volume: BootVolume | None = None
    # names or ids of the project's security groups for the ports the server gets made
    security_groups: tuple[str, ...] = ()
    # the guest's administrator password; None: each server gets a new random one
    admin_pass: str | None = None
    access_ip_v4: str | None = None
    access_ip_v6: str | None = None
    group: str | None = None  # the server group the scheduler hints name


@dataclass(frozen=True)
class _Plan:
    """What every server of one create gets, once the request has been checked."""

    req: ServerRequest
    flavor: dict[str, Any]
    image: BootImage | None
    disk_gib: int
    key_data: str | None
    networks: Any
    where: Where


@dataclass(frozen=True)
class Where:
    """Where a create asked its servers to go: a zone, and a host an admin forced."""

    zone: str | None = None
    host: str | None = None


def _mac() -> str:
    tail = secrets.token_bytes(3)
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in tail)


def _gib_of(image: BootImage) -> int:
    return -(-(image.virtual_size or image.size) // GIB)


def _check_user_data(user_data: str | None) -> None:
    if user_data is None:
        return
    if len(user_data) > MAX_USER_DATA:
        raise BadRequest(f"Invalid input for field 'user_data': longer than {MAX_USER_DATA} bytes.")
    try:
        base64.b64decode(user_data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Invalid input for field 'user_data': not valid base64.") from None


def _root_disk_gib(req: ServerRequest, image: BootImage | None, flavor: dict[str, Any]) -> int:
    """The root disk's size on this host (none when it is a volume); 400 if the flavor
    is too small for the image."""
    if image is not None and image.min_ram and flavor["ram"] < image.min_ram:
        raise BadRequest("Flavor's memory is too small for requested image.")
    virtual_gib = _gib_of(image) if image is not None else 0
    if (
        req.boot_volume is None
        and image is not None
        and flavor["disk"]
        and (flavor["disk"] < image.min_disk or flavor["disk"] < virtual_gib)
    ):
        raise BadRequest("Flavor's disk is too small for requested image.")
    if req.boot_volume is not None:
        return 0  # the root disk is a volume: nothing on the host's local disk
    assert image is not None
    return int(flavor["disk"] or max(virtual_gib, image.min_disk, 1))


class Creation:
    def __init__(
        self,
        core: ComputeCore,
        flavors: Flavors,
        quotas: Quotas,
        guests: Guests,
        servers: Servers,
        agents: HostAgents,
    ) -> None:
        self.core = core
        self.db = core.db
        self.driver = core.driver
        self.images = core.images
        self.volumes = core.volumes
        self.network = core.network
        self.flavors = flavors
        self.quotas = quotas
        self.guests = guests
        self.servers = servers
        self.agents = agents

    def create_servers(self, ctx: RequestContext, req: ServerRequest) -> list[dict[str, Any]]:
        if ctx.project_id is None:
            raise Forbidden("Servers belong to a project: use a project-scoped token.")
        image = self._boot_image(ctx, req)
        self._check_boot_volume(ctx, req, image)
        with self.db.session() as s:
            flavor = self.flavors.flavor_doc(s, ctx, req.flavor_ref)
        key_data = self._key_data(ctx, req.key_name)
        where = self._check_zone(ctx, req.availability_zone)
        _check_user_data(req.user_data)
        disk_gib = _root_disk_gib(req, image, flavor)
        networks = self._networks(ctx, req)
        plan = _Plan(req, flavor, image, disk_gib, key_data, networks, where)
        with self.db.session() as s:  # a first look, so ports are made only for what fits
            count = self._fit(s, ctx.project_id, plan)
            if req.group is not None:
                group_for_create(s, ctx, req.group, count)
        server_ids = [str(uuid.uuid4()) for _ in range(count)]
        views, tasks = self._insert_with_ports(ctx, plan, server_ids)
        # The password is shown once (in the create's answer) and reaches the guest only
        # through its config drive: it is never stored with the server.
        passwords = {sid: req.admin_pass or new_admin_password() for sid, _ in tasks}
        for server_id, action_id in tasks:
            self.core.submit(
                self.build,
                server_id,
                image,
                action_id,
                ctx,
                req.boot_volume,
                passwords[server_id],
                where,
            )
        return [{**view, "admin_pass": passwords.get(view["id"])} for view in views]

    # ------------------------------------------------------------------ checks

    def _boot_image(self, ctx: RequestContext, req: ServerRequest) -> BootImage | None:
        boot = req.boot_volume
        if boot is not None and boot.source != "image":
            return None
        image_ref = req.image_ref if boot is None else boot.uuid
        try:
            # root disks cloned on RBD need no local copy of the image
            return self.images.image_for_boot(ctx, image_ref, self.driver.rbd_disks is None)
        except NotFound:
            raise BadRequest(f"Image {image_ref} could not be found.") from None
        except BadRequest as exc:
            raise BadRequest(exc.message) from None

    def _check_boot_volume(
        self, ctx: RequestContext, req: ServerRequest, image: BootImage | None
    ) -> None:
        boot = req.boot_volume
        if boot is None:
            return
        if req.max_count > 1 and boot.source == "volume":
            raise BadRequest("One volume can boot one server: max_count must be 1.")
        if boot.source == "volume":
            try:
                volume = self.volumes.get(ctx, boot.uuid)
            except NotFound:
                raise BadRequest(f"Volume {boot.uuid} could not be found.") from None
            if volume.get("status") != "available":
                raise BadRequest(
                    f"Volume {boot.uuid} is {volume.get('status')}; it must be available."
                )
        elif image is not None:
            if boot.volume_type is not None:
                self._check_volume_type(ctx, boot.volume_type)
            needed = max(_gib_of(image), image.min_disk, 1)
            if boot.size_gib < needed:
                raise BadRequest(
                    f"Volume size {boot.size_gib} GiB is smaller than the image needs "
                    f"({needed} GiB)."
                )

    def _check_volume_type(self, ctx: RequestContext, type_ref: str) -> None:
        """Nova asks Cinder for the type before anything is made: 400 when unknown."""
        try:
            self.volumes.check_volume_type(ctx, type_ref)
        except NotFound:
            raise BadRequest(f"Volume type {type_ref[:255]} could not be found.") from None

    def _key_data(self, ctx: RequestContext, key_name: str | None) -> str | None:
        if key_name is None:
            return None
        with self.db.session() as s:
            key = keypair_of(s, ctx.user_id, key_name)
            if key is None:
                raise BadRequest(f"Invalid key_name provided: keypair {key_name} not found.")
            return key.public_key

    def _check_zone(self, ctx: RequestContext, zone: str | None) -> Where:
        """`zone`, `zone:host` or `zone:host:node` (a host only for an admin, as Nova's
        forced_host policy): the zone must be the default one or an aggregate's."""
        if not zone:
            return Where()
        name, _, rest = zone.partition(":")
        host = rest.split(":")[0] or rest.partition(":")[2] or None
        if host is not None and not ctx.is_admin:
            raise Forbidden(
                "Policy doesn't allow os_compute_api:servers:create:forced_host to be "
                "performed: only an admin may name a host."
            )
        with self.db.session() as s:
            known = self.core.scheduler.zones(s)
        if name and name not in known:
            raise BadRequest(
                f"The requested availability zone is not available: {zone[:255]}; "
                f"this cloud has {', '.join(sorted(known))}."
            )
        return Where(zone=name or None, host=host)

    def _networks(self, ctx: RequestContext, req: ServerRequest) -> Any:
        """The networks as the row keeps them: "auto" resolved to the project's own network
        where the data plane runs, and every named network or port checked."""
        networks = req.networks
        if networks == "auto" and self.network.dataplane is not None:
            # get-me-a-network: the project's own network, subnet and router to public
            networks = [{"uuid": self.network.get_or_create_auto_network(ctx)["id"]}]
        if isinstance(networks, list) and networks:
            self._check_networks(ctx, networks, req.max_count)
        return networks

    def _check_networks(self, ctx: RequestContext, networks: list[Any], count: int) -> None:
        for item in networks:
            if item.get("port"):
                if count > 1:
                    raise BadRequest("A port plugs into one server: max_count must be 1.")
                try:
                    self.network.get_port(ctx, item["port"])
                except NotFound:
                    raise BadRequest(f"Port {item['port']} could not be found.") from None
            elif item.get("uuid"):
                try:
                    self.network.get_network(ctx, item["uuid"])
                except NotFound:
                    raise BadRequest(f"Network {item['uuid']} could not be found.") from None
            else:
                raise BadRequest("Each entry of networks names a network (uuid) or a port.")

    def _fit(self, s: Session, project_id: str, plan: _Plan) -> int:
        req = plan.req
        return self.quotas.servers_that_fit(
            s, project_id, req.min_count, req.max_count, len(req.metadata or {}), plan.flavor
        )

    # ------------------------------------------------------------------ rows and ports

    def _insert_with_ports(
        self, ctx: RequestContext, plan: _Plan, server_ids: list[str]
    ) -> tuple[list[dict[str, Any]], list[tuple[str, int]]]:
        has_ports = isinstance(plan.networks, list) and bool(plan.networks)
        if has_ports:
            # before the quota lock: SQLite has one writer, and the network service writes
            self._make_ports(ctx, plan.networks, server_ids, plan.req.security_groups)
        try:
            views, tasks = self._insert_servers(ctx, plan, server_ids)
        except BaseException:
            if has_ports:
                for server_id in server_ids:
                    self.network.release_ports_of(server_id, ctx.project_id or "")
            raise
        if has_ports:  # another create took some of the room between the two looks
            made = {server_id for server_id, _ in tasks}
            for server_id in server_ids:
                if server_id not in made:
                    self.network.release_ports_of(server_id, ctx.project_id or "")
        return views, tasks

    def _make_ports(
        self,
        ctx: RequestContext,
        networks: list[Any],
        server_ids: list[str],
        groups: tuple[str, ...] = (),
    ) -> None:
        """Every server's ports, before any server row: a refusal leaves nothing behind."""
        made: list[str] = []
        try:
            for server_id in server_ids:
                for item in networks:
                    self.network.create_port_for_server(
                        ctx,
                        network_id=item.get("uuid"),
                        port_id=item.get("port"),
                        fixed_ip=item.get("fixed_ip"),
                        server_id=server_id,
                        project_id=ctx.project_id or "",
                        security_groups=list(groups) or None,
                    )
                made.append(server_id)
        except Exception as exc:
            for server_id in [*made, server_ids[len(made)]]:
                self.network.release_ports_of(server_id, ctx.project_id or "")
            if isinstance(exc, NotFound):  # a security group or network named in the request
                raise BadRequest(exc.message) from None
            raise

    def _insert_servers(
        self, ctx: RequestContext, plan: _Plan, server_ids: list[str]
    ) -> tuple[list[dict[str, Any]], list[tuple[str, int]]]:
        """Lock the project's quota, check again, insert the rows; one transaction."""
        project_id = ctx.project_id
        assert project_id is not None  # create_servers refused an unscoped token
        reservation = "r-" + secrets.token_hex(4)
        with self.db.session() as s:
            self.quotas.lock(s, project_id)
            count = min(len(server_ids), self._fit(s, project_id, plan))
            if plan.req.group is not None:  # again, under the lock: the group may be full now
                group_for_create(s, ctx, plan.req.group, count)
            rows = []
            for index in range(count):
                row = self._new_row(ctx, plan, server_ids[index], index, count, reservation)
                s.add(row)
                if plan.req.group is not None:
                    s.add(ServerGroupMember(server_id=row.id, group_id=plan.req.group))
                s.flush()
                action_id = self.core.record_action(s, ctx, row.id, project_id, "create")
                rows.append((row, action_id))
        # after the commit: a view reads other services (their own connections), and the
        # quota lock must not wait on a pool others exhaust waiting for that very lock
        views = self.servers.server_views([r for r, _ in rows])
        tasks = [(r.id, a) for r, a in rows]
        return views, tasks

    def _new_row(
        self,
        ctx: RequestContext,
        plan: _Plan,
        server_id: str,
        index: int,
        count: int,
        reservation: str,
    ) -> Server:
        req, boot, image, flavor = plan.req, plan.req.boot_volume, plan.image, plan.flavor
        name = req.name if count == 1 else f"{req.name}-{index + 1}"
        now = self.core.now()
        return Server(
            id=server_id,
            project_id=ctx.project_id,
            user_id=ctx.user_id,
            name=name,
            hostname=hostname_of(req.hostname or name),
            description=req.description,
            image_id="" if boot is not None else image.id if image else "",
            root_volume_id=boot.uuid if boot is not None and boot.source == "volume" else None,
            root_volume_delete=bool(boot and boot.delete_on_termination),
            flavor=flavor,
            vcpus=flavor["vcpus"],
            memory_mib=flavor["ram"],
            disk_gib=plan.disk_gib,
            key_name=req.key_name,
            key_data=plan.key_data,
            user_data=req.user_data,
            server_metadata=dict(req.metadata or {}),
            tags=list(req.tags),
            config_drive=True,
            availability_zone=plan.where.zone or self.core.settings.availability_zone,
            networks=plan.networks,
            addresses={},
            mac=_mac(),
            host=None,
            vm_state="building",
            task_state="scheduling",
            power_state=int(PowerState.NOSTATE),
            locked=False,
            reservation_id=reservation,
            launch_index=index,
            access_ip_v4=req.access_ip_v4,
            access_ip_v6=req.access_ip_v6,
            created_at=now,
            updated_at=now,
            deleted=False,
        )

    # ------------------------------------------------------------------ the build

    def build(
        self,
        server_id: str,
        image: BootImage | None,
        action_id: int,
        ctx: RequestContext | None = None,
        boot: BootVolume | None = None,
        admin_pass: str | None = None,
        where: Where | None = None,
    ) -> None:
        with self.core.server_lock(server_id):
            if not self._claim(server_id, action_id, image, where or Where()):
                return
            if self.agents.hand_over(server_id, task="spawning"):
                return  # the agent of the server's host builds it; its report ends the task
            if not self._placed_here(server_id):
                return
            self.core.set(server_id, task_state="spawning")
            try:
                spec = self._make_guest(server_id, image, ctx, boot, admin_pass)
                if self.core.is_deleting(server_id):
                    self.core.finish_action(action_id, "deleted while building")
                    return
                self.driver.start(spec)
            except Exception as exc:
                self._fail_build(server_id, action_id, exc)
                return
            now = self.core.now()
            self.core.update_metered(
                server_id,
                update(Server)
                .where(Server.id == server_id, Server.task_state == "spawning")
                .values(
                    vm_state="active",
                    task_state=None,
                    power_state=int(PowerState.RUNNING),
                    launched_at=now,
                    updated_at=now,
                ),
            )
            self.core.finish_action(action_id)

    def _placed_here(self, server_id: str) -> bool:
        """Whether the server's host is this process's (else no one here can build it)."""
        with self.db.session() as s:
            row = s.get(Server, server_id)
            host = row.host if row is not None else None
        if host == self.core.host:
            return True
        log.warning("server %s is placed on %s, which has no agent: left to it", server_id, host)
        return False

    def _claim(self, server_id: str, action_id: int, image: BootImage | None, where: Where) -> bool:
        """A host for the server, chosen and claimed by the scheduler; False when the build
        ended (no host can take it, or the server is going)."""
        placed: str | bool | None = False  # False: the server is going
        with self.db.session() as s:
            row = s.get(Server, server_id)
            if not (row is None or row.deleted or row.task_state == "deleting"):
                request = PlacementRequest(
                    server_id=server_id,
                    vcpus=row.vcpus,
                    memory_mib=row.memory_mib,
                    disk_gib=row.disk_gib,
                    zone=where.zone,
                    host=where.host,
                    extra_specs=dict((row.flavor or {}).get("extra_specs") or {}),
                    image_properties=dict(image.properties) if image is not None else {},
                )
                placed = self.core.scheduler.select_and_claim(s, request)
                if placed is not None:
                    row.availability_zone = self.core.scheduler.zone_of_host(s, placed)
        if placed is False:
            self.core.finish_action(action_id, "deleted while building")
            return False
        if placed is None:
            self.core.set(
                server_id,
                vm_state="error",
                task_state=None,
                fault=self.core.fault(NO_VALID_HOST),
            )
            self.core.finish_action(action_id, NO_VALID_HOST)
            return False
        return True

    def _make_guest(
        self,
        server_id: str,
        image: BootImage | None,
        ctx: RequestContext | None,
        boot: BootVolume | None,
        admin_pass: str | None = None,
    ) -> GuestSpec:
        if boot is not None:
            assert ctx is not None
            self._attach_root_volume(ctx, server_id, boot)
        if self.guests.ports(server_id):
            self.core.set(server_id, addresses=self.guests.plug_ports(server_id))
        with self.db.session() as s:
            row = s.get(Server, server_id)
            assert row is not None
            if row.root_volume_id:
                drive = self.guests.write_config_drive(row, admin_pass)
                return self.guests.spec(row, self.guests.root_disk(row), drive)
            assert image is not None
            return self.guests.prepare_disks(row, image, admin_pass)

    def _fail_build(self, server_id: str, action_id: int, exc: Exception) -> None:
        if isinstance(exc, DriverError | OSError):
            message = f"Build of server {server_id} failed: {exc}"
            log.warning("%s", message)
        else:
            log.exception("build of server %s failed", server_id)
            message = f"Build of server {server_id} failed on an internal error."
        self.driver.destroy(server_id)
        self.driver.delete_files(server_id)
        self.guests.let_go_of_volumes(server_id)
        self.guests.let_go_of_ports(server_id)
        self.core.set(server_id, addresses={})
        with self.db.session() as s:
            scheduler.release(s, server_id)
        self.core.set(server_id, vm_state="error", task_state=None, fault=self.core.fault(message))
        self.core.finish_action(action_id, message)

    def _attach_root_volume(self, ctx: RequestContext, server_id: str, boot: BootVolume) -> None:
        """Boot from volume: make (or take) the volume and attach it as the root disk."""
        if boot.source == "image":
            volume_id = self.volumes.create_for_boot(
                ctx, boot.uuid, boot.size_gib, boot.volume_type
            ).id
        else:
            volume_id = boot.uuid
        # an encrypted volume boots too: the guest's spec carries its passphrase to QEMU
        self.volumes.reserve(ctx, volume_id, server_id)
        self.volumes.attached(
            volume_id, server_id, "/dev/vda", str(uuid.uuid4()), boot.delete_on_termination
        )
        self.core.set(server_id, root_volume_id=volume_id)
