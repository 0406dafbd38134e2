"""What every part of compute shares: the database and the host, one lock per server,
the worker pool host work runs on, and the writes that end a task (with the meter
told when a server's billing changes).

No rule of any resource lives here; only what two or more of them need.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Update, select, update
from sqlalchemy.orm import Session

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import Conflict, Forbidden, NotFound
from souverain.common.metering import NULL_METER, Meter
from souverain.common.tenancy import may_act_on
from souverain.compute import scheduler
from souverain.compute.hosts import Hosts
from souverain.compute.models import InstanceAction, Server
from souverain.compute.qemu import QemuDriver
from souverain.compute.seams import GuestImages, GuestNetworking, GuestVolumes
from souverain.compute.states import BILLABLE_VM_STATES
from souverain.config import ComputeSettings
from souverain.db.engine import Database

log = logging.getLogger("souverain.compute")

GIB = 1024**3
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."
# internal calls between services (detaching volumes of a deleted server) act as the cloud
SYSTEM = RequestContext(user_id="souverain", user_domain_id="default", roles=frozenset({"admin"}))

# Columns whose change may change what the server is billed.
_BILLING_COLUMNS = frozenset({"vm_state", "flavor", "deleted"})

# (project_id, flavor name or "" when not billed, billed): the `instance` gauge's value.
BillingState = tuple[str, str, bool]


def now_naive(clock: Clock) -> dt.datetime:
    return clock.now().astimezone(dt.UTC).replace(tzinfo=None)


def require_admin(ctx: RequestContext, what: str) -> None:
    if not ctx.is_admin:
        raise Forbidden(f"Policy doesn't allow you to {what}: an admin role is required.")


def check_unlocked(ctx: RequestContext, row: Server) -> None:
    if row.locked and not ctx.is_admin:
        raise Conflict(f"Instance {row.id} is locked")


class ComputeCore:
    def __init__(
        self,
        db: Database,
        images: GuestImages,
        volumes: GuestVolumes,
        network: GuestNetworking,
        driver: QemuDriver,
        clock: Clock,
        settings: ComputeSettings,
    ) -> None:
        # billable changes are recorded on it (the billing service's, set by the server)
        self.meter: Meter = NULL_METER
        self.db = db
        self.images = images
        self.volumes = volumes
        self.network = network
        self.driver = driver
        self.clock = clock
        self.settings = settings
        self.host = socket.gethostname()
        # this machine as measured; what placement reads is each host's compute_hosts row
        self.capacity = scheduler.host_capacity(self.host, driver.root, settings)
        self.hosts = Hosts(db, clock, settings)
        self.scheduler = scheduler.Scheduler(settings, self.hosts.is_up)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="compute")
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def now(self) -> dt.datetime:
        return now_naive(self.clock)

    def close(self) -> None:
        """Let running actions finish; the guests themselves keep running."""
        self._pool.shutdown(wait=True)
        with contextlib.suppress(OSError):  # only when no guest of this data dir is left
            self.driver.run_dir.rmdir()

    @contextmanager
    def server_lock(self, server_id: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(server_id, threading.Lock())
        with lock:
            yield

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("compute task %s failed", getattr(fn, "__name__", fn))

        self._pool.submit(run)

    # ------------------------------------------------------------------ rows

    @staticmethod
    def server_row(s: Session, ctx: RequestContext, server_id: str) -> Server:
        row = s.get(Server, server_id) if len(server_id) <= 36 else None
        if row is None or row.deleted or not may_act_on(ctx, row.project_id):
            raise NotFound(f"Instance {server_id} could not be found.")
        return row

    def check_visible(self, ctx: RequestContext, server_id: str) -> None:
        """404 unless the caller may see the server; no view built (its volumes unread)."""
        with self.db.session() as s:
            self.server_row(s, ctx, server_id)

    def is_deleting(self, server_id: str) -> bool:
        with self.db.session() as s:
            row = s.get(Server, server_id)
            return row is None or row.deleted or row.task_state == "deleting"

    def fault(self, message: str, code: int = 500) -> dict[str, Any]:
        return {"code": code, "message": message, "created": self.now().isoformat() + "Z"}

    # ------------------------------------------------------------------ instance actions

    def record_action(
        self, s: Session, ctx: RequestContext, server_id: str, project_id: str, action: str
    ) -> int:
        record = InstanceAction(
            server_id=server_id,
            project_id=project_id,
            user_id=ctx.user_id,
            request_id=ctx.request_id or f"req-{uuid.uuid4()}",
            action=action,
            start_time=self.now(),
        )
        s.add(record)
        s.flush()
        return record.id

    def finish_action(self, action_id: int, error: str | None = None) -> None:
        with self.db.session() as s:
            s.execute(
                update(InstanceAction)
                .where(InstanceAction.id == action_id)
                .values(
                    finish_time=self.now(),
                    result="Error" if error else "Success",
                    message=error,
                )
            )

    # ------------------------------------------------------------------ state writes

    def set(self, server_id: str, **values: Any) -> None:
        values.setdefault("updated_at", self.now())
        metered = not _BILLING_COLUMNS.isdisjoint(values)
        with self.db.session() as s:
            before = self.billing_state(s, server_id) if metered else None
            s.execute(update(Server).where(Server.id == server_id).values(**values))
            after = self.billing_state(s, server_id) if metered else None
        self.meter_instance(server_id, before, after)

    def update_metered(self, server_id: str, statement: Update) -> None:
        """Run an UPDATE of the server row, then tell the meter if its billing changed."""
        with self.db.session() as s:
            before = self.billing_state(s, server_id)
            s.execute(statement)
            after = self.billing_state(s, server_id)
        self.meter_instance(server_id, before, after)

    @staticmethod
    def billing_state(s: Session, server_id: str) -> BillingState | None:
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

    def meter_instance(
        self, server_id: str, before: BillingState | None, after: BillingState | None
    ) -> None:
        """After the commit: the `instance` gauge, when billing or the flavor changed."""
        if after is None or after == before:
            return
        project_id, flavor, billed = after
        self.meter.gauge(project_id, "instance", server_id, 1 if billed else 0, flavor=flavor)
