"""The composition root: the data dir, the schema, keys and bootstrap, and every service
built and wired to the others (the only place that closes a cycle between them).

`open_platform` is what one serving process holds; `prepare` sets up the data dir
and opens one, for tests and the CLI. Listening, workers and their supervision
are `serving`'s business.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

from souverain import roles, tls
from souverain.app import SERVICES, build_app, build_s3_app, error_renderer
from souverain.billing.audit_trail import INDEXED_TARGETS
from souverain.billing.catalog import Catalog
from souverain.billing.service import BillingService
from souverain.common.audit import AuditLog, load_or_create_key
from souverain.common.audit_index import AuditIndex
from souverain.common.ceph import required_connection
from souverain.common.changes import ChangeCounter
from souverain.common.clock import Clock
from souverain.common.keys import ProjectKeys
from souverain.common.middleware import ErrorRenderer
from souverain.compute.qemu import QemuDriver
from souverain.compute.rbd_disks import RbdRootDisks
from souverain.compute.service import ComputeService
from souverain.config import Settings
from souverain.db import migrate
from souverain.db.engine import Database, is_outage, make_engine
from souverain.db.leases import LEASE_TTL, LeaseKeeper
from souverain.identity.bootstrap import bootstrap, write_aws_config, write_clouds_yaml
from souverain.identity.service import CatalogEntry, IdentityPolicySettings, IdentityService
from souverain.identity.tokens import KeyRepository, TokenFormatter
from souverain.image.rbd_store import RbdImageStore
from souverain.image.service import ImageService
from souverain.image.store import ImageStore
from souverain.keymanager.roots import open_root
from souverain.keymanager.service import KeyManagerService
from souverain.mounts import api_mounts, keymanager_mount, swift_mount
from souverain.network.host import dataplane_prefix as _dataplane_prefix  # noqa: F401 - tests
from souverain.network.host import host_network
from souverain.network.host_plan import HostPlans, tunnel_endpoints
from souverain.network.node import NetworkNode
from souverain.network.service import NetworkService
from souverain.objectstore.api.swift.imagesource import SwiftObjectSource
from souverain.objectstore.backup_objects import BackupObjectStore
from souverain.objectstore.rados_store import RadosBlobStore
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.store import BlobStore, FileBlobStore
from souverain.objectstore.swift.expirer import Expirer
from souverain.openstack.faults import render_error
from souverain.volume.backend import VolumeBackend, VolumeStore
from souverain.volume.rbd_backend import RbdVolumeBackend
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
# the network node's overlay loop: one worker of the node's serve at a time (one node today)
NETWORK_NODE_LEASE = "network-node"
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
    # errors raised outside every service (the transport's 429s), in the path's own format
    render: ErrorRenderer = render_error
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    clock: Clock = field(default_factory=Clock)
    leases: LeaseKeeper | None = None
    network_node: NetworkNode | None = None
    keymanager: KeyManagerService | None = None
    # the key manager's data keys for the services that encrypt at rest (object, volume)
    project_keys: ProjectKeys | None = None

    def start_background(self, sync_interval: float = 1.0, lease_ttl: float = LEASE_TTL) -> None:
        """Background work of a running server: follow identity changes made elsewhere,
        and keep the servers' recorded power state true to their QEMU processes; with the
        `background` role, the cloud-wide work (LEASED_WORK) while this process holds its
        lease; with `network`, the egress of this node's routers."""
        background = roles.runs(self.settings, roles.BACKGROUND)
        if background:  # a node without the role never takes a lease
            self.leases = LeaseKeeper(self.db, self.clock, lease_ttl)
            for name in LEASED_WORK:
                self.leases.want(name)
            self._spawn("leases", self.leases.keep, self._stop)
        self._spawn("identity-sync", self._sync_loop, sync_interval)
        self._spawn("compute-sync", self._compute_loop, self.settings.compute.sync_interval)
        if background:
            budget_interval = self.settings.billing.budget_check_interval
            self._spawn("billing-budgets", self._budget_loop, budget_interval)
        if roles.runs(self.settings, roles.NETWORK):
            egress_interval = self.settings.network.egress_sample_interval
            self._spawn("network-egress", self._egress_loop, egress_interval)
            if self.network_node is not None:
                self._start_network_node(lease_ttl)
        meter_interval = self.settings.objectstore.meter_interval
        self._spawn("objectstore-meter", self._storage_meter_loop, meter_interval)
        if background:
            expirer_interval = min(meter_interval, EXPIRER_INTERVAL)
            self._spawn("objectstore-expirer", self._expirer_loop, expirer_interval)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        worker = threading.Thread(target=target, args=args, name=name, daemon=True)
        worker.start()
        self._workers.append(worker)

    def held_leases(self) -> list[str]:
        """The cloud-wide work this process runs right now."""
        return [name for name in LEASED_WORK if self.holds(name)]

    def _start_network_node(self, lease_ttl: float) -> None:
        """The network node's loop, in one worker of the node's at a time (its own lease,
        taken even without the `background` role: it is this node's work, not the cloud's)."""
        if self.leases is None:
            self.leases = LeaseKeeper(self.db, self.clock, lease_ttl)
            self._spawn("leases", self.leases.keep, self._stop)
        self.leases.want(NETWORK_NODE_LEASE)
        self._spawn("network-node", self._network_node_loop, self.settings.network.node_interval)

    def _network_node_loop(self, interval: float) -> None:
        """The overlay, DHCP and agents' plans follow the rows (one worker of the node's)."""
        assert self.network_node is not None
        while not self._stop.wait(interval):
            if not self.holds(NETWORK_NODE_LEASE):
                continue
            try:
                self.network_node.tick()
            except Exception as exc:  # the next round reads everything again
                self.network_node.forget()
                _round_failed("the network node following the rows", exc)

    def _expirer_loop(self, interval: float) -> None:
        """Objects past their X-Delete-At go for S3 too (Swift's reads hide them at once)."""
        expirer = Expirer(self.objectstore)
        while not self._stop.wait(interval):
            if not self.holds(EXPIRER_LEASE):
                continue
            try:
                expirer.expire_due()
            except Exception as exc:  # the next round takes them again
                _round_failed("deleting expired objects", exc)

    def _storage_meter_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self.holds(SWEEPS_LEASE):
                self._sweep_objects()
            try:  # what this process noted: every process flushes its own
                self.objectstore.flush_meter()
            except Exception as exc:  # what was noted is kept for the next round
                _round_failed("object storage meter flush", exc)

    def _sweep_objects(self) -> None:
        """Cloud-wide, before this round's flush: the buckets it shrank are gauged in it."""
        try:
            aborted = self.objectstore.abort_expired_uploads()
            if aborted:
                log.info("aborted %d multipart upload(s) left unfinished too long", aborted)
        except Exception as exc:  # the next round takes them again
            _round_failed("aborting expired multipart uploads", exc)
        try:  # bucket lifecycle rules (each bucket also under a lease of its own)
            self.objectstore.run_lifecycle()
        except Exception as exc:  # the next round takes them again
            _round_failed("bucket lifecycle sweep", exc)

    def _egress_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.network.sample_egress()
            except Exception as exc:  # keep metering; the next round may succeed
                _round_failed("egress sampling", exc)

    def _budget_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if not self.holds(BUDGETS_LEASE):
                continue
            try:
                self.billing.check_budgets()
            except Exception as exc:  # keep watching; the next round may succeed
                _round_failed("budget check", exc)

    def _compute_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.compute.sync_power_states()
                if self.holds(ORPHANED_BUILDS_LEASE):
                    self.compute.end_orphaned_builds()
            except Exception as exc:  # keep syncing; the next round may succeed
                _round_failed("compute power state sync", exc)

    def _sync_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            flush_logs()
            try:
                self.identity.sync_from_store()
            except Exception as exc:  # keep following; the next round may succeed
                _round_failed("identity sync", exc)

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
        self.objectstore.store.close()
        if self.keymanager is not None:
            self.keymanager.close()
        self.db.dispose()


