"""Start-up and shut-down of `souverain serve`: data dir, schema, keys, bootstrap, listen.

The listening socket is bound before bootstrap, so `--port 0` works and the
catalog always names the port clients can reach. Shutdown on SIGTERM/SIGINT is
uvicorn's graceful one: stop accepting, let in-flight requests finish, then
close the audit log and the database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.types import ASGIApp

from souverain.app import SERVICES, build_app
from souverain.common.audit import AuditLog, load_or_create_key
from souverain.common.clock import Clock
from souverain.config import Settings
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from souverain.identity.bootstrap import bootstrap, write_clouds_yaml
from souverain.identity.service import IdentityPolicySettings, IdentityService
from souverain.identity.tokens import KeyRepository, TokenFormatter

log = logging.getLogger("souverain")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    def clouds_yaml(self) -> Path:
        return self.root / "clouds.yaml"


@dataclass
class Platform:
    settings: Settings
    paths: DataPaths
    db: Database
    identity: IdentityService
    audit_log: AuditLog
    app: ASGIApp
    admin_password_file_written: bool
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start_background(self, sync_interval: float = 1.0) -> None:
        """Background work of a running server: follow identity changes made elsewhere."""
        worker = threading.Thread(
            target=self._sync_loop, args=(sync_interval,), name="identity-sync", daemon=True
        )
        worker.start()
        self._workers.append(worker)

    def _sync_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.identity.sync_from_store()
            except Exception:  # keep following; the next round may succeed
                log.exception("identity sync failed; retrying")

    def close(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join()
        self.audit_log.close()
        self.db.dispose()


def _credential_key(path: Path) -> bytes:
    """A Fernet key for credential blobs at rest, created once, mode 0600."""
    import base64

    raw = load_or_create_key(path)
    return base64.urlsafe_b64encode(raw[:32])


def prepare(settings: Settings, clock: Clock | None = None) -> Platform:
    clock = clock or Clock()
    paths = DataPaths(settings.data_dir.resolve())
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(paths.root, 0o700)
    paths.keys.mkdir(exist_ok=True, mode=0o700)
    os.chmod(paths.keys, 0o700)
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    db = Database(engine)
    keys = KeyRepository(paths.fernet_keys, settings.identity.max_active_keys)
    keys.setup()
    ident = settings.identity
    identity = IdentityService(
        db,
        TokenFormatter(keys),
        _credential_key(paths.credential_key),
        IdentityPolicySettings(
            token_expiration=ident.token_expiration,
            bcrypt_rounds=ident.bcrypt_rounds,
            password_min_length=ident.password_min_length,
            lockout_failure_attempts=ident.lockout_failure_attempts,
            lockout_duration=ident.lockout_duration,
        ),
        clock,
    )
    result = bootstrap(
        identity,
        settings.server.region,
        settings.base_url,
        SERVICES,
        os.environ.get("SOUVERAIN_ADMIN_PASSWORD") or None,
        ident.bcrypt_rounds,
    )
    written = write_clouds_yaml(
        paths.clouds_yaml,
        f"{settings.base_url}/identity",
        settings.server.region,
        result.admin_password,
    )
    audit_log = AuditLog(paths.audit_log, load_or_create_key(paths.audit_key), settings.audit.fsync)
    app = build_app(
        identity, audit_log, clock, settings.server.max_body_bytes, settings.server.public_url
    )
    return Platform(settings, paths, db, identity, audit_log, app, written)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("souverain", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True


def serve(settings: Settings) -> None:
    import uvicorn

    class _GracefulServer(uvicorn.Server):
        """Stops on SIGTERM/SIGINT and exits 0: a requested stop is not a failure."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    configure_logging()
    sock = bind(settings.server.host, settings.server.port)
    settings.server.port = sock.getsockname()[1]
    platform = prepare(settings)
    base = settings.base_url
    print(
        f"Souverain is running in region {settings.server.region} (data in {platform.paths.root})"
    )
    for service in SERVICES:
        print(f"  {service.type:<10} {base}{service.path}")
    if platform.admin_password_file_written:
        print(f"Admin credentials: {platform.paths.clouds_yaml} (cloud 'souverain')")
        print(
            f"  try: OS_CLIENT_CONFIG_FILE={platform.paths.clouds_yaml} "
            "openstack --os-cloud souverain token issue"
        )
    else:
        print("Admin password unknown to this data dir; set SOUVERAIN_ADMIN_PASSWORD to reset it.")
    sys.stdout.flush()
    config = uvicorn.Config(
        platform.app,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.server.graceful_timeout),
        lifespan="off",
        server_header=False,
    )
    server = _GracefulServer(config)
    platform.start_background()
    try:
        server.run(sockets=[sock])
    finally:
        platform.close()
        print("Souverain stopped cleanly.")
