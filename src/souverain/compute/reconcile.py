"""The host's side of the truth: at start-up, finish or end what a crash cut short;
afterwards, record what each guest is really doing (Nova's power-state sync) and that
this host is alive.

The database holds what was asked; `QemuDriver` tells what is. Here the second
corrects the first, never the other way round.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from sqlalchemy import or_, select, update

from souverain.compute import scheduler
from souverain.compute.core import ComputeCore
from souverain.compute.guests import Guests, disk_id
from souverain.compute.models import InstanceAction, Server
from souverain.compute.qemu import PowerState

log = logging.getLogger("souverain.compute")

CUT_SHORT_BUILD = (
    "The control plane restarted while this server was being built; delete it and create it again."
)


def _synced_state(vm_state: str, power: PowerState) -> str | None:
    """The vm_state a server with no task moves to when its guest is seen `power`."""
    if vm_state in ("active", "paused") and power in (PowerState.SHUTDOWN, PowerState.CRASHED):
        return "stopped"
    if vm_state == "paused" and power == PowerState.RUNNING:
        return "active"
    if vm_state == "active" and power == PowerState.PAUSED:
        return "paused"
    if vm_state == "stopped" and power == PowerState.RUNNING:
        return "active"
    if vm_state == "suspended" and power == PowerState.SHUTDOWN:
        return "stopped"
    return None


class HostSync:
    def __init__(self, core: ComputeCore, guests: Guests) -> None:
        self.core = core
        self.db = core.db
        self.driver = core.driver
        self.volumes = core.volumes
        self.guests = guests
        # QEMUs of this data dir that no live server owns: left running for the operator
        self.orphans: dict[str, int] = {}

    def reconcile(self) -> None:
        """Make the database true to the host after a start: finish or end cut-short work.
        A young build no host has yet is left alone (another API node may be placing it)."""
        running = self.driver.running()
        with self.db.session() as s:
            rows = s.scalars(
                select(Server).where(
                    Server.deleted.is_(False),
                    or_(Server.host == self.core.host, Server.host.is_(None)),
                )
            ).all()
            known = {r.id: (r.vm_state, r.task_state, r.host) for r in rows}
            in_flight = {r.id for r in rows if self._another_nodes_build(r)}
            all_ids = set(s.scalars(select(Server.id)).all())
        for server_id, (vm_state, task_state, host) in known.items():
            if task_state == "deleting":
                self.guests.destroy_everything(server_id)
            elif server_id in in_flight:
                continue  # a live API node may be placing it; if none, the sweep ends it
            elif vm_state == "building":
                self._settle_build(server_id, server_id in running)
            elif host is not None:
                if task_state:
                    self.core.set(server_id, task_state=None)
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

    def _another_nodes_build(self, row: Server) -> bool:
        """A build not yet placed on a host and younger than `compute.orphaned_build_after`:
        with several API nodes it may be another live node's, in flight; only an older one
        is surely cut short (what `end_orphaned_builds` ends, under its lease)."""
        if (row.vm_state, row.task_state, row.host) != ("building", "scheduling", None):
            return False
        cutoff = self.core.now() - dt.timedelta(seconds=self.core.settings.orphaned_build_after)
        return row.updated_at >= cutoff

    def _settle_build(self, server_id: str, running: bool) -> None:
        """A build cut short: its guest runs (it is active) or it never will (an error)."""
        if running:
            self.core.set(
                server_id,
                vm_state="active",
                task_state=None,
                power_state=int(PowerState.RUNNING),
                launched_at=self.core.now(),
            )
            return
        self.driver.delete_files(server_id)
        with self.db.session() as s:
            scheduler.release(s, server_id)
        self.core.set(
            server_id, vm_state="error", task_state=None, fault=self.core.fault(CUT_SHORT_BUILD)
        )

    def _settle_volumes(self, server_id: str, running: bool) -> None:
        """An attach or detach cut short by a restart ends as the guest really has it."""
        for a in self.volumes.attachments_of(server_id):
            status, volume_id = a.get("status"), a["volume_id"]
            if status not in ("attaching", "detaching"):
                continue
            present = running and self.driver.has_disk(server_id, disk_id(volume_id))
            if status == "attaching":
                if present:
                    device = self.guests.next_device(server_id)
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
            vm_state = _synced_state(row.vm_state, state)
            if vm_state is not None:
                values["vm_state"] = vm_state
            if not values:
                return
            values["updated_at"] = self.core.now()
            before = self.core.billing_state(s, server_id)
            s.execute(
                update(Server)
                .where(Server.id == server_id, Server.task_state.is_(None))
                .values(**values)
            )
            after = self.core.billing_state(s, server_id)
        self.core.meter_instance(server_id, before, after)

    def sync_power_states(self) -> None:
        """What Nova's periodic task does: record what each guest really is doing (and
        that this host is alive)."""
        self.core.hosts.touch(self.core.host)
        running = self.driver.running()  # one pass over /proc, not a probe per server
        with self.db.session() as s:
            rows = s.execute(
                select(Server.id, Server.vm_state, Server.power_state).where(
                    Server.host == self.core.host,
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
            with self.core.server_lock(server_id):
                self._sync_one(server_id)
            if server_id in running:
                self.driver.trim_console(server_id)


def end_orphaned_builds(core: ComputeCore, older_than: float) -> list[str]:
    """Builds no node carries any more (the API node that took them died before handing
    them to a host, placed or not): still `scheduling` after `older_than` seconds. Each
    ends in ERROR with a fault that says what to do and lets go of its claim, by a
    compare-and-set on its row, so a build a live node takes at the same moment is never
    ended under it. Cloud-wide work: one node runs it, under
    its lease. The ids ended."""
    cutoff = core.now() - dt.timedelta(seconds=older_than)
    with core.db.session() as s:
        stale = s.scalars(
            select(Server.id).where(
                Server.deleted.is_(False),
                Server.vm_state == "building",
                Server.task_state == "scheduling",
                Server.updated_at < cutoff,
            )
        ).all()
    ended = []
    for server_id in stale:
        with core.db.session() as s:
            done = s.execute(
                update(Server)
                .where(
                    Server.id == server_id,
                    Server.task_state == "scheduling",
                    Server.updated_at < cutoff,
                )
                .values(
                    vm_state="error",
                    task_state=None,
                    host=None,  # what it claimed is let go of
                    fault=core.fault(CUT_SHORT_BUILD),
                    updated_at=core.now(),
                )
                .execution_options(synchronize_session=False)
            )
            if done.rowcount:  # type: ignore[attr-defined]
                ended.append(server_id)
    for server_id in ended:
        log.warning("server %s: its build was cut short by a node's end; it is in error", server_id)
        with core.db.session() as s:
            open_ids = s.scalars(
                select(InstanceAction.id).where(
                    InstanceAction.server_id == server_id, InstanceAction.finish_time.is_(None)
                )
            ).all()
        for action_id in open_ids:
            core.finish_action(action_id, CUT_SHORT_BUILD)
    return ended