def _round_failed(what: str, exc: Exception) -> None:
    """A background round failed; the next one tries again. While the database is
    unreachable (a restart, a failover) that is one line a round, not a traceback."""
    if is_outage(exc):
        log.warning("%s: the database is unreachable (%s); retrying", what, type(exc).__name__)
    else:
        log.exception("%s failed; retrying", what)


def _credential_key(path: Path) -> bytes:
    """A Fernet key for credential blobs at rest, created once, mode 0600."""
    raw = load_or_create_key(path)
    return base64.urlsafe_b64encode(raw[:32])


def _paths(settings: Settings) -> DataPaths:
    return DataPaths(settings.data_dir.resolve())


def audit_key_path(settings: Settings) -> Path:
    """The audit HMAC key: `audit.key_file` (outside the data dir, so that a copy of the
    data dir can neither forge nor verify the chain), else `<data_dir>/keys/audit.key`."""
    key_file = settings.audit.key_file
    return key_file.resolve() if key_file is not None else _paths(settings).audit_key


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
            mfa_required_for_privileged=ident.mfa_required_for_privileged,
            mfa_receipt_expiration=ident.mfa_receipt_expiration,
        ),
        clock,
        ChangeCounter(paths.changes),
    )


def _keymanager(settings: Settings, db: Database, clock: Clock) -> KeyManagerService:
    """The key manager over the root of trust `keymanager.root` names."""
    return KeyManagerService(db, open_root(settings.keymanager, _paths(settings).root), clock)


