"""Compute rules: flavors, keypairs, servers and their state machine.

Every action is a compare-and-set on the server row (its `vm_state` and an
empty `task_state`), so two actions never run on one server at once; the
host work then runs on a worker thread of this process and ends by writing
the new state. A restart finds any action cut short and either completes it
or ends it cleanly (`reconcile`): no server stays in a transitional state.

The guests are QEMU processes that outlive the control plane; the database
holds what was asked, `QemuDriver` tells what is.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from souverain.common.clock import Clock, as_utc
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound
from souverain.common.metering import NULL_METER, Meter
from souverain.common.quota import effective_limits, lock_quota_row
from souverain.compute import scheduler
from souverain.compute.models import (
    ComputeQuota,
    Flavor,
    FlavorAccess,
    InstanceAction,
    Keypair,
    Server,
)
from souverain.compute.qemu import Disk, DriverError, GuestSpec, Nic, PowerState, QemuDriver
from souverain.config import ComputeSettings
from souverain.db.engine import Database
from souverain.identity.service import IdentityService
from souverain.image.service import BootImage, ImageService
from souverain.volume.service import ServerVolume, VolumeService

log = logging.getLogger("souverain.compute")

DEFAULT_FLAVORS = (
    # id, name, vcpus, ram MiB, disk GiB
    ("1", "t1.nano", 1, 128, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
)

MAX_USER_DATA = 65535  # bytes of base64 text, as Nova
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."

# The quotas a project is held to (defaults in settings, overrides in `compute_quotas`).
# Creates lock the project's quota row (INSERT .. ON CONFLICT DO NOTHING, then SELECT
# .. FOR UPDATE) in the transaction that inserts the servers, as the volume and network
# services do: concurrent creates in any number of processes cannot overshoot.
QUOTA_RESOURCES = ("instances", "cores", "ram", "key_pairs", "metadata_items")

# Nova's status from (vm_state, task_state): the task wins where it names one.
_TASK_STATUS = {
    "rebooting": "REBOOT",
    "reboot_pending": "REBOOT",
    "reboot_started": "REBOOT",
    "rebooting_hard": "HARD_REBOOT",
    "reboot_pending_hard": "HARD_REBOOT",
    "reboot_started_hard": "HARD_REBOOT",
    "rebuilding": "REBUILD",
    "rebuild_spawning": "REBUILD",
    "resize_prep": "RESIZE",
    "resize_migrating": "RESIZE",
    "resize_finish": "RESIZE",
    "resize_reverting": "REVERT_RESIZE",
}
_VM_STATUS = {
    "active": "ACTIVE",
    "building": "BUILD",
    "stopped": "SHUTOFF",
    "resized": "VERIFY_RESIZE",
    "paused": "PAUSED",
    "suspended": "SUSPENDED",
    "error": "ERROR",
    "deleted": "DELETED",
}


# The vm_states a server is billed in (the `instance` gauge is 1 with its flavor): it holds
# its CPU and memory. Building, stopped, suspended, shelved, error and deleted are not.
BILLABLE_VM_STATES = frozenset({"active", "paused", "resized", "rescued"})
# Columns whose change may change what the server is billed.
_BILLING_COLUMNS = frozenset({"vm_state", "flavor", "deleted"})

# (project_id, flavor name or "" when not billed, billed): the `instance` gauge's value.
BillingState = tuple[str, str, bool]


def status_of(vm_state: str, task_state: str | None) -> str:
    if vm_state in ("active", "stopped", "resized", "error") and task_state in _TASK_STATUS:
        if vm_state == "error" and task_state not in ("rebuilding", "rebuild_spawning"):
            return "ERROR"
        return _TASK_STATUS[task_state]
    return _VM_STATUS.get(vm_state, "UNKNOWN")


STATUS_FILTER = {
    "ACTIVE": ("active", None),
    "BUILD": ("building", None),
    "SHUTOFF": ("stopped", None),
    "VERIFY_RESIZE": ("resized", None),
    "PAUSED": ("paused", None),
    "SUSPENDED": ("suspended", None),
    "ERROR": ("error", None),
    "DELETED": ("deleted", None),
}


GIB = 1024**3
# internal calls between services (detaching volumes of a deleted server) act as the cloud
SYSTEM = RequestContext(user_id="souverain", user_domain_id="default", roles=frozenset({"admin"}))


class ListedServer(NamedTuple):
    """A server as a list filters, sorts and pages it (the API's sort keys are these
    names); the views of the page shown are read afterwards, by id."""

    id: str
    name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    launched_at: dt.datetime | None
    vm_state: str
    task_state: str | None
    host: str | None
    image_id: str


LISTED_COLUMNS = tuple(getattr(Server, name) for name in ListedServer._fields)
LISTED_WIDTH = len(LISTED_COLUMNS)
# Server ids per IN (...): a page of a list (at most 1,000, the API's limit) is one query.
IDS_PER_QUERY = 1000


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


@dataclass(frozen=True)
class BootVolume:
    """The root disk is a volume: a new one from an image, or an existing one."""

    source: str  # "image" or "volume"
    uuid: str
    size_gib: int = 0
    delete_on_termination: bool = False


def _fingerprint(public_key: str) -> str:
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _check_public_key(public_key: str) -> str:
    key = public_key.strip()
    try:
        serialization.load_ssh_public_key(key.encode())
    except (ValueError, UnsupportedAlgorithm, IndexError):
        raise BadRequest("Keypair data is invalid: not an OpenSSH public key.") from None
    return key


def _hostname_of(name: str) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return (text[:63].strip("-")) or "server"


def _mac() -> str:
    tail = secrets.token_bytes(3)
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in tail)


def _now_naive(clock: Clock) -> dt.datetime:
    return clock.now().astimezone(dt.UTC).replace(tzinfo=None)


class ComputeService:
    def __init__(
        self,
        db: Database,
        identity: IdentityService,
        images: ImageService,
        volumes: VolumeService,
        driver: QemuDriver,
        clock: Clock,
        settings: ComputeSettings,
    ) -> None:
        # billable changes are recorded on it (the billing service's, set by the server)
        self.meter: Meter = NULL_METER
        self.db = db
        self.identity = identity
        self.images = images
        self.volumes = volumes
        self.driver = driver
        volumes.attached_resizer = self._resize_attached
        self.network: Any = None  # the network service, set by the server when it runs one
        self.clock = clock
        self.settings = settings
        self.host = socket.gethostname()
        self.capacity = scheduler.host_capacity(self.host, driver.root, settings)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="compute")
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.orphans: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    def set_up(self) -> None:
        """Once per start: default flavors, then make the database true to the host."""
        with self.db.session() as s:
            for flavor_id, name, vcpus, ram, disk in DEFAULT_FLAVORS:
                if (
                    s.get(Flavor, flavor_id) is None
                    and s.scalar(select(Flavor).where(Flavor.name == name)) is None
                ):
                    s.add(
                        Flavor(
                            id=flavor_id,
                            name=name,
                            vcpus=vcpus,
                            ram=ram,
                            disk=disk,
                            ephemeral=0,
                            swap=0,
                            rxtx_factor=1.0,
                            is_public=True,
                            disabled=False,
                            extra_specs={},
                            created_at=_now_naive(self.clock),
                        )
                    )
        log.info("compute: guests run under %s", self.driver.accelerator())
        self.reconcile()

    def close(self) -> None:
        """Let running actions finish; the guests themselves keep running."""
        self._pool.shutdown(wait=True)
        with contextlib.suppress(OSError):  # only when no guest of this data dir is left
            self.driver.run_dir.rmdir()

    @contextmanager
    def _server_lock(self, server_id: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(server_id, threading.Lock())
        with lock:
            yield

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("compute task %s failed", getattr(fn, "__name__", fn))

        self._pool.submit(run)

    # ------------------------------------------------------------------ flavors

    def _visible_flavors(self, s: Session, ctx: RequestContext) -> Any:
        query = select(Flavor)
        if not ctx.is_admin:
            shared = select(FlavorAccess.flavor_id).where(
                FlavorAccess.project_id == (ctx.project_id or "")
            )
            query = query.where(or_(Flavor.is_public.is_(True), Flavor.id.in_(shared)))
        return query

    def list_flavors(
        self,
        ctx: RequestContext,
        is_public: bool | None = True,
        min_ram: int = 0,
        min_disk: int = 0,
    ) -> list[dict[str, Any]]:
        with self.db.session() as s:
            query = self._visible_flavors(s, ctx).where(Flavor.disabled.is_(False))
            if is_public is not None and ctx.is_admin:
                query = query.where(Flavor.is_public.is_(is_public))
            if min_ram:
                query = query.where(Flavor.ram >= min_ram)
            if min_disk:
                query = query.where(Flavor.disk >= min_disk)
            rows = s.scalars(query).all()
            return sorted((self._flavor_view(f) for f in rows), key=lambda f: f["sort"])

    @staticmethod
    def _flavor_view(f: Flavor) -> dict[str, Any]:
        return {
            "id": f.id,
            "name": f.name,
            "vcpus": f.vcpus,
            "ram": f.ram,
            "disk": f.disk,
            "ephemeral": f.ephemeral,
            "swap": f.swap,
            "rxtx_factor": f.rxtx_factor,
            "is_public": f.is_public,
            "disabled": f.disabled,
            "description": f.description,
            "extra_specs": dict(f.extra_specs or {}),
            "sort": (f.ram, f.vcpus, f.disk, f.id),
        }

    def _flavor_row(self, s: Session, ctx: RequestContext, flavor_id: str) -> Flavor:
        row: Flavor | None = s.scalar(self._visible_flavors(s, ctx).where(Flavor.id == flavor_id))
        if row is None:
            raise NotFound(f"Flavor {flavor_id} could not be found.")
        return row

    def get_flavor(self, ctx: RequestContext, flavor_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self._flavor_view(self._flavor_row(s, ctx, flavor_id))

    def create_flavor(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        self._admin(ctx, "create flavors")
        flavor_id = data.get("id") or str(uuid.uuid4())
        with self.db.session() as s:
            if s.get(Flavor, flavor_id) is not None:
                raise Conflict(f"Flavor with ID {flavor_id} already exists.")
            if s.scalar(select(Flavor).where(Flavor.name == data["name"])) is not None:
                raise Conflict(f"Flavor with name {data['name']} already exists.")
            row = Flavor(
                id=flavor_id,
                name=data["name"],
                vcpus=data["vcpus"],
                ram=data["ram"],
                disk=data["disk"],
                ephemeral=data.get("ephemeral", 0),
                swap=data.get("swap", 0),
                rxtx_factor=data.get("rxtx_factor", 1.0),
                is_public=data.get("is_public", True),
                disabled=False,
                description=data.get("description"),
                extra_specs={},
                created_at=_now_naive(self.clock),
            )
            s.add(row)
            s.flush()
            return self._flavor_view(row)

    def update_flavor(
        self, ctx: RequestContext, flavor_id: str, description: str | None
    ) -> dict[str, Any]:
        self._admin(ctx, "update flavors")
        with self.db.session() as s:
            row = self._flavor_row(s, ctx, flavor_id)
            row.description = description
            return self._flavor_view(row)

    def delete_flavor(self, ctx: RequestContext, flavor_id: str) -> None:
        self._admin(ctx, "delete flavors")
        with self.db.session() as s:
            row = self._flavor_row(s, ctx, flavor_id)
            s.execute(delete(FlavorAccess).where(FlavorAccess.flavor_id == row.id))
            s.delete(row)

    def flavor_extra_specs(self, ctx: RequestContext, flavor_id: str) -> dict[str, str]:
        return dict(self.get_flavor(ctx, flavor_id)["extra_specs"])

    def set_flavor_extra_specs(
        self,
        ctx: RequestContext,
        flavor_id: str,
        specs: dict[str, str],
        replace_key: str | None = None,
    ) -> dict[str, str]:
        self._admin(ctx, "change flavor extra specs")
        with self.db.session() as s:
            row = self._flavor_row(s, ctx, flavor_id)
            merged = dict(row.extra_specs or {})
            merged.update(specs)
            row.extra_specs = merged
            return specs

    def delete_flavor_extra_spec(self, ctx: RequestContext, flavor_id: str, key: str) -> None:
        self._admin(ctx, "change flavor extra specs")
        with self.db.session() as s:
            row = self._flavor_row(s, ctx, flavor_id)
            specs = dict(row.extra_specs or {})
            if key not in specs:
                raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
            del specs[key]
            row.extra_specs = specs

    def flavor_access(self, ctx: RequestContext, flavor_id: str) -> list[dict[str, str]]:
        self._admin(ctx, "see flavor access lists")
        with self.db.session() as s:
            row = self._flavor_row(s, ctx, flavor_id)
            if row.is_public:
                raise NotFound("Access list not available for public flavors.")
            projects = s.scalars(
                select(FlavorAccess.project_id).where(FlavorAccess.flavor_id == flavor_id)
            ).all()
            return [{"flavor_id": flavor_id, "tenant_id": p} for p in sorted(projects)]

    def change_flavor_access(
        self, ctx: RequestContext, flavor_id: str, project_id: str, add: bool
    ) -> list[dict[str, str]]:
        self._admin(ctx, "change flavor access lists")
        with self.db.session() as s:
            row = self._flavor_row(s, ctx, flavor_id)
            if row.is_public:
                raise Conflict("Can not add access to a public flavor.")
            existing = s.scalar(
                select(FlavorAccess).where(
                    FlavorAccess.flavor_id == flavor_id, FlavorAccess.project_id == project_id
                )
            )
            if add:
                if existing is not None:
                    raise Conflict(
                        f"Flavor access already exists for flavor {flavor_id} "
                        f"and project {project_id} combination."
                    )
                s.add(FlavorAccess(flavor_id=flavor_id, project_id=project_id))
            else:
                if existing is None:
                    raise NotFound(
                        f"Flavor access not found for {flavor_id} / {project_id} combination."
                    )
                s.delete(existing)
        return self.flavor_access(ctx, flavor_id)

    # ------------------------------------------------------------------ quotas

    def default_quotas(self) -> dict[str, int]:
        st = self.settings
        return {
            "instances": st.quota_instances,
            "cores": st.quota_cores,
            "ram": st.quota_ram,
            "key_pairs": st.quota_key_pairs,
            "metadata_items": st.quota_metadata_items,
        }

    def _limits_of(self, s: Session, project_id: str) -> dict[str, int]:
        return effective_limits(s, ComputeQuota, project_id, self.default_quotas())

    @staticmethod
    def _usage_of(s: Session, project_id: str, user_id: str) -> dict[str, int]:
        """What counts against each limit; key pairs are the caller's (Nova's are per user)."""
        count, cores, ram = s.execute(
            select(
                func.count(Server.id),
                func.coalesce(func.sum(Server.vcpus), 0),
                func.coalesce(func.sum(Server.memory_mib), 0),
            ).where(Server.project_id == project_id, Server.deleted.is_(False))
        ).one()
        keys = s.scalar(select(func.count()).where(Keypair.user_id == user_id)) if user_id else 0
        return {
            "instances": int(count),
            "cores": int(cores),
            "ram": int(ram),
            "key_pairs": int(keys or 0),
            "metadata_items": 0,
        }

    def _lock_quota(self, s: Session, project_id: str) -> None:
        """Take the project's quota row for this transaction (see QUOTA_RESOURCES' note)."""
        lock_quota_row(s, ComputeQuota, project_id, _now_naive(self.clock))

    @staticmethod
    def _quota_scope(ctx: RequestContext, project_id: str) -> None:
        if not (ctx.is_admin or project_id == ctx.project_id):
            raise Forbidden(
                "Policy doesn't allow os_compute_api:os-quota-sets:show to be performed."
            )

    def quota_limits(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        """The project's effective limits; a member sees only its own project's."""
        self._quota_scope(ctx, project_id)
        with self.db.session() as s:
            return self._limits_of(s, project_id)

    def quota_usage(
        self, ctx: RequestContext, project_id: str
    ) -> tuple[dict[str, int], dict[str, int]]:
        """(limits, in use) of the project."""
        self._quota_scope(ctx, project_id)
        with self.db.session() as s:
            user_id = ctx.user_id if project_id == ctx.project_id else ""
            return self._limits_of(s, project_id), self._usage_of(s, project_id, user_id)

    def update_quota(
        self, ctx: RequestContext, project_id: str, changes: dict[str, int], force: bool
    ) -> dict[str, int]:
        """Set overrides (validated at the edge); below what is in use needs `force`."""
        if not ctx.is_admin:
            raise Forbidden(
                "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed."
            )
        if not project_id or len(project_id) > 64:
            raise BadRequest("Invalid project id.")
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            if not force:
                used = self._usage_of(s, project_id, "")
                for key, value in changes.items():
                    if key in ("instances", "cores", "ram") and 0 <= value < used[key]:
                        raise BadRequest(
                            f"Quota limit {value} for {key} must be greater than or equal to "
                            f"already used and reserved {used[key]}."
                        )
            row = s.get(ComputeQuota, project_id)
            assert row is not None
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = _now_naive(self.clock)
            s.flush()
            return self._limits_of(s, project_id)

    def reset_quota(self, ctx: RequestContext, project_id: str) -> None:
        """Back to the configured defaults."""
        if not ctx.is_admin:
            raise Forbidden(
                "Policy doesn't allow os_compute_api:os-quota-sets:delete to be performed."
            )
        with self.db.session() as s:
            row = s.get(ComputeQuota, project_id)
            if row is not None:
                s.delete(row)

    # ------------------------------------------------------------------ keypairs

    @staticmethod
    def _keypair_view(k: Keypair) -> dict[str, Any]:
        return {
            "name": k.name,
            "type": k.type,
            "public_key": k.public_key,
            "fingerprint": k.fingerprint,
            "user_id": k.user_id,
            "id": k.id,
            "created_at": k.created_at,
            "deleted": False,
            "deleted_at": None,
            "updated_at": None,
        }

    def _key_owner(self, ctx: RequestContext, user_id: str | None) -> str:
        if user_id and user_id != ctx.user_id:
            self._admin(ctx, "manage another user's keypairs")
            return user_id
        return ctx.user_id

    def list_keypairs(
        self, ctx: RequestContext, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        owner = self._key_owner(ctx, user_id)
        with self.db.session() as s:
            rows = s.scalars(
                select(Keypair).where(Keypair.user_id == owner).order_by(Keypair.name)
            ).all()
            return [self._keypair_view(k) for k in rows]

    def get_keypair(
        self, ctx: RequestContext, name: str, user_id: str | None = None
    ) -> dict[str, Any]:
        owner = self._key_owner(ctx, user_id)
        with self.db.session() as s:
            row = s.scalar(select(Keypair).where(Keypair.user_id == owner, Keypair.name == name))
            if row is None:
                raise NotFound(f"Keypair {name} not found for user {owner}.")
            return self._keypair_view(row)

    def create_keypair(
        self,
        ctx: RequestContext,
        name: str,
        public_key: str | None,
        key_type: str = "ssh",
        user_id: str | None = None,
    ) -> dict[str, Any]:
        owner = self._key_owner(ctx, user_id)
        private_key = None
        if public_key is None:
            key = ed25519.Ed25519PrivateKey.generate()
            private_key = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ).decode()
            public_key = (
                key.public_key()
                .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
                .decode()
                + f" {name}"
            )
        else:
            public_key = _check_public_key(public_key)
        with self.db.session() as s:
            if ctx.project_id:
                self._lock_quota(s, ctx.project_id)
                limit = self._limits_of(s, ctx.project_id)["key_pairs"]
                held = s.scalar(select(func.count()).where(Keypair.user_id == owner)) or 0
                if 0 <= limit <= held:
                    raise Forbidden("Quota exceeded, too many key pairs.")
            if s.scalar(select(Keypair).where(Keypair.user_id == owner, Keypair.name == name)):
                raise Conflict(f"Key pair '{name}' already exists.")
            row = Keypair(
                user_id=owner,
                name=name,
                type=key_type,
                public_key=public_key,
                fingerprint=_fingerprint(public_key),
                created_at=_now_naive(self.clock),
            )
            s.add(row)
            s.flush()
            view = self._keypair_view(row)
        if private_key is not None:
            view["private_key"] = private_key
        return view

    def delete_keypair(self, ctx: RequestContext, name: str, user_id: str | None = None) -> None:
        owner = self._key_owner(ctx, user_id)
        with self.db.session() as s:
            row = s.scalar(select(Keypair).where(Keypair.user_id == owner, Keypair.name == name))
            if row is None:
                raise NotFound(f"Keypair {name} not found for user {owner}.")
            s.delete(row)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _admin(ctx: RequestContext, what: str) -> None:
        if not ctx.is_admin:
            raise Forbidden(f"Policy doesn't allow you to {what}: an admin role is required.")

    @staticmethod
    def _check_unlocked(ctx: RequestContext, row: Server) -> None:
        if row.locked and not ctx.is_admin:
            raise Conflict(f"Instance {row.id} is locked")

    def _server_row(self, s: Session, ctx: RequestContext, server_id: str) -> Server:
        row = s.get(Server, server_id) if len(server_id) <= 36 else None
        if row is None or row.deleted or (not ctx.is_admin and row.project_id != ctx.project_id):
            raise NotFound(f"Instance {server_id} could not be found.")
        return row

    def _check_visible(self, ctx: RequestContext, server_id: str) -> None:
        """404 unless the caller may see the server; no view built (its volumes unread)."""
        with self.db.session() as s:
            self._server_row(s, ctx, server_id)

    def _action(
        self, s: Session, ctx: RequestContext, server_id: str, project_id: str, action: str
    ) -> int:
        record = InstanceAction(
            server_id=server_id,
            project_id=project_id,
            user_id=ctx.user_id,
            request_id=ctx.request_id or f"req-{uuid.uuid4()}",
            action=action,
            start_time=_now_naive(self.clock),
        )
        s.add(record)
        s.flush()
        return record.id

    def _finish_action(self, action_id: int, error: str | None = None) -> None:
        with self.db.session() as s:
            s.execute(
                update(InstanceAction)
                .where(InstanceAction.id == action_id)
                .values(
                    finish_time=_now_naive(self.clock),
                    result="Error" if error else "Success",
                    message=error,
                )
            )

    def _set(self, server_id: str, **values: Any) -> None:
        values.setdefault("updated_at", _now_naive(self.clock))
        metered = not _BILLING_COLUMNS.isdisjoint(values)
        with self.db.session() as s:
            before = self._billing_state(s, server_id) if metered else None
            s.execute(update(Server).where(Server.id == server_id).values(**values))
            after = self._billing_state(s, server_id) if metered else None
        self._meter_instance(server_id, before, after)

    @staticmethod
    def _billing_state(s: Session, server_id: str) -> BillingState | None:
        row = s.execute(
            select(Server.project_id, Server.flavor, Server.vm_state, Server.deleted).where(
                Server.id == server_id
            )
        ).first()
        if row is None:
            return None
        billed = row.vm_state in BILLABLE_VM_STATES and not row.deleted
        flavor = str((row.flavor or {}).get("name", "")) if billed else ""
        return (row.project_id, flavor, billed)

    def _meter_instance(
        self, server_id: str, before: BillingState | None, after: BillingState | None
    ) -> None:
        """After the commit: the `instance` gauge, when billing or the flavor changed."""
        if after is None or after == before:
            return
        project_id, flavor, billed = after
        self.meter.gauge(project_id, "instance", server_id, 1 if billed else 0, flavor=flavor)

    def _is_deleting(self, server_id: str) -> bool:
        with self.db.session() as s:
            row = s.get(Server, server_id)
            return row is None or row.deleted or row.task_state == "deleting"

    def _fault(self, message: str, code: int = 500) -> dict[str, Any]:
        return {
            "code": code,
            "message": message,
            "created": _now_naive(self.clock).isoformat() + "Z",
        }

    # ------------------------------------------------------------------ servers: read

    def server_view(self, row: Server) -> dict[str, Any]:
        return self.server_views([row])[0]

    def server_views(self, rows: Sequence[Server]) -> list[dict[str, Any]]:
        """Views of many servers: the volumes of all of them in one query, not one each."""
        volumes = self.volumes.volumes_of_servers([r.id for r in rows]) if rows else {}
        return [_server_view(r, volumes.get(r.id, ())) for r in rows]

    def get_server(self, ctx: RequestContext, server_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.server_view(self._server_row(s, ctx, server_id))

    def find_servers(self, ctx: RequestContext, filters: dict[str, Any]) -> list[ListedServer]:
        """What a server list filters, sorts and pages on, newest first: one query of a few
        columns. The views of the page it shows are `views_of_servers`, read after paging."""
        query = _list_query(ctx, filters)
        if query is None:
            return []
        pattern = _name_pattern(filters.get("name"))
        by_tags = any(filters.get(k) for k in ("tags", "tags-any", "not-tags"))
        if by_tags:
            query = query.add_columns(Server.tags)
        with self.db.session() as s:
            rows = s.execute(query).all()
        return [
            ListedServer._make(row[:LISTED_WIDTH])
            for row in rows
            if (pattern is None or pattern.search(row.name))
            and (not by_tags or _tags_match(set(row.tags or ()), filters))
        ]

    def views_of_servers(self, server_ids: Sequence[str]) -> Iterator[dict[str, Any]]:
        """The views of these servers (a page of a list), in this order, 1,000 at a time:
        their rows in one query and their volumes in another. Each row is let go once
        viewed, so a long list never holds all its rows and views at once."""
        for start in range(0, len(server_ids), IDS_PER_QUERY):
            chunk = server_ids[start : start + IDS_PER_QUERY]
            with self.db.session() as s:
                rows = {r.id: r for r in s.scalars(select(Server).where(Server.id.in_(chunk)))}
            volumes = self.volumes.volumes_of_servers(chunk)
            for server_id in chunk:
                row = rows.pop(server_id, None)
                if row is not None:
                    yield _server_view(row, volumes.get(server_id, ()))

    def servers_in_use(self, ctx: RequestContext) -> dict[str, int]:
        """What /limits shows in use by the caller's project: its servers and the cores and
        RAM of their flavors, summed by the database rather than row by row."""
        with self.db.session() as s:
            count, cores, ram = s.execute(
                select(
                    func.count(Server.id),
                    func.coalesce(func.sum(Server.flavor["vcpus"].as_integer()), 0),
                    func.coalesce(func.sum(Server.flavor["ram"].as_integer()), 0),
                ).where(Server.project_id == (ctx.project_id or ""), Server.deleted.is_(False))
            ).one()
        return {"instances": int(count), "cores": int(cores), "ram": int(ram)}

    # ------------------------------------------------------------------ servers: create

    def create_servers(self, ctx: RequestContext, req: ServerRequest) -> list[dict[str, Any]]:
        if ctx.project_id is None:
            raise Forbidden("Servers belong to a project: use a project-scoped token.")
        boot = req.boot_volume
        image: BootImage | None = None
        if boot is None or boot.source == "image":
            image_ref = req.image_ref if boot is None else boot.uuid
            try:
                image = self.images.image_for_boot(ctx, image_ref)
            except NotFound:
                raise BadRequest(f"Image {image_ref} could not be found.") from None
            except BadRequest as exc:
                raise BadRequest(exc.message) from None
        if boot is not None:
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
                needed = -(-(image.virtual_size or image.size) // GIB)
                if boot.size_gib < max(needed, image.min_disk, 1):
                    raise BadRequest(
                        f"Volume size {boot.size_gib} GiB is smaller than the image needs "
                        f"({max(needed, image.min_disk, 1)} GiB)."
                    )
        with self.db.session() as s:
            try:
                flavor = self._flavor_row(s, ctx, req.flavor_ref)
            except NotFound:
                raise BadRequest(f"Flavor {req.flavor_ref} could not be found.") from None
            flavor_doc = self._flavor_view(flavor)
        flavor_doc.pop("sort")
        key_data = None
        if req.key_name is not None:
            with self.db.session() as s:
                key = s.scalar(
                    select(Keypair).where(
                        Keypair.user_id == ctx.user_id, Keypair.name == req.key_name
                    )
                )
                if key is None:
                    raise BadRequest(
                        f"Invalid key_name provided: keypair {req.key_name} not found."
                    )
                key_data = key.public_key
        if (
            req.availability_zone
            and req.availability_zone.split(":")[0] != self.settings.availability_zone
        ):
            raise BadRequest(
                f"The requested availability zone is not available: {req.availability_zone}; "
                f"this cloud has {self.settings.availability_zone}."
            )
        if req.user_data is not None:
            if len(req.user_data) > MAX_USER_DATA:
                raise BadRequest(
                    f"Invalid input for field 'user_data': longer than {MAX_USER_DATA} bytes."
                )
            try:
                base64.b64decode(req.user_data, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest("Invalid input for field 'user_data': not valid base64.") from None
        if image is not None and image.min_ram and flavor_doc["ram"] < image.min_ram:
            raise BadRequest("Flavor's memory is too small for requested image.")
        virtual_gib = -(-(image.virtual_size or image.size) // GIB) if image is not None else 0
        if (
            boot is None
            and image is not None
            and flavor_doc["disk"]
            and (flavor_doc["disk"] < image.min_disk or flavor_doc["disk"] < virtual_gib)
        ):
            raise BadRequest("Flavor's disk is too small for requested image.")
        networks = req.networks
        if networks == "auto" and self.network is not None and self.network.dataplane is not None:
            # get-me-a-network: the project's own network, subnet and router to public
            networks = [{"uuid": self.network.get_or_create_auto_network(ctx)["id"]}]
        if isinstance(networks, list) and networks:
            self._check_networks(ctx, networks, req.max_count)
        if boot is not None:
            disk = 0  # the root disk is a volume: nothing on the host's local disk
        else:
            assert image is not None
            disk = flavor_doc["disk"] or max(virtual_gib, image.min_disk, 1)
        with self.db.session() as s:  # a first look, so ports are made only for what fits
            count = self._fit_in_quota(s, ctx.project_id, req, flavor_doc)
        server_ids = [str(uuid.uuid4()) for _ in range(count)]
        has_ports = isinstance(networks, list) and bool(networks)
        if has_ports:
            # before the quota lock: SQLite has one writer, and the network service writes
            self._make_ports(ctx, networks, server_ids, req.security_groups)
        try:
            views, tasks = self._insert_servers(
                ctx, req, flavor_doc, server_ids, image, boot, disk, key_data, networks
            )
        except BaseException:
            if has_ports:
                for server_id in server_ids:
                    self.network.release_ports_of(server_id)
            raise
        if has_ports:  # another create took some of the room between the two looks
            made = {server_id for server_id, _ in tasks}
            for server_id in server_ids:
                if server_id not in made:
                    self.network.release_ports_of(server_id)
        for server_id, action_id in tasks:
            self._submit(self._build, server_id, image, action_id, ctx, boot)
        return views

    def _insert_servers(
        self,
        ctx: RequestContext,
        req: ServerRequest,
        flavor_doc: dict[str, Any],
        server_ids: list[str],
        image: Any,
        boot: Any,
        disk: int,
        key_data: str | None,
        networks: Any,
    ) -> tuple[list[dict[str, Any]], list[tuple[str, int]]]:
        """Lock the project's quota, check again, insert the rows; one transaction."""
        project_id = ctx.project_id
        assert project_id is not None  # create_servers refused an unscoped token
        now = _now_naive(self.clock)
        reservation = "r-" + secrets.token_hex(4)
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            count = min(len(server_ids), self._fit_in_quota(s, project_id, req, flavor_doc))
            rows = []
            for index in range(count):
                server_id = server_ids[index]
                name = req.name if count == 1 else f"{req.name}-{index + 1}"
                row = Server(
                    id=server_id,
                    project_id=project_id,
                    user_id=ctx.user_id,
                    name=name,
                    hostname=_hostname_of(req.hostname or name),
                    description=req.description,
                    image_id="" if boot is not None else image.id if image else "",
                    root_volume_id=boot.uuid
                    if boot is not None and boot.source == "volume"
                    else None,
                    root_volume_delete=bool(boot and boot.delete_on_termination),
                    flavor=flavor_doc,
                    vcpus=flavor_doc["vcpus"],
                    memory_mib=flavor_doc["ram"],
                    disk_gib=disk,
                    key_name=req.key_name,
                    key_data=key_data,
                    user_data=req.user_data,
                    server_metadata=dict(req.metadata or {}),
                    tags=list(req.tags),
                    config_drive=True,
                    availability_zone=self.settings.availability_zone,
                    networks=networks,
                    addresses={},
                    mac=_mac(),
                    host=None,
                    vm_state="building",
                    task_state="scheduling",
                    power_state=int(PowerState.NOSTATE),
                    locked=False,
                    reservation_id=reservation,
                    launch_index=index,
                    created_at=now,
                    updated_at=now,
                    deleted=False,
                )
                s.add(row)
                s.flush()
                action_id = self._action(s, ctx, server_id, project_id, "create")
                rows.append((row, action_id))
        # after the commit: a view reads other services (their own connections), and the
        # quota lock must not wait on a pool others exhaust waiting for that very lock
        views = self.server_views([r for r, _ in rows])
        tasks = [(r.id, a) for r, a in rows]
        return views, tasks

    def _fit_in_quota(
        self, s: Session, project_id: str, req: ServerRequest, flavor: dict[str, Any]
    ) -> int:
        """How many of the requested servers the project's quota admits; 403 if not min_count."""
        limits = self._limits_of(s, project_id)
        if 0 <= limits["metadata_items"] < len(req.metadata or {}):
            raise Forbidden(
                f"Quota exceeded for metadata_items: at most {limits['metadata_items']} "
                "metadata items per server."
            )
        used = s.execute(
            select(
                func.count(Server.id),
                func.coalesce(func.sum(Server.vcpus), 0),
                func.coalesce(func.sum(Server.memory_mib), 0),
            ).where(Server.project_id == project_id, Server.deleted.is_(False))
        ).one()
        in_use = {"instances": int(used[0]), "cores": int(used[1]), "ram": int(used[2])}
        each = {"instances": 1, "cores": int(flavor["vcpus"]), "ram": int(flavor["ram"])}
        fit = req.max_count
        for resource in ("instances", "cores", "ram"):
            limit = limits[resource]
            if limit < 0:
                continue
            room = (limit - in_use[resource]) // each[resource] if each[resource] else fit
            if room < req.min_count:
                requested = each[resource] * req.min_count
                raise Forbidden(
                    f"Quota exceeded for {resource}: Requested {requested}, but already used "
                    f"{in_use[resource]} of {limit} {resource}"
                )
            fit = min(fit, room)
        return fit

    def _check_networks(self, ctx: RequestContext, networks: list[Any], count: int) -> None:
        if self.network is None:
            raise BadRequest("This cloud has no network service: use networks none or auto.")
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
                        security_groups=list(groups) or None,
                    )
                made.append(server_id)
        except Exception as exc:
            for server_id in [*made, server_ids[len(made)]]:
                self.network.release_ports_of(server_id)
            if isinstance(exc, NotFound):  # a security group or network named in the request
                raise BadRequest(exc.message) from None
            raise

    def _plug_ports(self, server_id: str) -> dict[str, Any]:
        """Bind the server's ports to this host; the addresses the server shows."""
        for port in self.network.ports_of(server_id):
            self.network.bind_port(port["id"], server_id, self.host)
        return self._addresses(server_id)

    def _addresses(self, server_id: str, without: str | None = None) -> dict[str, Any]:
        """Nova's `addresses`: each port's fixed IPs, then the floating IPs pointing at them
        (`without`: a port being unplugged, left out before it is let go)."""
        addresses: dict[str, list[dict[str, Any]]] = {}
        ports = [p for p in self.network.ports_of(server_id) if p["id"] != without]
        floating = self.network.floating_ips_of_ports([p["id"] for p in ports])
        for port in ports:
            name = self.network.get_network(SYSTEM, port["network_id"])["name"]
            entries = addresses.setdefault(name or port["network_id"], [])
            kinds = [("fixed", f["ip_address"]) for f in port["fixed_ips"]]
            kinds += [("floating", ip) for ip in floating.get(port["id"], [])]
            for kind, addr in kinds:
                entries.append(
                    {
                        "addr": addr,
                        "version": 6 if ":" in addr else 4,
                        "OS-EXT-IPS:type": kind,
                        "OS-EXT-IPS-MAC:mac_addr": port["mac_address"],
                    }
                )
        return addresses

    def refresh_addresses(self, server_id: str) -> None:
        """The network told us a port of this server changed (Nova's network-changed event)."""
        with self.db.session() as s:
            row = s.get(Server, server_id)
            if row is None or row.deleted or not isinstance(row.networks, list):
                return
        self._set(server_id, addresses=self._addresses(server_id))

    def _let_go_of_ports(self, server_id: str) -> None:
        if self.network is None:
            return
        ports = self.network.ports_of(server_id)
        if not ports:
            return
        self.network.release_ports_of(server_id)
        for port in ports:
            try:
                self.network.unwire_port(port["id"], port["network_id"])
            except Exception:
                log.exception("could not unplug port %s of server %s", port["id"], server_id)

    def _spec(self, row: Server, disk: Any, config_drive: Any) -> GuestSpec:
        nics: tuple[Nic, ...] = ()
        if isinstance(row.networks, list) and self.network is not None:
            nics = tuple(
                Nic(
                    mac=port["mac_address"],
                    kind="tap",
                    ifname=self.network.wire_port(port["id"]),
                    id=_nic_id(port["id"]),
                )
                for port in self.network.ports_of(row.id)
            )
        elif row.networks != "none":
            nics = (Nic(mac=row.mac, kind="user"),)
        return GuestSpec(
            uuid=row.id,
            name=row.name,
            vcpus=int(row.flavor["vcpus"]),
            memory_mib=int(row.flavor["ram"]),
            disk=disk,
            config_drive=config_drive,
            nics=nics,
            disks=self._volume_disks(row.id, row.root_volume_id),
        )

    def _volume_disks(self, server_id: str, root_volume_id: str | None) -> tuple[Disk, ...]:
        """The volumes a (re)started guest gets on its command line, by their device names."""
        attached = [
            a
            for a in self.volumes.attachments_of(server_id)
            if a["volume_id"] != root_volume_id and a.get("status") in ("in-use", "detaching")
        ]
        attached.sort(key=lambda a: (len(a["device"]), a["device"]))
        return tuple(_disk_of(a) for a in attached)

    def _root_disk(self, row: Server) -> Any:
        if row.root_volume_id:
            return self.volumes.handle(row.root_volume_id).path
        return self.driver.instance_dir(row.id) / "disk.qcow2"

    def _config_drive_docs(
        self, row: Server
    ) -> tuple[dict[str, Any], bytes | None, dict[str, Any]]:
        keys = {}
        key_list = []
        if row.key_name and row.key_data:
            keys[row.key_name] = row.key_data
            key_list.append({"name": row.key_name, "type": "ssh", "data": row.key_data})
        meta = {
            "uuid": row.id,
            "name": row.name,
            "hostname": row.hostname,
            "availability_zone": row.availability_zone,
            "project_id": row.project_id,
            "launch_index": row.launch_index,
            "public_keys": keys,
            "keys": key_list,
            "meta": dict(row.server_metadata or {}),
            "devices": [],
        }
        user_data = base64.b64decode(row.user_data) if row.user_data else None
        if row.networks == "none":
            network: dict[str, Any] = {"links": [], "networks": [], "services": []}
        elif isinstance(row.networks, list) and self.network is not None:
            # one link per port, in the guest's NIC order; the addresses come by DHCP
            ports = self.network.ports_of(row.id)
            network = {
                "links": [
                    {
                        "id": f"tap{index}",
                        "type": "phy",
                        "ethernet_mac_address": port["mac_address"],
                        "mtu": self.network.get_network(SYSTEM, port["network_id"])["mtu"],
                        "vif_id": port["id"],
                    }
                    for index, port in enumerate(ports)
                ],
                "networks": [
                    {
                        "id": f"network{index}",
                        "type": "ipv4_dhcp",
                        "link": f"tap{index}",
                        "network_id": port["network_id"],
                    }
                    for index, port in enumerate(ports)
                ],
                "services": [],
            }
        else:
            network = {
                "links": [
                    {
                        "id": "tap0",
                        "type": "phy",
                        "ethernet_mac_address": row.mac,
                        "mtu": 1500,
                        "vif_id": row.id,
                    }
                ],
                "networks": [
                    {"id": "network0", "type": "ipv4_dhcp", "link": "tap0", "network_id": "auto"}
                ],
                "services": [],
            }
        return meta, user_data, network

    def _prepare_disks(self, row: Server, image: BootImage) -> GuestSpec:
        base = self.driver.cache_base_image(image.id, image.path)
        disk = self.driver.create_root_disk(row.id, base, image.disk_format, row.disk_gib)
        meta, user_data, network = self._config_drive_docs(row)
        drive = self.driver.write_config_drive(row.id, meta, user_data, network)
        return self._spec(row, disk, drive)

    def _build(
        self,
        server_id: str,
        image: BootImage | None,
        action_id: int,
        ctx: RequestContext | None = None,
        boot: BootVolume | None = None,
    ) -> None:
        with self._server_lock(server_id):
            with self.db.session() as s:
                row = s.get(Server, server_id)
                if row is None or row.deleted or row.task_state == "deleting":
                    self._finish_action(action_id, "deleted while building")
                    return
                placed = scheduler.claim(
                    s, self.capacity, server_id, row.vcpus, row.memory_mib, row.disk_gib
                )
            if not placed:
                self._set(
                    server_id,
                    vm_state="error",
                    task_state=None,
                    fault=self._fault(NO_VALID_HOST),
                )
                self._finish_action(action_id, NO_VALID_HOST)
                return
            self._set(server_id, task_state="spawning")
            try:
                if boot is not None:
                    assert ctx is not None
                    self._attach_root_volume(ctx, server_id, boot)
                if self.network is not None and self.network.ports_of(server_id):
                    self._set(server_id, addresses=self._plug_ports(server_id))
                with self.db.session() as s:
                    row = s.get(Server, server_id)
                    assert row is not None
                    if row.root_volume_id:
                        meta, user_data, network = self._config_drive_docs(row)
                        drive = self.driver.write_config_drive(row.id, meta, user_data, network)
                        spec = self._spec(row, self._root_disk(row), drive)
                    else:
                        assert image is not None
                        spec = self._prepare_disks(row, image)
                if self._is_deleting(server_id):
                    self._finish_action(action_id, "deleted while building")
                    return
                self.driver.start(spec)
            except Exception as exc:
                if isinstance(exc, DriverError | OSError):
                    message = f"Build of server {server_id} failed: {exc}"
                    log.warning("%s", message)
                else:
                    log.exception("build of server %s failed", server_id)
                    message = f"Build of server {server_id} failed on an internal error."
                self.driver.destroy(server_id)
                self.driver.delete_files(server_id)
                self._let_go_of_volumes(server_id)
                self._let_go_of_ports(server_id)
                self._set(server_id, addresses={})
                with self.db.session() as s:
                    scheduler.release(s, server_id)
                self._set(server_id, vm_state="error", task_state=None, fault=self._fault(message))
                self._finish_action(action_id, message)
                return
            now = _now_naive(self.clock)
            with self.db.session() as s:
                before = self._billing_state(s, server_id)
                s.execute(
                    update(Server)
                    .where(Server.id == server_id, Server.task_state == "spawning")
                    .values(
                        vm_state="active",
                        task_state=None,
                        power_state=int(PowerState.RUNNING),
                        launched_at=now,
                        updated_at=now,
                    )
                )
                after = self._billing_state(s, server_id)
            self._meter_instance(server_id, before, after)
            self._finish_action(action_id)

    # ------------------------------------------------------------------ servers: change

    def update_server(
        self, ctx: RequestContext, server_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            if "name" in data:
                row.name = data["name"]
            if "description" in data:
                row.description = data["description"]
            if "hostname" in data:
                row.hostname = _hostname_of(data["hostname"])
            row.updated_at = _now_naive(self.clock)
            return self.server_view(row)

    def _begin(
        self,
        ctx: RequestContext,
        server_id: str,
        action: str,
        allowed: tuple[str, ...],
        task: str,
        extra: dict[str, Any] | None = None,
        record: str | None = None,
    ) -> tuple[Server, int]:
        """Compare-and-set the server into `task`; 409 if its state does not allow `action`."""
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            self._check_unlocked(ctx, row)
            values = {"task_state": task, "updated_at": _now_naive(self.clock), **(extra or {})}
            result = s.execute(
                update(Server)
                .where(
                    Server.id == server_id,
                    Server.vm_state.in_(allowed),
                    or_(Server.task_state.is_(None), Server.task_state == "")
                    if action != "delete"
                    else Server.deleted.is_(False),
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                if row.task_state and action != "delete":
                    raise Conflict(
                        f"Cannot '{action}' instance {server_id} while it is in "
                        f"task_state {row.task_state}"
                    )
                raise Conflict(
                    f"Cannot '{action}' instance {server_id} while it is in vm_state {row.vm_state}"
                )
            action_id = self._action(s, ctx, server_id, row.project_id, record or action)
            s.refresh(row)
            return row, action_id

    def _run(self, action_id: int, server_id: str, work: Callable[[], dict[str, Any]]) -> None:
        """Run host work for one action; its result (or the error) ends the task."""

        def task() -> None:
            with self._server_lock(server_id):
                try:
                    values = work()
                except Exception as exc:
                    if isinstance(exc, DriverError | OSError):
                        message = str(exc)
                    else:
                        log.exception("server %s: unexpected error", server_id)
                        message = "An internal error stopped this action; an operator was told."
                    log.warning("server %s: %s", server_id, message)
                    state = self.driver.power_state(server_id)
                    self._set(
                        server_id,
                        task_state=None,
                        power_state=int(state),
                        fault=self._fault(message),
                        vm_state="error",
                    )
                    self._finish_action(action_id, message)
                    return
                values.setdefault("task_state", None)
                self._set(server_id, **values)
                self._finish_action(action_id)

        self._submit(task)

    def delete_server(self, ctx: RequestContext, server_id: str) -> None:
        _, action_id = self._begin(
            ctx,
            server_id,
            "delete",
            ("active", "building", "stopped", "paused", "suspended", "resized", "error"),
            "deleting",
        )

        def task() -> None:
            with self._server_lock(server_id):
                self._destroy_everything(server_id)
            self._finish_action(action_id)

        self._submit(task)

    def _destroy_everything(self, server_id: str) -> None:
        self.driver.destroy(server_id)
        self.driver.delete_files(server_id)
        self._let_go_of_volumes(server_id)
        self._let_go_of_ports(server_id)
        now = _now_naive(self.clock)
        self._set(
            server_id,
            vm_state="deleted",
            task_state=None,
            power_state=int(PowerState.NOSTATE),
            deleted=True,
            terminated_at=now,
            updated_at=now,
        )

    def stop(self, ctx: RequestContext, server_id: str) -> None:
        _, action_id = self._begin(ctx, server_id, "stop", ("active", "error"), "powering-off")

        def work() -> dict[str, Any]:
            self.driver.shutdown(server_id, self.settings.shutdown_timeout)
            return {"vm_state": "stopped", "power_state": int(PowerState.SHUTDOWN)}

        self._run(action_id, server_id, work)

    def _current_spec(self, server_id: str) -> GuestSpec:
        with self.db.session() as s:
            row = s.get(Server, server_id)
            assert row is not None
            disk = self._root_disk(row)
            drive = self.driver.instance_dir(server_id) / "disk.config"
            return self._spec(row, disk, drive if drive.exists() else None)

    def start(self, ctx: RequestContext, server_id: str) -> None:
        _, action_id = self._begin(ctx, server_id, "start", ("stopped",), "powering-on")

        def work() -> dict[str, Any]:
            self.driver.start(self._current_spec(server_id))
            return {"vm_state": "active", "power_state": int(PowerState.RUNNING), "fault": None}

        self._run(action_id, server_id, work)

    def reboot(self, ctx: RequestContext, server_id: str, hard: bool) -> None:
        allowed = ("active", "stopped", "paused", "suspended", "error") if hard else ("active",)
        task = "reboot_started_hard" if hard else "reboot_started"
        _, action_id = self._begin(ctx, server_id, "reboot", allowed, task)

        def work() -> dict[str, Any]:
            if hard:
                self.driver.destroy(server_id)
            else:
                clean = self.driver.shutdown(server_id, self.settings.shutdown_timeout)
                if not clean:
                    log.info("server %s ignored the ACPI shutdown; rebooted by force", server_id)
            suspended = self.driver.instance_dir(server_id) / "suspended.state"
            suspended.unlink(missing_ok=True)
            self.driver.start(self._current_spec(server_id))
            return {"vm_state": "active", "power_state": int(PowerState.RUNNING), "fault": None}

        self._run(action_id, server_id, work)

    def pause(self, ctx: RequestContext, server_id: str) -> None:
        _, action_id = self._begin(ctx, server_id, "pause", ("active",), "pausing")

        def work() -> dict[str, Any]:
            self.driver.pause(server_id)
            return {"vm_state": "paused", "power_state": int(PowerState.PAUSED)}

        self._run(action_id, server_id, work)

    def unpause(self, ctx: RequestContext, server_id: str) -> None:
        _, action_id = self._begin(ctx, server_id, "unpause", ("paused",), "unpausing")

        def work() -> dict[str, Any]:
            self.driver.unpause(server_id)
            return {"vm_state": "active", "power_state": int(PowerState.RUNNING)}

        self._run(action_id, server_id, work)

    def suspend(self, ctx: RequestContext, server_id: str) -> None:
        _, action_id = self._begin(ctx, server_id, "suspend", ("active",), "suspending")

        def work() -> dict[str, Any]:
            self.driver.suspend(server_id)
            return {"vm_state": "suspended", "power_state": int(PowerState.SUSPENDED)}

        self._run(action_id, server_id, work)

    def resume(self, ctx: RequestContext, server_id: str) -> None:
        _, action_id = self._begin(ctx, server_id, "resume", ("suspended",), "resuming")

        def work() -> dict[str, Any]:
            self.driver.resume(self._current_spec(server_id))
            return {"vm_state": "active", "power_state": int(PowerState.RUNNING)}

        self._run(action_id, server_id, work)

    def create_image(
        self, ctx: RequestContext, server_id: str, name: str, metadata: dict[str, str]
    ) -> str:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            if row.root_volume_id:
                raise BadRequest(
                    f"Server {server_id} boots from volume {row.root_volume_id}: make an image "
                    "of the volume instead (openstack image create --volume)."
                )
            min_disk = int(row.disk_gib)
            min_ram = 0
            source_image = row.image_id
        properties = {
            **metadata,
            "instance_uuid": server_id,
            "base_image_ref": source_image,
            "image_type": "snapshot",
        }
        image = self.images.create_snapshot_record(ctx, name, properties, min_disk, min_ram)
        image_id = str(image["id"])
        try:
            _, action_id = self._begin(
                ctx,
                server_id,
                "createImage",
                ("active", "stopped", "paused", "suspended"),
                "image_snapshot",
            )
        except Exception:
            self.images.fail_image(image_id, "the server could not be snapshotted")
            raise

        def work() -> dict[str, Any]:
            dest = self.driver.root / "snapshots" / f"{image_id}.qcow2"
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.driver.snapshot_disk(server_id, dest)
                self.images.import_file(image_id, dest)
            except Exception as exc:
                dest.unlink(missing_ok=True)
                self.images.fail_image(image_id, str(exc))
                log.warning("snapshot of %s failed: %s", server_id, exc)
            return {}

        self._run(action_id, server_id, work)
        return image_id

    def rebuild(
        self, ctx: RequestContext, server_id: str, image_ref: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            if self._server_row(s, ctx, server_id).root_volume_id:
                raise BadRequest(
                    f"Server {server_id} boots from a volume; rebuild works on image-backed "
                    "servers only."
                )
        try:
            image = self.images.image_for_boot(ctx, image_ref)
        except NotFound:
            raise BadRequest(f"Image {image_ref} could not be found.") from None
        key_values: dict[str, Any] = {}
        if "key_name" in changes:
            if changes["key_name"] is None:
                key_values = {"key_name": None, "key_data": None}
            else:
                with self.db.session() as s:
                    key = s.scalar(
                        select(Keypair).where(
                            Keypair.user_id == ctx.user_id, Keypair.name == changes["key_name"]
                        )
                    )
                    if key is None:
                        raise BadRequest(f"Invalid key_name provided: {changes['key_name']}.")
                    key_values = {"key_name": key.name, "key_data": key.public_key}
        extra: dict[str, Any] = {"image_id": image.id, **key_values}
        for field, column in (
            ("name", "name"),
            ("description", "description"),
            ("user_data", "user_data"),
            ("metadata", "server_metadata"),
        ):
            if field in changes:
                extra[column] = changes[field]
        row, action_id = self._begin(
            ctx, server_id, "rebuild", ("active", "stopped", "error"), "rebuilding", extra
        )
        was_stopped = row.vm_state == "stopped"

        def work() -> dict[str, Any]:
            self.driver.destroy(server_id)
            for name in ("disk.qcow2", "disk.config", "suspended.state"):
                (self.driver.instance_dir(server_id) / name).unlink(missing_ok=True)
            with self.db.session() as s:
                current = s.get(Server, server_id)
                assert current is not None
                spec = self._prepare_disks(current, image)
            if was_stopped:
                return {
                    "vm_state": "stopped",
                    "power_state": int(PowerState.SHUTDOWN),
                    "fault": None,
                }
            self.driver.start(spec)
            return {
                "vm_state": "active",
                "power_state": int(PowerState.RUNNING),
                "fault": None,
                "launched_at": _now_naive(self.clock),
            }

        self._run(action_id, server_id, work)
        return self.get_server(ctx, server_id)

    def resize(self, ctx: RequestContext, server_id: str, flavor_ref: str) -> None:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            try:
                flavor = self._flavor_view(self._flavor_row(s, ctx, flavor_ref))
            except NotFound:
                raise BadRequest(f"Flavor {flavor_ref} could not be found.") from None
            flavor.pop("sort")
            old = dict(row.flavor)
            if flavor["id"] == old.get("id"):
                raise BadRequest("When resizing, instances must change flavor!")
            volume_backed = bool(row.root_volume_id)
            if not volume_backed and flavor["disk"] and flavor["disk"] < row.disk_gib:
                raise BadRequest(
                    "Resize error: Unable to resize disk down: the new flavor's disk "
                    f"({flavor['disk']} GiB) is smaller than the server's ({row.disk_gib} GiB)."
                )
        new_disk = 0 if volume_backed else max(flavor["disk"], row.disk_gib)
        row, action_id = self._begin(
            ctx, server_id, "resize", ("active", "stopped"), "resize_prep", record="resize"
        )
        was_stopped = row.vm_state == "stopped"
        with self.db.session() as s:
            fits = scheduler.claim(
                s,
                self.capacity,
                server_id,
                max(flavor["vcpus"], old["vcpus"]),
                max(flavor["ram"], old["ram"]),
                new_disk,
            )
        if not fits:
            self._set(server_id, task_state=None)
            self._finish_action(action_id, NO_VALID_HOST)
            raise BadRequest(NO_VALID_HOST)
        old_disk = row.disk_gib

        def work() -> dict[str, Any]:
            self.driver.shutdown(server_id, self.settings.shutdown_timeout)
            if not volume_backed:  # a volume keeps its size: only CPU and memory change
                disk = self.driver.instance_dir(server_id) / "disk.qcow2"
                backup = self.driver.instance_dir(server_id) / "disk.before-resize.qcow2"
                _copy_file(disk, backup)
                self.driver.resize_root_disk(server_id, new_disk)
            self._set(
                server_id,
                flavor=flavor,
                old_flavor={**old, "root_gb": old_disk},
                task_state="resize_finish",
            )
            if not was_stopped:
                self.driver.start(self._current_spec(server_id))
            return {
                "vm_state": "resized",
                "power_state": int(PowerState.SHUTDOWN if was_stopped else PowerState.RUNNING),
            }

        self._run(action_id, server_id, work)

    def confirm_resize(self, ctx: RequestContext, server_id: str) -> None:
        row, action_id = self._begin(
            ctx, server_id, "confirmResize", ("resized",), "resize_confirming"
        )
        flavor = row.flavor

        def work() -> dict[str, Any]:
            (self.driver.instance_dir(server_id) / "disk.before-resize.qcow2").unlink(
                missing_ok=True
            )
            running = self.driver.power_state(server_id) == PowerState.RUNNING
            with self.db.session() as s:
                s.execute(
                    update(Server)
                    .where(Server.id == server_id)
                    .values(vcpus=flavor["vcpus"], memory_mib=flavor["ram"], old_flavor=None)
                )
            return {
                "vm_state": "active" if running else "stopped",
                "power_state": int(PowerState.RUNNING if running else PowerState.SHUTDOWN),
            }

        self._run(action_id, server_id, work)

    def revert_resize(self, ctx: RequestContext, server_id: str) -> None:
        row, action_id = self._begin(
            ctx, server_id, "revertResize", ("resized",), "resize_reverting"
        )
        old = dict(row.old_flavor or row.flavor)
        old_disk = int(old.pop("root_gb", row.disk_gib))

        def work() -> dict[str, Any]:
            running = self.driver.power_state(server_id) == PowerState.RUNNING
            self.driver.shutdown(server_id, self.settings.shutdown_timeout)
            directory = self.driver.instance_dir(server_id)
            backup = directory / "disk.before-resize.qcow2"
            if backup.exists():
                backup.replace(directory / "disk.qcow2")
            with self.db.session() as s:
                before = self._billing_state(s, server_id)
                s.execute(
                    update(Server)
                    .where(Server.id == server_id)
                    .values(
                        flavor=old,
                        old_flavor=None,
                        vcpus=old["vcpus"],
                        memory_mib=old["ram"],
                        disk_gib=old_disk,
                    )
                )
                after = self._billing_state(s, server_id)
            self._meter_instance(server_id, before, after)
            if running:
                self.driver.start(self._current_spec(server_id))
            return {
                "vm_state": "active" if running else "stopped",
                "power_state": int(PowerState.RUNNING if running else PowerState.SHUTDOWN),
            }

        self._run(action_id, server_id, work)

    def lock(self, ctx: RequestContext, server_id: str, locked: bool) -> None:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            row.locked = locked
            row.updated_at = _now_naive(self.clock)
            self._action(s, ctx, server_id, row.project_id, "lock" if locked else "unlock")

    def console_output(self, ctx: RequestContext, server_id: str, length: int | None) -> str:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            if row.vm_state == "building" and row.task_state == "scheduling":
                raise Conflict(f"Instance {server_id} is not ready yet: try again in a moment.")
        return self.driver.console_output(server_id, length)

    # ------------------------------------------------------------------ volumes

    def _attach_root_volume(self, ctx: RequestContext, server_id: str, boot: BootVolume) -> None:
        """Boot from volume: make (or take) the volume and attach it as the root disk."""
        if boot.source == "image":
            handle = self.volumes.create_for_boot(ctx, boot.uuid, boot.size_gib)
            volume_id = handle.id
        else:
            volume_id = boot.uuid
        self.volumes.reserve(ctx, volume_id, server_id)
        self.volumes.attached(
            volume_id, server_id, "/dev/vda", str(uuid.uuid4()), boot.delete_on_termination
        )
        self._set(server_id, root_volume_id=volume_id)

    def _let_go_of_volumes(self, server_id: str) -> None:
        """The server is gone: its volumes are free again, or deleted if it asked so."""
        for attachment in self.volumes.attachments_of(server_id):
            volume_id = attachment["volume_id"]
            try:
                if attachment.get("status") == "attaching":
                    self.volumes.unreserve(volume_id)
                    continue
                if attachment.get("status") == "in-use":
                    self.volumes.begin_detach(SYSTEM, volume_id, server_id)
                self.volumes.detached(volume_id)
                if attachment.get("delete_on_termination"):
                    self.volumes.delete_internal(volume_id)
            except Exception:
                log.exception("could not release volume %s of server %s", volume_id, server_id)

    def _next_device(self, server_id: str) -> str:
        """The name the guest's kernel gives the next disk: the lowest free vdX after vdb."""
        used = {a["device"] for a in self.volumes.attachments_of(server_id)}
        for index in range(2, 26):
            name = f"/dev/vd{chr(ord('a') + index)}"
            if name not in used:
                return name
        raise BadRequest("This server has no free device name left for another volume.")

    def volume_attachments(self, ctx: RequestContext, server_id: str) -> list[dict[str, Any]]:
        self._check_visible(ctx, server_id)
        return [
            {**a, "server_id": server_id}
            for a in self.volumes.attachments_of(server_id)
            if a.get("status") in ("in-use", "detaching", "attaching")
        ]

    def attach_volume(
        self, ctx: RequestContext, server_id: str, volume_id: str, delete_on_termination: bool
    ) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            self._check_unlocked(ctx, row)
            if row.task_state or row.vm_state not in ("active", "paused", "stopped"):
                state = f"task_state {row.task_state}" if row.task_state else row.vm_state
                raise Conflict(
                    f"Cannot 'attach_volume' instance {server_id} while it is in {state}"
                )
        with self._server_lock(server_id):
            device = self._next_device(server_id)
            handle = self.volumes.reserve(ctx, volume_id, server_id)
            attachment_id = str(uuid.uuid4())
            try:
                if self.driver.pid(server_id) is not None:
                    self.driver.attach_disk(
                        server_id,
                        _disk_of(
                            {
                                "volume_id": handle.id,
                                "path": handle.path,
                                "format": handle.format,
                                "readonly": handle.readonly,
                            }
                        ),
                    )
            except Exception as exc:
                self.volumes.unreserve(volume_id)
                if isinstance(exc, DriverError):
                    raise Conflict(f"Attaching volume {volume_id} failed: {exc}") from None
                raise
            self.volumes.attached(
                volume_id, server_id, device, attachment_id, delete_on_termination
            )
            self._set(server_id)
            with self.db.session() as s:
                current = s.get(Server, server_id)
                assert current is not None
                self._action(s, ctx, server_id, current.project_id, "attach_volume")
        return {
            "volume_id": volume_id,
            "server_id": server_id,
            "device": device,
            "attachment_id": attachment_id,
            "delete_on_termination": delete_on_termination,
        }

    def detach_volume(self, ctx: RequestContext, server_id: str, volume_id: str) -> None:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            self._check_unlocked(ctx, row)
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
        self.volumes.begin_detach(ctx, volume_id, server_id)
        with self.db.session() as s:
            action_id = self._action(s, ctx, server_id, project_id, "detach_volume")
        timeout = self.volumes.settings.detach_timeout

        def task() -> None:
            with self._server_lock(server_id):
                try:
                    released = self.driver.detach_disk(server_id, _disk_id(volume_id), timeout)
                except Exception as exc:
                    log.warning("detach of %s from %s failed: %s", volume_id, server_id, exc)
                    released = False
                if released:
                    self.volumes.detached(volume_id)
                    self._finish_action(action_id)
                else:
                    self.volumes.roll_back_detach(volume_id)
                    self._finish_action(
                        action_id,
                        f"The guest did not release volume {volume_id} within {timeout:g} s; "
                        "it is still attached. Unmount it in the guest and try again.",
                    )

        self._submit(task)

    # ------------------------------------------------------------------ interfaces (ports)

    def interfaces(self, ctx: RequestContext, server_id: str) -> list[dict[str, Any]]:
        self._check_visible(ctx, server_id)
        return [] if self.network is None else list(self.network.ports_of(server_id))

    def _interface_row_check(self, ctx: RequestContext, server_id: str, verb: str) -> Server:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            self._check_unlocked(ctx, row)
            if row.task_state or row.vm_state not in ("active", "paused", "stopped"):
                state = f"task_state {row.task_state}" if row.task_state else row.vm_state
                raise Conflict(f"Cannot '{verb}' instance {server_id} while it is in {state}")
            s.expunge(row)
            return row

    def attach_interface(
        self,
        ctx: RequestContext,
        server_id: str,
        port_id: str | None,
        network_id: str | None,
        fixed_ip: str | None,
    ) -> dict[str, Any]:
        """Plug a port (given, or made on a network) into the server, hot if it runs."""
        row = self._interface_row_check(ctx, server_id, "attach_interface")
        if self.network is None or self.network.dataplane is None:
            raise BadRequest("This cloud runs no network data plane: no port can be attached.")
        if row.networks != "none" and not isinstance(row.networks, list):
            raise BadRequest(
                "This server has the isolated user-mode NIC: create it with networks to "
                "attach ports."
            )
        if port_id is None and network_id is None:
            network_id = self.network.get_or_create_auto_network(ctx)["id"]
        with self._server_lock(server_id):
            port = self.network.create_port_for_server(
                ctx, network_id=network_id, port_id=port_id, fixed_ip=fixed_ip, server_id=server_id
            )
            try:
                self.network.bind_port(port["id"], server_id, self.host)
                if self.driver.pid(server_id) is not None:
                    tap = self.network.wire_port(port["id"])
                    nic = Nic(
                        mac=port["mac_address"], kind="tap", ifname=tap, id=_nic_id(port["id"])
                    )
                    self.driver.attach_nic(server_id, nic)
            except Exception as exc:
                self.network.release_port(port["id"])
                if isinstance(exc, DriverError):
                    raise Conflict(f"Attaching port {port['id']} failed: {exc}") from None
                raise
            if not isinstance(row.networks, list):
                self._set(server_id, networks=[])
            self._set(server_id, addresses=self._addresses(server_id))
            with self.db.session() as s:
                self._action(s, ctx, server_id, row.project_id, "attach_interface")
            return dict(self.network.get_port(SYSTEM, port["id"]))

    def detach_interface(self, ctx: RequestContext, server_id: str, port_id: str) -> None:
        row = self._interface_row_check(ctx, server_id, "detach_interface")
        if self.network is None or port_id not in [
            p["id"] for p in self.network.ports_of(server_id)
        ]:
            raise NotFound(f"Port {port_id[:64]} is not attached")
        with self.db.session() as s:
            action_id = self._action(s, ctx, server_id, row.project_id, "detach_interface")
        timeout = self.settings.shutdown_timeout

        def task() -> None:
            with self._server_lock(server_id):
                try:
                    released = self.driver.detach_nic(server_id, _nic_id(port_id), timeout)
                except Exception as exc:
                    log.warning("detach of port %s from %s failed: %s", port_id, server_id, exc)
                    released = False
                if not released:
                    self._finish_action(
                        action_id,
                        f"The guest did not release port {port_id} within {timeout:g} s; it "
                        "is still attached. Try again.",
                    )
                    return
                # the server stops showing the port before the port shows itself free
                self._set(server_id, addresses=self._addresses(server_id, without=port_id))
                self.network.release_port(port_id)
                self._finish_action(action_id)

        self._submit(task)

    def _resize_attached(self, server_id: str, volume_id: str, size_gib: int) -> None:
        """Extend of an attached volume: grow it through QEMU so the guest sees it at once."""
        with self._server_lock(server_id):
            if self.driver.pid(server_id) is None:
                raise DriverError("the server is not running; extend the volume while detached")
            self.driver.resize_disk(server_id, _disk_id(volume_id), size_gib * GIB)

    # ------------------------------------------------------------------ metadata and tags

    def metadata(self, ctx: RequestContext, server_id: str) -> dict[str, str]:
        return dict(self.get_server(ctx, server_id)["metadata"])

    def set_metadata(
        self, ctx: RequestContext, server_id: str, items: dict[str, str], replace: bool
    ) -> dict[str, str]:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            self._check_unlocked(ctx, row)
            merged = dict(items) if replace else {**(row.server_metadata or {}), **items}
            limit = self._limits_of(s, row.project_id)["metadata_items"]
            if 0 <= limit < len(merged):
                raise Forbidden(f"Quota exceeded for metadata items: at most {limit} per server.")
            row.server_metadata = merged
            row.updated_at = _now_naive(self.clock)
            return dict(merged)

    def delete_metadata(self, ctx: RequestContext, server_id: str, key: str) -> None:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            self._check_unlocked(ctx, row)
            items = dict(row.server_metadata or {})
            if key not in items:
                raise NotFound(f"Metadata item was not found: {key}")
            del items[key]
            row.server_metadata = items
            row.updated_at = _now_naive(self.clock)

    def tags(self, ctx: RequestContext, server_id: str) -> list[str]:
        return list(self.get_server(ctx, server_id)["tags"])

    def set_tags(self, ctx: RequestContext, server_id: str, tags: list[str]) -> list[str]:
        if len(tags) > 50:
            raise BadRequest("A server has at most 50 tags.")
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            row.tags = sorted(set(tags))
            row.updated_at = _now_naive(self.clock)
            return list(row.tags)

    def add_tag(self, ctx: RequestContext, server_id: str, tag: str) -> bool:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            current = list(row.tags or [])
            if tag in current:
                return False
            if len(current) >= 50:
                raise BadRequest("A server has at most 50 tags.")
            row.tags = sorted({*current, tag})
            row.updated_at = _now_naive(self.clock)
            return True

    def delete_tag(self, ctx: RequestContext, server_id: str, tag: str | None) -> None:
        with self.db.session() as s:
            row = self._server_row(s, ctx, server_id)
            current = list(row.tags or [])
            if tag is None:
                row.tags = []
            elif tag not in current:
                raise NotFound(f"Tag '{tag}' could not be found.")
            else:
                row.tags = [t for t in current if t != tag]
            row.updated_at = _now_naive(self.clock)

    # ------------------------------------------------------------------ actions log

    def instance_actions(
        self, ctx: RequestContext, server_id: str, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The server's actions, newest first (deleted servers' too); only those of one
        request when `request_id` is given, picked by the database."""
        with self.db.session() as s:
            row = s.get(Server, server_id) if len(server_id) <= 36 else None
            if row is None or (not ctx.is_admin and row.project_id != ctx.project_id):
                raise NotFound(f"Instance {server_id} could not be found.")
            query = select(InstanceAction).where(InstanceAction.server_id == server_id)
            if request_id is not None:
                query = query.where(InstanceAction.request_id == request_id)
            actions = s.scalars(query.order_by(InstanceAction.id.desc())).all()
            return [self._action_view(a) for a in actions]

    def instance_action(
        self, ctx: RequestContext, server_id: str, request_id: str
    ) -> dict[str, Any]:
        for action in self.instance_actions(ctx, server_id, request_id):
            return action
        raise NotFound(f"Action {request_id} not found.")

    @staticmethod
    def _action_view(a: InstanceAction) -> dict[str, Any]:
        return {
            "action": a.action,
            "instance_uuid": a.server_id,
            "request_id": a.request_id,
            "user_id": a.user_id,
            "project_id": a.project_id,
            "start_time": as_utc(a.start_time),
            "finish_time": as_utc(a.finish_time) if a.finish_time else None,
            "updated_at": as_utc(a.finish_time or a.start_time),
            "result": a.result,
            "message": a.message,
        }

    # ------------------------------------------------------------------ host view

    def hypervisor(self) -> dict[str, Any]:
        with self.db.session() as s:
            used = scheduler.usage(s, self.host)
        cap = self.capacity
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.host)),
            "hypervisor_hostname": self.host,
            "host": self.host,
            "accelerator": self.driver.accelerator(),
            "vcpus": cap.physical_vcpus,
            "memory_mb": cap.physical_memory_mib,
            "local_gb": cap.physical_disk_gib,
            "vcpus_used": used.vcpus,
            "memory_mb_used": used.memory_mib + self.settings.reserved_host_memory_mib,
            "local_gb_used": used.disk_gib,
            "running_vms": used.servers,
            "capacity": cap,
        }

    # ------------------------------------------------------------------ reconciliation

    def reconcile(self) -> None:
        """Make the database true to the host after a start: finish or end cut-short work."""
        running = self.driver.running()
        with self.db.session() as s:
            rows = s.scalars(
                select(Server).where(
                    Server.deleted.is_(False),
                    or_(Server.host == self.host, Server.host.is_(None)),
                )
            ).all()
            known = {r.id: (r.vm_state, r.task_state, r.host) for r in rows}
            all_ids = set(s.scalars(select(Server.id)).all())
        for server_id, (vm_state, task_state, host) in known.items():
            if task_state == "deleting":
                self._destroy_everything(server_id)
                continue
            if vm_state == "building":
                if server_id in running:
                    self._set(
                        server_id,
                        vm_state="active",
                        task_state=None,
                        power_state=int(PowerState.RUNNING),
                        launched_at=_now_naive(self.clock),
                    )
                else:
                    self.driver.delete_files(server_id)
                    with self.db.session() as s:
                        scheduler.release(s, server_id)
                    self._set(
                        server_id,
                        vm_state="error",
                        task_state=None,
                        fault=self._fault(
                            "The control plane restarted while this server was being built; "
                            "delete it and create it again."
                        ),
                    )
                continue
            if host is None:
                continue
            if task_state:
                self._set(server_id, task_state=None)
            self._settle_volumes(server_id, server_id in running)
            self._sync_one(server_id)
        for server_id, pid in running.items():
            if server_id not in known:
                state = "a deleted server" if server_id in all_ids else "no known server"
                log.warning(
                    "orphan QEMU process %d for %s (%s); left running for the operator",
                    pid,
                    server_id,
                    state,
                )
                self.orphans[server_id] = pid

    def _settle_volumes(self, server_id: str, running: bool) -> None:
        """An attach or detach cut short by a restart ends as the guest really has it."""
        for a in self.volumes.attachments_of(server_id):
            status, volume_id = a.get("status"), a["volume_id"]
            if status not in ("attaching", "detaching"):
                continue
            present = running and self.driver.has_disk(server_id, _disk_id(volume_id))
            if status == "attaching":
                if present:
                    device = self._next_device(server_id)
                    self.volumes.attached(
                        volume_id, server_id, device, str(uuid.uuid4()),
                        bool(a.get("delete_on_termination")),
                    )  # fmt: skip
                else:
                    self.volumes.unreserve(volume_id)
            elif present:
                self.volumes.roll_back_detach(volume_id)
            else:
                self.volumes.detached(volume_id)

    def _sync_one(self, server_id: str) -> None:
        state = self.driver.power_state(server_id)
        with self.db.session() as s:
            row = s.get(Server, server_id)
            if row is None or row.deleted or row.task_state:
                return
            values: dict[str, Any] = {}
            if state != row.power_state:
                values["power_state"] = int(state)
            if row.vm_state in ("active", "paused") and state in (
                PowerState.SHUTDOWN,
                PowerState.CRASHED,
            ):
                values["vm_state"] = "stopped"
            elif row.vm_state == "paused" and state == PowerState.RUNNING:
                values["vm_state"] = "active"
            elif row.vm_state == "active" and state == PowerState.PAUSED:
                values["vm_state"] = "paused"
            elif row.vm_state == "stopped" and state == PowerState.RUNNING:
                values["vm_state"] = "active"
            elif row.vm_state == "suspended" and state == PowerState.SHUTDOWN:
                values["vm_state"] = "stopped"
            if not values:
                return
            values["updated_at"] = _now_naive(self.clock)
            before = self._billing_state(s, server_id)
            s.execute(
                update(Server)
                .where(Server.id == server_id, Server.task_state.is_(None))
                .values(**values)
            )
            after = self._billing_state(s, server_id)
        self._meter_instance(server_id, before, after)

    def sync_power_states(self) -> None:
        """What Nova's periodic task does: record what each guest really is doing."""
        running = self.driver.running()  # one pass over /proc, not a probe per server
        with self.db.session() as s:
            rows = s.execute(
                select(Server.id, Server.vm_state, Server.power_state).where(
                    Server.host == self.host,
                    Server.deleted.is_(False),
                    Server.task_state.is_(None),
                    Server.vm_state.in_(("active", "stopped", "paused", "suspended", "resized")),
                )
            ).all()
        for server_id, vm_state, power_state in rows:
            if server_id not in running and (
                (vm_state == "stopped" and power_state == PowerState.SHUTDOWN)
                or (vm_state == "suspended" and power_state == PowerState.SUSPENDED)
            ):
                continue  # no process, and none expected: nothing can have changed
            with self._server_lock(server_id):
                self._sync_one(server_id)
            if server_id in running:
                self.driver.trim_console(server_id)


def _nic_id(port_id: str) -> str:
    return f"nic-{port_id}"


def _disk_id(volume_id: str) -> str:
    return f"vol-{volume_id}"


def _disk_of(attachment: dict[str, Any]) -> Disk:
    return Disk(
        id=_disk_id(attachment["volume_id"]),
        path=attachment["path"],
        format=attachment.get("format", "qcow2"),
        readonly=bool(attachment.get("readonly")),
        serial=str(attachment["volume_id"])[:20],
    )


def _copy_file(src: Path, dest: Path) -> None:
    """A durable copy: the disk kept for a resize revert must survive a crash."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)


def _server_view(row: Server, volumes: Iterable[ServerVolume]) -> dict[str, Any]:
    """A server as the API shapes it; `volumes` are the ones attached to it, read beforehand."""
    return {
        "id": row.id,
        "name": row.name,
        "status": status_of(row.vm_state, row.task_state),
        "project_id": row.project_id,
        "user_id": row.user_id,
        "hostname": row.hostname,
        "description": row.description,
        "image_id": row.image_id,
        "flavor": row.flavor,
        "key_name": row.key_name,
        "metadata": dict(row.server_metadata or {}),
        "tags": list(row.tags or []),
        "config_drive": row.config_drive,
        "availability_zone": row.availability_zone,
        "addresses": row.addresses or {},
        "host": row.host,
        "vm_state": row.vm_state,
        "task_state": row.task_state,
        "power_state": row.power_state,
        "fault": row.fault,
        "locked": row.locked,
        "reservation_id": row.reservation_id,
        "launch_index": row.launch_index,
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
        "launched_at": as_utc(row.launched_at) if row.launched_at else None,
        "terminated_at": as_utc(row.terminated_at) if row.terminated_at else None,
        "deleted": row.deleted,
        "user_data": row.user_data,
        "root_volume_id": row.root_volume_id,
        "volumes_attached": [
            {"id": v.volume_id, "delete_on_termination": v.delete_on_termination}
            for v in volumes
            if v.status in ("in-use", "detaching")
        ],
    }


def _list_query(ctx: RequestContext, filters: dict[str, Any]) -> Any:
    """The SQL part of a list's filters, over the listed columns; None when a status
    matches nothing."""
    query = select(*LISTED_COLUMNS)
    all_tenants = bool(filters.get("all_tenants")) and ctx.is_admin
    if not all_tenants:
        query = query.where(Server.project_id == (ctx.project_id or ""))
    elif filters.get("project_id"):
        query = query.where(Server.project_id == filters["project_id"])
    since = filters.get("changes-since")
    if since is not None:
        query = query.where(Server.updated_at >= since.astimezone(dt.UTC).replace(tzinfo=None))
    elif not (ctx.is_admin and filters.get("deleted")):
        query = query.where(Server.deleted.is_(False))
    status = filters.get("status")
    if status:
        vm_state = STATUS_FILTER.get(status.upper())
        if vm_state is None:
            return None
        query = query.where(Server.vm_state == vm_state[0])
    if filters.get("image"):
        query = query.where(Server.image_id == filters["image"])
    if filters.get("flavor"):
        query = query.where(Server.flavor["id"].as_string() == filters["flavor"])
    if filters.get("host") and ctx.is_admin:
        query = query.where(Server.host == filters["host"])
    return query.order_by(Server.created_at.desc(), Server.id.desc())


def _name_pattern(raw: str | None) -> re.Pattern[str] | None:
    if not raw:
        return None
    try:
        return re.compile(raw)
    except re.error:
        raise BadRequest(f"Invalid name filter: {raw!r} is not a regular expression.") from None


def _tags_match(row_tags: set[str], filters: dict[str, Any]) -> bool:
    """Nova's tag filters: all of `tags`, any of `tags-any`, not all of `not-tags`."""
    tags = set(filters.get("tags") or ())
    tags_any = set(filters.get("tags-any") or ())
    not_tags = set(filters.get("not-tags") or ())
    if tags and not tags <= row_tags:
        return False
    if tags_any and not tags_any & row_tags:
        return False
    return not (not_tags and not_tags <= row_tags)
