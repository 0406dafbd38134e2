"""One process's connection to a Ceph cluster, shared by every storing service's Ceph
backend (RBD volumes, images and root disks; object bytes in RADOS).

Ceph's own Python bindings (`rados`, `rbd`: Debian's python3-rados and python3-rbd, which
`make install` makes importable from the virtual environment) are imported on first use
only, so a cloud on local files never loads them. A librados handle does not survive a
fork: `serve` forks its workers after the composition root is built, so the handle is
made on first use in each process (and again in a child that inherited one).

Operations that cannot complete because the cluster is away or a pool is below its
`min_size` end after `ceph.op_timeout` seconds as `StorageUnavailable`: every API answers
it 503 with Retry-After, as for a database outage, never 500.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from souverain.common.errors import ServiceUnavailable

RETRY_AFTER_SECONDS = 5
# errnos librados and librbd use for "not now": the cluster is unreachable or an operation
# waited its whole timeout (a placement group below min_size accepts no write)
_AWAY = {errno.ETIMEDOUT, errno.ESHUTDOWN, errno.ENOTCONN, errno.ECONNREFUSED, errno.EINTR}


class StorageUnavailable(ServiceUnavailable):
    """The storage cluster cannot serve this operation now; the client may retry."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "The storage cluster cannot complete this operation right now; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def bindings(name: str) -> ModuleType:
    """Ceph's `rados` or `rbd` module, or an error that says how to get it."""
    if name not in ("rados", "rbd"):
        raise ValueError(f"not a Ceph binding: {name}")
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RuntimeError(
            f"Ceph's Python binding `{name}` is not importable: install Debian's "
            f"python3-{name} (./scripts/install-system-packages) and run `make install`, "
            "which makes it visible to the virtual environment"
        ) from exc


def is_unavailable(exc: BaseException) -> bool:
    """True when a rados or rbd error means "the cluster cannot do it now", not a bug or
    a missing object."""
    module = type(exc).__module__
    if module not in ("rados", "rbd"):
        return False
    name = type(exc).__name__
    if name in ("TimedOut", "Timeout", "ConnectionShutdown", "NotConnected"):
        return True
    return getattr(exc, "errno", None) in _AWAY


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turns a rados or rbd "not now" error into `StorageUnavailable`; others pass."""
    try:
        yield
    except StorageUnavailable:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise StorageUnavailable() from exc
        raise


@dataclass(frozen=True)
class RbdRef:
    """An RBD image (or one of its snapshots) that another service may open or clone: an
    image's protected snapshot for servers and volumes made from it, a volume for QEMU."""

    pool: str
    image: str
    snapshot: str | None = None


@dataclass(frozen=True)
class CephAccess:
    """Where the cluster is and who we are to it (the `[ceph]` settings)."""

    conf: Path
    user: str = "admin"
    keyring: Path | None = None
    connect_timeout: float = 10.0
    op_timeout: float = 30.0

    def options(self) -> dict[str, str]:
        """librados options set on the handle beside the conf file's."""
        opts = {
            "rados_osd_op_timeout": str(int(self.op_timeout)),
            "rados_mon_op_timeout": str(int(self.op_timeout)),
            "client_mount_timeout": str(int(self.connect_timeout)),
        }
        if self.keyring is not None:
            opts["keyring"] = str(self.keyring)
        return opts


class CephConnection:
    """A lazily connected librados handle, one per process, thread-safe."""

    def __init__(self, access: CephAccess) -> None:
        self.access = access
        self._lock = threading.Lock()
        self._handle: Any = None
        self._pid = 0

    def rados(self) -> Any:
        """The connected `rados.Rados` of this process."""
        with self._lock:
            if self._handle is None or self._pid != os.getpid():
                self._handle = self._connect()
                self._pid = os.getpid()
            return self._handle

    def _connect(self) -> Any:
        rados = bindings("rados")
        if not self.access.conf.is_file():
            raise RuntimeError(
                f"ceph.conf_file {self.access.conf} does not exist: point it at the "
                "cluster's ceph.conf"
            )
        handle = rados.Rados(
            conffile=str(self.access.conf), rados_id=self.access.user, conf=self.access.options()
        )
        try:
            handle.connect(timeout=max(1, int(self.access.connect_timeout)))
        except rados.Error as exc:
            handle.shutdown()
            raise StorageUnavailable(
                f"The storage cluster is unreachable ({type(exc).__name__}); retry shortly."
            ) from exc
        return handle

    @contextlib.contextmanager
    def ioctx(self, pool: str) -> Iterator[Any]:
        """An I/O context on `pool`, closed afterwards; "not now" errors inside become
        `StorageUnavailable`."""
        with translated():
            ctx = self.rados().open_ioctx(pool)
            try:
                yield ctx
            finally:
                ctx.close()

    def qemu_blockdev(self, pool: str, image: str, node_name: str) -> dict[str, Any]:
        """QEMU's own rbd block driver for `pool/image` (a blockdev-add argument): guest
        I/O goes from QEMU to the OSDs, never through Souverain. QEMU reads the keyring
        ceph.conf names (`ceph.keyring` is librados' in this process only)."""
        node: dict[str, Any] = {
            "driver": "rbd",
            "node-name": node_name,
            "pool": pool,
            "image": image,
            "conf": str(self.access.conf),
            "user": self.access.user,
        }
        return node

    def close(self) -> None:
        with self._lock:
            if self._handle is not None and self._pid == os.getpid():
                self._handle.shutdown()
            self._handle = None


_shared: dict[CephAccess, CephConnection] = {}
_shared_lock = threading.Lock()


def connection_from(settings: Any) -> CephConnection | None:
    """The process's one connection to the `settings.ceph` cluster (every service's Ceph
    backend shares it: one librados handle per process, not per service), or None when no
    conf file is set. Closing it lets go of the handle; the next use connects again."""
    ceph = settings.ceph
    if ceph.conf_file is None:
        return None
    access = CephAccess(
        conf=Path(ceph.conf_file),
        user=ceph.user,
        keyring=ceph.keyring,
        connect_timeout=ceph.connect_timeout,
        op_timeout=ceph.op_timeout,
    )
    with _shared_lock:
        if access not in _shared:
            _shared[access] = CephConnection(access)
        return _shared[access]


def required_connection(settings: Any, setting: str) -> CephConnection:
    """`connection_from`, for a setting (`volume.backend = "rbd"`, ...) that cannot work
    without the cluster: refused with what to set otherwise."""
    connection = connection_from(settings)
    if connection is None:
        raise RuntimeError(
            f"{setting} needs the Ceph cluster: set ceph.conf_file "
            "(SOUVERAIN_CEPH__CONF_FILE) to its ceph.conf"
        )
    return connection