def _blob_store(settings: Settings) -> BlobStore:
    """Where object bytes live: files under the data dir, or a RADOS pool."""
    objects = settings.objectstore
    if objects.backend == "file":
        return FileBlobStore(_paths(settings).objects)
    connection = required_connection(settings, 'objectstore.backend = "rados"')
    return RadosBlobStore(
        connection,
        objects.rados_pool,
        stripe_bytes=objects.rados_stripe_bytes,
        ec_profile=objects.rados_ec_profile,
        sweep_grace=objects.rados_sweep_grace,
    )


def _objectstore(
    settings: Settings,
    db: Database,
    identity: IdentityService,
    clock: Clock,
    project_keys: ProjectKeys | None = None,
) -> ObjectStoreService:
    return ObjectStoreService(
        db,
        _blob_store(settings),
        identity,
        settings.server.region,
        clock,
        settings.objectstore.min_part_bytes,
        ChangeCounter(_paths(settings).root / "objectstore.changes"),
        quota_bytes=settings.objectstore.quota_bytes,
        quota_objects=settings.objectstore.quota_objects,
        abort_incomplete_after=settings.objectstore.abort_incomplete_after,
        project_keys=project_keys,
        encryption_mandatory=settings.encryption.mandatory,
    )


def _image(
    settings: Settings,
    db: Database,
    identity: IdentityService,
    clock: Clock,
    objectstore: ObjectStoreService | None = None,
    project_keys: ProjectKeys | None = None,
) -> ImageService:
    """The image service; given the object store, web-download imports this cloud's objects,
    read with the caller's own Swift rights."""
    objects = (
        SwiftObjectSource(objectstore, settings.objectstore, clock)
        if objectstore is not None
        else None
    )
    store = _image_store(settings)
    return ImageService(db, store, identity, clock, settings.image, objects, project_keys)


def _image_store(settings: Settings) -> ImageStore:
    """Local files, or (image.backend = "rbd") the Ceph pool `image.rbd_pool`."""
    root = _paths(settings).images
    if settings.image.backend == "file":
        return ImageStore(root)
    ceph = required_connection(settings, 'image.backend = "rbd"')
    return RbdImageStore(root, ceph, settings.image.rbd_pool)


def _volume_backend(settings: Settings) -> VolumeStore:
    """`volume.backend`: qcow2 files under data_dir, or RBD images in `volume.rbd_pool`
    (scratch files for conversions stay under data_dir)."""
    root = _paths(settings).volumes
    if settings.volume.backend == "file":
        return VolumeBackend(root)
    connection = required_connection(settings, 'volume.backend = "rbd"')
    return RbdVolumeBackend(connection, settings.volume.rbd_pool, root)


def _volume(
    settings: Settings,
    db: Database,
    identity: IdentityService,
    image: ImageService,
    clock: Clock,
    objectstore: ObjectStoreService | None = None,
    project_keys: ProjectKeys | None = None,
) -> VolumeService:
    backend = _volume_backend(settings)
    backups = BackupObjectStore(objectstore) if objectstore is not None else None
    return VolumeService(
        db,
        backend,
        identity,
        image,
        clock,
        settings.volume,
        backups,
        project_keys=project_keys,  # encrypted volumes' keys, in the key manager
        encryption_mandatory=settings.encryption.mandatory,
    )


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
    if settings.compute.disk_backend == "rbd":
        ceph = required_connection(settings, 'compute.disk_backend = "rbd"')
        driver.rbd_disks = RbdRootDisks(ceph, settings.compute.rbd_pool)
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


