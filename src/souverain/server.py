"""The composition root: the data dir, the schema, keys and bootstrap, and every service
built and wired to the others (the only place that closes a cycle between them).

`open_platform` is what one serving process holds; `prepare` sets up the data dir
and opens one, for tests and the CLI. Listening, workers and their supervision
are `serving`'s business.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

from souverain.app import SERVICES, Mounted, build_app, build_s3_app
from souverain.billing import api as billing_api
from souverain.billing.catalog import Catalog
from souverain.billing.service import BillingService
from souverain.common.audit import AuditLog, load_or_create_key
from souverain.common.changes import ChangeCounter
from souverain.common.clock import Clock
from souverain.compute import api as compute_api
from souverain.compute import api_internal as compute_internal_api
from souverain.compute.qemu import QemuDriver
from souverain.compute.service import ComputeService
from souverain.config import Settings
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from souverain.db.leases import LEASE_TTL, LeaseKeeper
from souverain.identity.bootstrap import bootstrap, write_clouds_yaml
from souverain.identity.service import CatalogEntry, IdentityPolicySettings, IdentityService
from souverain.identity.tokens import KeyRepository, TokenFormatter
from souverain.image import api as image_api
from souverain.image.service import ImageService
from souverain.image.store import ImageStore
from souverain.network import api as network_api
from souverain.network.dataplane import Dataplane
from souverain.network.firewall import Firewall
from souverain.network.host import HostNetwork
from souverain.network.routing import Routing
from souverain.network.service import NetworkService
from souverain.objectstore.api import swift as swift_api
from souverain.objectstore.api.swift.imagesource import SwiftObjectSource
from souverain.objectstore.backup_objects import BackupObjectStore
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.store import BlobStore
from souverain.objectstore.swift.expirer import Expirer
from souverain.openstack.faults import render_error
from souverain.volume import api as volume_api
from souverain.volume.backend import VolumeBackend
from souverain.volume.service import VolumeService

log = logging.getLogger("souverain")
# seconds between rounds of the object expirer (at most; the meter interval if shorter)
EXPIRER_INTERVAL = 30.0
# Cloud-wide work, run by the one process holding its lease (see ARCHITECTURE.md for the
# split); every other loop is this process's or this host's own and runs everywhere.
BUDGETS_LEASE = "billing-budgets"
EXPIRER_LEASE = "objectstore-expirer"
SWEEPS_LEASE = "objectstore-sweeps"
ORPHANED_BUILDS_LEASE = "compute-orphaned-builds"
LEASED_WORK = (BUDGETS_LEASE, EXPIRER_LEASE, SWEEPS_LEASE, ORPHANED_BUILDS_LEASE)


@dataclass
class DataPaths:
    root: Path

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def fernet_keys(self) -> Path:
        return self.keys / "fernet"

    @property
    def credential_key(self) -> Path:
        return self.keys / "credential.key"

    @property
    def audit_key(self) -> Path:
        return self.keys / "audit.key"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    @property
    def changes(self) -> Path:
        return self.root / "identity.changes"

    @property
    def clouds_yaml(self) -> Path:
        return self.root / "clouds.yaml"

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def compute(self) -> Path:
        return self.root / "compute"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"


@dataclass
class Platform:
    settings: Settings
    paths: DataPaths
    db: Database
    identity: IdentityService
    audit_log: AuditLog
    app: ASGIApp
    s3_app: ASGIApp
    objectstore: ObjectStoreService
    image: ImageService
    compute: ComputeService
    volume: VolumeService
    network: NetworkService
    billing: BillingService
    admin_password_file_written: bool
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    clock: Clock = field(default_factory=Clock)
    leases: LeaseKeeper | None = None

    def start_background(self, sync_interval: float = 1.0, lease_ttl: float = LEASE_TTL) -> None:
        """Background work of a running server: follow identity changes made elsewhere,
        and keep the servers' recorded power state true to their QEMU processes; the
        cloud-wide work (LEASED_WORK) only while this process holds its lease."""
        self.leases = LeaseKeeper(self.db, self.clock, lease_ttl)
        for name in LEASED_WORK:
            self.leases.want(name)
        keeper = threading.Thread(
            target=self.leases.keep, args=(self._stop,), name="leases", daemon=True
        )
        keeper.start()
        self._workers.append(keeper)
        worker = threading.Thread(
            target=self._sync_loop, args=(sync_interval,), name="identity-sync", daemon=True
        )
        worker.start()
        self._workers.append(worker)
        compute = threading.Thread(
            target=self._compute_loop,
            args=(self.settings.compute.sync_interval,),
            name="compute-sync",
            daemon=True,
        )
        compute.start()
        self._workers.append(compute)
        budgets = threading.Thread(
            target=self._budget_loop,
            args=(self.settings.billing.budget_check_interval,),
            name="billing-budgets",
            daemon=True,
        )
        budgets.start()
        self._workers.append(budgets)
        egress = threading.Thread(
            target=self._egress_loop,
            args=(self.settings.network.egress_sample_interval,),
            name="network-egress",
            daemon=True,
        )
        egress.start()
        self._workers.append(egress)
        storage_meter = threading.Thread(
            target=self._storage_meter_loop,
            args=(self.settings.objectstore.meter_interval,),
            name="objectstore-meter",
            daemon=True,
        )
        storage_meter.start()
        self._workers.append(storage_meter)
        expirer = threading.Thread(
            target=self._expirer_loop,
            args=(min(self.settings.objectstore.meter_interval, EXPIRER_INTERVAL),),
            name="objectstore-expirer",
            daemon=True,
        )
        expirer.start()
        self._workers.append(expirer)

    def _expirer_loop(self, interval: float) -> None:
        """Objects past their X-Delete-At go for S3 too (Swift's reads hide them at once)."""
        expirer = Expirer(self.objectstore)
        while not self._stop.wait(interval):
            if not self.holds(EXPIRER_LEASE):
                continue
            try:
                expirer.expire_due()
            except Exception:  # the next round takes them again
                log.exception("deleting expired objects failed; retrying")

    def _storage_meter_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self.holds(SWEEPS_LEASE):
                self._sweep_objects()
            try:  # what this process noted: every process flushes its own
                self.objectstore.flush_meter()
            except Exception:  # what was noted is kept for the next round
                log.exception("object storage meter flush failed; retrying")

    def _sweep_objects(self) -> None:
        """Cloud-wide, before this round's flush: the buckets it shrank are gauged in it."""
        try:
            aborted = self.objectstore.abort_expired_uploads()
            if aborted:
                log.info("aborted %d multipart upload(s) left unfinished too long", aborted)
        except Exception:  # the next round takes them again
            log.exception("aborting expired multipart uploads failed; retrying")
        try:  # bucket lifecycle rules (each bucket also under a lease of its own)
            self.objectstore.run_lifecycle()
        except Exception:  # the next round takes them again
            log.exception("bucket lifecycle sweep failed; retrying")

    def _egress_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.network.sample_egress()
            except Exception:  # keep metering; the next round may succeed
                log.exception("egress sampling failed; retrying")

    def _budget_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if not self.holds(BUDGETS_LEASE):
                continue
            try:
                self.billing.check_budgets()
            except Exception:  # keep watching; the next round may succeed
                log.exception("budget check failed; retrying")

    def _compute_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.compute.sync_power_states()
                if self.holds(ORPHANED_BUILDS_LEASE):
                    self.compute.end_orphaned_builds()
            except Exception:  # keep syncing; the next round may succeed
                log.exception("compute power state sync failed; retrying")

    def _sync_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            flush_logs()
            try:
                self.identity.sync_from_store()
            except Exception:  # keep following; the next round may succeed
                log.exception("identity sync failed; retrying")

    def holds(self, lease: str) -> bool:
        """Whether this process runs the cloud-wide work `lease` names right now."""
        return self.leases is not None and self.leases.holds(lease)

    def close(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join()
        if self.leases is not None:  # another process takes the work over at once
            self.leases.release_all()
        try:
            self.objectstore.flush_meter()  # egress and gauges noted since the last round
        except Exception:
            log.exception(
                "object storage meter flush at shutdown failed; egress since the "
                "last flush is lost and gauges are corrected at the next start"
            )
        self.compute.close()
        self.volume.close()
        self.network.close()
        self.audit_log.close()
        if self.identity.changes is not None:
            self.identity.changes.close()
        if self.objectstore.changes is not None:
            self.objectstore.changes.close()
        self.db.dispose()


def _credential_key(path: Path) -> bytes:
    """A Fernet key for credential blobs at rest, created once, mode 0600."""
    raw = load_or_create_key(path)
    return base64.urlsafe_b64encode(raw[:32])


def _paths(settings: Settings) -> DataPaths:
    return DataPaths(settings.data_dir.resolve())


def _key_repository(settings: Settings) -> KeyRepository:
    return KeyRepository(_paths(settings).fernet_keys, settings.identity.max_active_keys)


def _identity(settings: Settings, db: Database, clock: Clock) -> IdentityService:
    paths = _paths(settings)
    ident = settings.identity
    return IdentityService(
        db,
        TokenFormatter(_key_repository(settings)),
        _credential_key(paths.credential_key),
        IdentityPolicySettings(
            token_expiration=ident.token_expiration,
            bcrypt_rounds=ident.bcrypt_rounds,
            password_min_length=ident.password_min_length,
            lockout_failure_attempts=ident.lockout_failure_attempts,
            lockout_duration=ident.lockout_duration,
            hash_concurrency=ident.hash_concurrency
            or max(1, (os.cpu_count() or 1) // settings.server.workers),
        ),
        clock,
        ChangeCounter(paths.changes),
    )


def _objectstore(
    settings: Settings, db: Database, identity: IdentityService, clock: Clock
) -> ObjectStoreService:
    return ObjectStoreService(
        db,
        BlobStore(_paths(settings).objects),
        identity,
        settings.server.region,
        clock,
        settings.objectstore.min_part_bytes,
        ChangeCounter(_paths(settings).root / "objectstore.changes"),
        quota_bytes=settings.objectstore.quota_bytes,
        quota_objects=settings.objectstore.quota_objects,
        abort_incomplete_after=settings.objectstore.abort_incomplete_after,
    )


def _image(
    settings: Settings,
    db: Database,
    identity: IdentityService,
    clock: Clock,
    objectstore: ObjectStoreService | None = None,
) -> ImageService:
    """The image service; given the object store, web-download imports this cloud's objects,
    read with the caller's own Swift rights."""
    objects = (
        SwiftObjectSource(objectstore, settings.objectstore, clock)
        if objectstore is not None
        else None
    )
    store = ImageStore(_paths(settings).images)
    return ImageService(db, store, identity, clock, settings.image, objects)


def _volume(
    settings: Settings,
    db: Database,
    identity: IdentityService,
    image: ImageService,
    clock: Clock,
    objectstore: ObjectStoreService | None = None,
) -> VolumeService:
    backend = VolumeBackend(_paths(settings).volumes)
    backups = BackupObjectStore(objectstore) if objectstore is not None else None
    return VolumeService(db, backend, identity, image, clock, settings.volume, backups)


def _dataplane_prefix(digest: str) -> str:
    """Four characters naming this cloud's kernel objects: a letter, then base 36 (1.2 million
    values, so clouds sharing a host, as tests do, do not take each other's bridges)."""
    number = int(digest[:12], 16)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    first, number = alphabet[number % 26], number // 26
    rest = ""
    for _ in range(3):
        rest += alphabet[number % 36]
        number //= 36
    return first + rest


def host_network(data_dir: Path, make_run_dir: bool = True) -> HostNetwork:
    """This cloud's kernel side on this host. One host may run several clouds (tests do):
    the names of its objects and its run dir derive from the data dir."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()
    run_dir = Path("/run/souverain-net") / digest[:8]
    if make_run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
        for directory in (run_dir.parent, run_dir):  # dnsmasq runs as nobody: it must get in
            os.chmod(directory, 0o755)  # noqa: S103 - dnsmasq (nobody) reads below
    plane = Dataplane(run_dir, prefix=_dataplane_prefix(digest))
    return HostNetwork(plane, Routing(plane), Firewall(plane.prefix))


def _network(
    settings: Settings, db: Database, identity: IdentityService, clock: Clock
) -> NetworkService:
    host = None
    # bridges, taps and namespaces need root; without, servers take networks none (or the
    # isolated user-mode NIC for auto)
    if settings.network.dataplane and os.geteuid() == 0:
        host = host_network(_paths(settings).root)
    return NetworkService(db, identity, clock, settings.network, host)


def _compute(
    settings: Settings,
    db: Database,
    identity: IdentityService,
    image: ImageService,
    volume: VolumeService,
    network: NetworkService,
    clock: Clock,
) -> ComputeService:
    accelerator = settings.compute.accelerator
    driver = QemuDriver(
        _paths(settings).compute,
        console_max_bytes=settings.compute.console_max_bytes,
        accelerator=None if accelerator == "auto" else accelerator,
    )
    service = ComputeService(db, identity, image, volume, network, driver, clock, settings.compute)
    # the cycles between compute and the services it uses close here, and only here
    volume.attached_resizer = service.resize_attached
    volume.writes_held = service.disk_writes_held
    network.address_listeners.append(service.refresh_addresses)
    return service


def _billing(
    settings: Settings, db: Database, identity: IdentityService, clock: Clock
) -> BillingService:
    st = settings.billing
    catalog = Catalog.load(st.catalog) if st.catalog is not None else Catalog.default()
    return BillingService(
        db,
        clock,
        identity,
        catalog,
        project_limit=st.project_limit,
        invoice_prefix=st.invoice_prefix,
    )


def set_up_data(settings: Settings, clock: Clock | None = None) -> bool:
    """Once per start, before any worker: data dir, schema, keys, bootstrap, clouds.yaml.

    Returns whether clouds.yaml holds the admin password.
    """
    paths = _paths(settings)
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(paths.root, 0o700)
    paths.keys.mkdir(exist_ok=True, mode=0o700)
    os.chmod(paths.keys, 0o700)
    load_or_create_key(paths.audit_key)  # before any worker: they must share it
    engine = make_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
        _key_repository(settings).setup()
        identity = _identity(settings, Database(engine), clock or Clock())
        result = bootstrap(
            identity,
            settings.server.region,
            settings.base_url,
            (*SERVICES, CatalogEntry(type="s3", name="s3", path="", url=settings.s3_url)),
            os.environ.get("SOUVERAIN_ADMIN_PASSWORD") or None,
            settings.identity.bcrypt_rounds,
        )
        objectstore = _objectstore(settings, Database(engine), identity, clock or Clock())
        objectstore.store.setup()
        swept = objectstore.sweep()
        if swept:
            log.info("removed %d leftover blob(s) of interrupted uploads", swept)
        if objectstore.changes is not None:
            objectstore.changes.close()
        image = _image(settings, Database(engine), identity, clock or Clock())
        image.store.setup()
        image.sweep()
        tiny = settings.image.tiny_image
        if tiny is not None:
            if tiny.is_file():
                image.register_public(
                    "tiny",
                    tiny,
                    disk_format="qcow2",
                    container_format="bare",
                    properties={"os_distro": "souverain-tiny", "hw_disk_bus": "virtio"},
                )
            else:
                log.warning("image.tiny_image %s does not exist; run `make tiny-image`", tiny)
        # what recovery finds (a guest that stopped while the API was down, a delete
        # finished after a crash) is billable too: the meter is on from here
        billing = _billing(settings, Database(engine), identity, clock or Clock())
        objectstore.meter = billing
        regauged = objectstore.reconcile_meter(billing.last_gauges("object.gb"))
        if regauged:
            log.info("re-gauged %d bucket(s) whose last meter reading was not their size", regauged)
        image.meter = billing
        volume = _volume(settings, Database(engine), identity, image, clock or Clock(), objectstore)
        volume.meter = billing
        volume.set_up()
        network = _network(settings, Database(engine), identity, clock or Clock())
        network.meter = billing
        network.set_up()
        network.reconcile_dataplane()
        network.close()
        compute = _compute(
            settings, Database(engine), identity, image, volume, network, clock or Clock()
        )
        compute.meter = billing
        compute.set_up()
        compute.close()
        volume.close()
        if identity.changes is not None:
            identity.changes.close()
    finally:
        engine.dispose()
    return write_clouds_yaml(
        paths.clouds_yaml,
        f"{settings.base_url}/identity",
        settings.server.region,
        result.admin_password,
    )


def open_platform(
    settings: Settings,
    clock: Clock | None = None,
    access_sink: Callable[[str], None] | None = None,
) -> Platform:
    """What one serving process holds: its own engine, services, audit log and app."""
    clock = clock or Clock()
    paths = _paths(settings)
    db = Database(make_engine(settings.database_url))
    identity = _identity(settings, db, clock)
    audit_log = AuditLog(paths.audit_log, load_or_create_key(paths.audit_key), settings.audit.fsync)
    objectstore = _objectstore(settings, db, identity, clock)
    image = _image(settings, db, identity, clock, objectstore)
    volume = _volume(settings, db, identity, image, clock, objectstore)
    network = _network(settings, db, identity, clock)
    compute = _compute(settings, db, identity, image, volume, network, clock)
    billing = _billing(settings, db, identity, clock)

    billing.budget_listeners.append(_budget_auditor(audit_log, clock))
    for service in (objectstore, image, volume, network, compute):
        service.meter = billing
    public_url = settings.server.public_url
    mounts = _mounts(settings, identity, compute, network, volume, billing, image)
    mounts += (_swift_mount(settings, objectstore, identity, clock),)
    app = build_app(
        identity,
        audit_log,
        clock,
        settings.server.max_body_bytes,
        public_url,
        access_sink,
        mounts,
    )
    s3_app = build_s3_app(objectstore, settings.objectstore, audit_log, clock, access_sink)
    return Platform(
        settings,
        paths,
        db,
        identity,
        audit_log,
        app,
        s3_app,
        objectstore,
        image,
        compute,
        volume,
        network,
        billing,
        paths.clouds_yaml.exists(),
        clock=clock,
    )


def _mounts(
    settings: Settings,
    identity: IdentityService,
    compute: ComputeService,
    network: NetworkService,
    volume: VolumeService,
    billing: BillingService,
    image: ImageService,
) -> tuple[Mounted, ...]:
    """The OpenStack APIs on the shared listener (identity is mounted by `build_app`)."""
    public_url = settings.server.public_url
    return (
        Mounted(
            "/compute",
            compute_api.build_app(compute, public_url),
            compute_api.render_error,
        ),
        Mounted(
            "/network",
            network_api.build_app(network, public_url),
            network_api.render_error,
        ),
        Mounted(
            "/volume",
            volume_api.build_app(volume, public_url),
            volume_api.render_error,
        ),
        Mounted(
            "/billing",
            billing_api.build_app(billing, identity, public_url),
            render_error,
        ),
        # the host agents' internal API: a host's own token, never a Keystone one
        Mounted(
            "/internal",
            compute_internal_api.build_app(compute.agents, compute.migrations),
            render_error,
        ),
        Mounted(
            "/image",
            image_api.build_app(image, public_url),
            image_api.render_error,
            image_api.body_limit_for(settings.image),
        ),
    )


def _swift_mount(
    settings: Settings, objectstore: ObjectStoreService, identity: IdentityService, clock: Clock
) -> Mounted:
    """Swift on the OpenStack listener, over the same buckets and bytes as S3."""
    return Mounted(
        "/object-storage",
        swift_api.build_app(objectstore, identity, settings.objectstore, clock),
        swift_api.render_error,
        swift_api.body_limit_for(settings.objectstore),
    )


def _budget_auditor(audit_log: AuditLog, clock: Clock) -> Callable[[dict[str, Any], Decimal], None]:
    """A budget listener that writes a crossed budget to the audit log."""

    def budget_crossed(account: dict[str, Any], estimate: Decimal) -> None:
        audit_log.append(
            {
                "time": clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "action": "billing.budget.crossed",
                "initiator": {"user_id": "souverain"},
                "target": {"type": "account", "id": account["id"]},
                "outcome": "success",
                "detail": {"budget": account["budget"], "estimate": str(estimate)},
            }
        )

    return budget_crossed


def prepare(settings: Settings, clock: Clock | None = None) -> Platform:
    """Set up the data dir and open a platform on it: a whole cloud in this process."""
    written = set_up_data(settings, clock)
    platform = open_platform(settings, clock)
    platform.admin_password_file_written = written
    return platform


def flush_logs() -> None:
    for handler in logging.getLogger("souverain.access").handlers:
        handler.flush()