def _shared_keys(settings: Settings) -> None:
    """Keys every worker must share, made before any starts: the audit key, and the key
    manager's master key file (with the file root)."""
    paths = _paths(settings)
    load_or_create_key(audit_key_path(settings))
    open_root(settings.keymanager, paths.root).close()


def set_up_data(settings: Settings, clock: Clock | None = None) -> bool:
    """Once per start, before any worker: data dir, schema, keys, bootstrap, clouds.yaml.

    Returns whether clouds.yaml holds the admin password.
    """
    paths = _paths(settings)
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(paths.root, 0o700)
    paths.keys.mkdir(exist_ok=True, mode=0o700)
    os.chmod(paths.keys, 0o700)
    _shared_keys(settings)
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
        objectstore.store.close()
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
    return _client_files(settings, paths, result.admin_password)


def _client_files(settings: Settings, paths: DataPaths, password: str | None) -> bool:
    """The TLS certificate (self-signed, before any worker loads it), then the files clients
    read: clouds.yaml and the AWS config, naming the CA to trust with TLS."""
    tls_files = tls.ensure_self_signed(settings)
    cacert = tls_files.ca if tls_files else None
    write_aws_config(paths.root / "aws-config", settings.s3_url, settings.server.region, cacert)
    return write_clouds_yaml(
        paths.clouds_yaml,
        f"{settings.base_url}/identity",
        settings.server.region,
        password,
        cacert,
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
    audit_key = load_or_create_key(audit_key_path(settings))
    audit_index = AuditIndex(paths.audit_log, INDEXED_TARGETS)  # account owners read by it
    audit_log = AuditLog(paths.audit_log, audit_key, settings.audit.fsync, index=audit_index)
    keymanager = _keymanager(settings, db, clock)
    project_keys: ProjectKeys = keymanager.project_keys  # for objectstore and volume
    objectstore = _objectstore(settings, db, identity, clock, project_keys)
    image = _image(settings, db, identity, clock, objectstore, project_keys)
    volume = _volume(settings, db, identity, image, clock, objectstore, project_keys)
    network = _network(settings, db, identity, clock)
    compute = _compute(settings, db, identity, image, volume, network, clock)
    billing = _billing(settings, db, identity, clock)
    node = _overlay(settings, db, network, compute)

    billing.budget_listeners.append(_budget_auditor(audit_log, clock))
    # account owners are privileged users too (identity.mfa_required_for_privileged)
    identity.authentication.mfa.privileged_checks.append(billing.accounts.is_owner)
    billing.audit_trail.index = audit_index
    for service in (objectstore, image, volume, network, compute):
        service.meter = billing
    public_url = settings.server.public_url
    mounts = api_mounts(settings, identity, compute, network, volume, billing, image)
    mounts += (swift_mount(settings, objectstore, identity, clock),)
    mounts += (keymanager_mount(settings, keymanager, identity),)
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
        render=error_renderer(mounts),
        clock=clock,
        network_node=node,
        keymanager=keymanager,
        project_keys=project_keys,
    )


def _overlay(
    settings: Settings, db: Database, network: NetworkService, compute: ComputeService
) -> NetworkNode | None:
    """With the VXLAN overlay: agents get their data plane's plan with their assignment,
    and a serve with a data plane is the cloud's network node. Network reads host
    addresses, and wakes hosts, through compute, here and only here."""
    if settings.network.overlay != "vxlan":
        return None
    agents = compute.agents
    name = network.wiring.node_host() or ""
    address = settings.network.node_address

    def addresses() -> dict[str, str]:
        known = agents.addresses()
        if address:
            known[name] = address
        return tunnel_endpoints(known)

    agents.network_plan = HostPlans(db, addresses).plan
    if network.host is None:
        return None
    if not address:
        log.warning(
            "network.overlay = 'vxlan' without network.node_address: this node carries no "
            "VXLAN segment, so guests on agent hosts reach neither its DHCP nor its routers"
        )
    return NetworkNode(
        db,
        network.wiring,
        network.host,
        name,
        address or None,
        addresses,
        lambda: agents.revisions().keys(),
        agents.wake,
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
