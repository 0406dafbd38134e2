"""Moving a server between agent hosts: live migration (os-migrateLive, the local disk
copied as it runs) and cold migration (migrate, then confirmResize or revertResize), kept
as Nova's migration records with Nova's statuses.

The control plane only writes what each side should do; the hosts' agents do it and report
each step through the internal API (level-triggered, like every assignment):

  live  preparing       the destination's assignment carries the server with
                        `migration: {role: destination}`: its agent starts QEMU waiting
                        for the guest and reports `listening` (the ports it picked)
        running         the source's assignment carries `migration: {role: source,
                        endpoint}`: its agent copies disk and memory, reports `sent`
        post-migrating  the destination takes over, reports `arrived`
        completed       the server runs on the destination; the source, no longer
                        assigned the guest, removes its copy
  cold  migrating       the source stops the guest and exports its disk read-only over
                        NBD on its underlay address, reports `exported`
        post-migrating  the destination pulls the disk, starts the guest if it ran,
                        reports `arrived`
        finished        VERIFY_RESIZE: the source keeps its copy until confirmResize
                        (confirmed: the source removes it) or revertResize (reverted: the
                        server is the source's again, the destination removes its copy)

The destination's share is claimed at the start (the scheduler writes the server's `host`,
so the source's share is let go at once); a failure at any step (`failed`, or an abort)
puts the server back on its source with its task ended, the migration `error` or
`cancelled`, the reason in the instance action, and the destination, no longer assigned
the guest, removes what it made. Nothing here touches a guest (agent/migration.py does).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.compute import states
from souverain.compute.agent_volumes import refuse_move_with_volumes
from souverain.compute.agents import HostAgents, bump, is_agent_host
from souverain.compute.core import NO_VALID_HOST, ComputeCore, require_admin
from souverain.compute.guests import Guests
from souverain.compute.models import ComputeHost, Migration, Server
from souverain.compute.qemu_guest import PowerState
from souverain.compute.scheduler import PlacementRequest
from souverain.compute.states import Move

LIVE = "live-migration"
COLD = "migration"
LIVE_MOVE = Move("os-migrateLive", frozenset({"active"}), "migrating", ("active",))
COLD_MOVE = Move("migrate", frozenset({"active", "stopped"}), "resize_migrating", ("resized",))
# statuses of a move under way, per type (Nova's words)
IN_PROGRESS = {
    LIVE: ("queued", "preparing", "running", "post-migrating"),
    COLD: ("migrating", "post-migrating"),
}
# a cold migration done but not yet confirmed: both hosts hold the server's files
HOLDING = "finished"
ACTION_NAMES = {LIVE: "live-migration", COLD: "migrate"}  # as Nova's instance actions name them
CONSOLE_MAX = 64 * 1024  # the tail of the source's console log carried to the destination
PORT_FIELDS = {"listening": ("nbd_port", "stream_port"), "exported": ("port",)}


@dataclass(frozen=True)
class Step:
    """One report of an agent: which side sends it, after which status, to which."""

    role: str
    after: str
    status: str


STEPS: dict[tuple[str, str], Step] = {
    (LIVE, "listening"): Step("destination", "preparing", "running"),
    (LIVE, "sent"): Step("source", "running", "post-migrating"),
    (LIVE, "arrived"): Step("destination", "post-migrating", "completed"),
    (COLD, "exported"): Step("source", "migrating", "post-migrating"),
    (COLD, "arrived"): Step("destination", "post-migrating", HOLDING),
}


@dataclass(frozen=True)
class MigrationFilter:
    """os-migrations' query, already checked."""

    host: str | None = None
    source_compute: str | None = None
    status: str | None = None
    instance_uuid: str | None = None
    migration_type: str | None = None
    user_id: str | None = None
    project_id: str | None = None
    changes_since: dt.datetime | None = None
    changes_before: dt.datetime | None = None
    limit: int | None = None
    marker: str | None = None


class Migrations:
    def __init__(self, core: ComputeCore, agents: HostAgents, guests: Guests | None) -> None:
        self.core = core
        self.db = core.db
        self.agents = agents
        self.guests = guests

    # ------------------------------------------------------------------ starting a move

    def live_migrate(self, ctx: RequestContext, server_id: str, target: str | None) -> None:
        """Move the running server to `target` (or where the scheduler says) with its disk."""
        require_admin(ctx, "live-migrate a server")
        self._start(ctx, server_id, target, LIVE_MOVE, LIVE)

    def cold_migrate(self, ctx: RequestContext, server_id: str, target: str | None) -> None:
        """Move the server (stopped for the copy) to `target` or where the scheduler says;
        it ends in VERIFY_RESIZE, as in Nova."""
        require_admin(ctx, "migrate a server")
        self._start(ctx, server_id, target, COLD_MOVE, COLD)

    def _start(
        self, ctx: RequestContext, server_id: str, target: str | None, move: Move, kind: str
    ) -> None:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            self._check(s, row, target, move)
            source = str(row.host)
        if self.agents.status_of(source) not in ("UP", "MAINTENANCE"):  # disabled: drained
            raise BadRequest(f"Compute service of {source} is unavailable at this time.")
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            if row.host != source or not states.begin(
                s, server_id, move, {"updated_at": self.core.now()}
            ):
                raise states.refusal(move, server_id, row.vm_state, row.task_state)
            dest = self._claim(s, row, source, target)
            if dest is None:
                s.rollback()
                raise BadRequest(NO_VALID_HOST)
            s.add(self._record(s, ctx, row, source, dest, kind))
            self.core.record_action(s, ctx, server_id, row.project_id, ACTION_NAMES[kind])
            bump(s, source)
            bump(s, dest)

    def _check(self, s: Session, row: Server, target: str | None, move: Move) -> None:
        if not is_agent_host(s, row.host):
            raise Conflict(
                f"Cannot '{move.name}' instance {row.id}: its host {row.host} runs no host "
                "agent; only servers of agent hosts move between hosts."
            )
        if target is not None:
            if s.get(ComputeHost, target) is None:
                raise BadRequest(f"Compute host {target[:255]} could not be found.")
            if target == row.host:
                raise BadRequest(
                    f"Unable to migrate instance ({row.id}) to current host ({row.host})."
                )
            if not is_agent_host(s, target):
                raise BadRequest(
                    f"Host {target[:255]} runs no host agent: servers move onto agent hosts only."
                )
        if row.root_volume_id is not None:
            raise BadRequest(
                f"Server {row.id} boots from a volume; agent hosts move only local disks."
            )
        refuse_move_with_volumes(self.core, row.id, move.name)
        if row.vm_state not in move.sources or row.task_state:
            raise states.refusal(move, row.id, row.vm_state, row.task_state)

    def _claim(self, s: Session, row: Server, source: str, target: str | None) -> str | None:
        """The destination's share claimed (the server's `host` written), or None. Every
        filter of the scheduler holds, the group's policy too; a named host is checked
        as any other (Nova's 2.68 semantics: no forcing past the scheduler)."""
        request = PlacementRequest(
            server_id=row.id,
            vcpus=row.vcpus,
            memory_mib=row.memory_mib,
            disk_gib=row.disk_gib,
            extra_specs=dict((row.flavor or {}).get("extra_specs") or {}),
        )
        scheduler = self.core.scheduler
        names = (
            [target] if target else [c.host.name for c in scheduler.candidates(s, request, None)]
        )
        for name in names:
            if name == source or not is_agent_host(s, name):
                continue
            placed = scheduler.select_and_claim(s, dataclasses.replace(request, host=name))
            if placed is not None:
                zone = scheduler.zone_of_host(s, placed)
                s.execute(update(Server).where(Server.id == row.id).values(availability_zone=zone))
                return placed
        return None

    def _record(
        self, s: Session, ctx: RequestContext, row: Server, source: str, dest: str, kind: str
    ) -> Migration:
        now = self.core.now()
        flavor = str((row.flavor or {}).get("id", "")) or None
        return Migration(
            uuid=str(uuid.uuid4()),
            instance_uuid=row.id,
            source_compute=source,
            dest_compute=dest,
            source_node=source,
            dest_node=dest,
            dest_host=s.scalar(select(ComputeHost.address).where(ComputeHost.name == dest)),
            status="preparing" if kind == LIVE else "migrating",
            migration_type=kind,
            old_instance_type_id=flavor,
            new_instance_type_id=flavor,
            project_id=row.project_id,
            user_id=ctx.user_id,
            created_at=now,
            updated_at=now,
        )

    # ------------------------------------------------------------------ what hosts are told

    def assign(self, s: Session, host: str, servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The host's assignment with its part in each move under way: a destination's
        server carries `migration`; a source is still assigned the server it sends (or,
        until a cold migration is confirmed or reverted, keeps)."""
        moving = s.scalars(
            select(Migration).where(
                or_(Migration.source_compute == host, Migration.dest_compute == host),
                Migration.status.in_({*IN_PROGRESS[LIVE], *IN_PROGRESS[COLD], HOLDING}),
            )
        ).all()
        by_id = {entry["id"]: entry for entry in servers}
        for mig in moving:
            role = "destination" if mig.dest_compute == host else "source"
            entry = by_id.get(mig.instance_uuid)
            if entry is None and role == "source":
                row = s.get(Server, mig.instance_uuid)
                if row is None or row.deleted or row.host != mig.dest_compute:
                    continue
                entry = self.agents.assignment_of(row)
                servers.append(entry)
            if entry is not None:
                entry["migration"] = self._doc(s, mig, role)
        return servers

    def _doc(self, s: Session, mig: Migration, role: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": mig.id,
            "type": mig.migration_type,
            "role": role,
            "status": mig.status,
            "endpoint": mig.endpoint,
        }
        if role == "destination":
            row = s.get(Server, mig.instance_uuid)
            if row is not None:
                doc["build"] = self.agents.build_docs(row)
        return doc

    # ------------------------------------------------------------------ agents' reports

    def report(self, host: str, migration_id: int, step: str, body: dict[str, Any]) -> None:
        """A step an agent took (or could not take); node-authorized: only the move's own
        source or destination reports on it, and each step only by its side."""
        with self.db.session() as s:
            mig = s.get(Migration, migration_id)
            if mig is None or host not in (mig.source_compute, mig.dest_compute):
                raise NotFound(f"Migration {migration_id} is not host {host}'s.")
            kind, status = mig.migration_type, mig.status
        if step == "failed":
            self._fail(migration_id, "error", _message(body))
            return
        spec = STEPS.get((kind, step))
        if spec is None:
            names = sorted({name for (k, name) in STEPS if k == kind} | {"failed"})
            raise BadRequest(f"'step' of a {kind} is one of {', '.join(names)}, not {step!r}.")
        side = mig.source_compute if spec.role == "source" else mig.dest_compute
        if host != side:
            raise Conflict(f"Only migration {migration_id}'s {spec.role} reports '{step}'.")
        if status == spec.status:
            return  # said again (a retried report): already done
        with self.db.session() as s:
            values = self._step_values(s, mig, step, body)
            moved = s.execute(
                update(Migration)
                .where(Migration.id == migration_id, Migration.status == spec.after)
                .values(status=spec.status, updated_at=self.core.now(), **values)
            ).rowcount  # type: ignore[attr-defined]
            if not moved:
                raise Conflict(f"Migration {migration_id} is {status}: '{step}' cannot follow.")
            bump(s, mig.source_compute)
            bump(s, mig.dest_compute)
        if spec.status in ("completed", HOLDING):
            self._arrived(mig, bool(body.get("running", True)))

    def _step_values(
        self, s: Session, mig: Migration, step: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        endpoint = dict(mig.endpoint or {})
        # root disks on RBD are shared: a host exports no disk and says port 0
        shared = self.core.settings.disk_backend == "rbd"
        for field in PORT_FIELDS.get(step, ()):
            port = body.get(field)
            no_export = shared and port == 0 and field != "stream_port"
            is_port = isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536
            if not (is_port or no_export):
                raise BadRequest(f"'{field}' must be a TCP port (1 to 65535).")
            endpoint[field] = port
        if step == "listening":
            endpoint["address"] = mig.dest_host
        if step == "exported":
            endpoint["address"] = s.scalar(
                select(ComputeHost.address).where(ComputeHost.name == mig.source_compute)
            )
        if step == "sent":
            endpoint["console"] = _console(body.get("console", ""))
        return {"endpoint": endpoint}

    def _arrived(self, mig: Migration, running: bool) -> None:
        server_id = mig.instance_uuid
        if self.guests is not None and self.guests.ports(server_id):
            self.core.set(server_id, addresses=self.guests.plug_ports(server_id, mig.dest_compute))
        power = PowerState.RUNNING if running else PowerState.SHUTDOWN
        end = "active" if mig.migration_type == LIVE else "resized"
        self.core.set(server_id, vm_state=end, task_state=None, power_state=int(power), fault=None)
        self._finish_action(server_id, None)

    def _fail(self, migration_id: int, status: str, message: str) -> bool:
        """The move ends (`error`, `cancelled`): the server is its source's again, as it was
        before the move; the destination lets go of its copy. False if it had ended."""
        with self.db.session() as s:
            mig = s.get(Migration, migration_id)
            assert mig is not None
            ended = s.execute(
                update(Migration)
                .where(
                    Migration.id == migration_id,
                    Migration.status.in_(IN_PROGRESS[mig.migration_type]),
                )
                .values(status=status, message=message[:1000], updated_at=self.core.now())
            ).rowcount  # type: ignore[attr-defined]
            if not ended:
                return False
            source, dest, server_id = mig.source_compute, mig.dest_compute, mig.instance_uuid
            zone = self.core.scheduler.zone_of_host(s, str(source))
            s.execute(
                update(Server)
                .where(Server.id == server_id, Server.host == dest)
                .values(host=source, availability_zone=zone, task_state=None)
                .execution_options(synchronize_session=False)
            )
            bump(s, source)
            bump(s, dest)
        self._finish_action(server_id, message[:255])
        return True

    def end_moves(self, server_id: str, message: str) -> None:
        """The server is gone: any move of it under way ends in error."""
        with self.db.session() as s:
            s.execute(
                update(Migration)
                .where(
                    Migration.instance_uuid == server_id,
                    Migration.status.in_({*IN_PROGRESS[LIVE], *IN_PROGRESS[COLD], HOLDING}),
                )
                .values(status="error", message=message, updated_at=self.core.now())
            )

    def _finish_action(self, server_id: str, error: str | None) -> None:
        self.agents.finish_open_action(server_id, error)

    # ------------------------------------------------------------------ after a cold move

    def holding(self, server_id: str) -> Migration | None:
        """The server's cold migration waiting for confirmResize or revertResize."""
        with self.db.session() as s:
            return s.scalar(
                select(Migration)
                .where(Migration.instance_uuid == server_id, Migration.status == HOLDING)
                .order_by(Migration.id.desc())
                .limit(1)
            )

    def confirm(self, ctx: RequestContext, server_id: str, mig: Migration) -> None:
        """The server stays where it went; the source removes its copy."""
        self._end_holding(ctx, server_id, mig, "confirmResize", "confirmed")

    def revert(self, ctx: RequestContext, server_id: str, mig: Migration) -> None:
        """Back to the source, as it was before; the destination removes its copy."""
        self._end_holding(ctx, server_id, mig, "revertResize", "reverted")

    def _end_holding(
        self, ctx: RequestContext, server_id: str, mig: Migration, name: str, status: str
    ) -> None:
        move = states.MOVES[name]
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            running = row.power_state == int(PowerState.RUNNING)
            if not states.begin(s, server_id, move, {"updated_at": self.core.now()}):
                raise states.refusal(move, server_id, row.vm_state, row.task_state)
            ended = s.execute(
                update(Migration)
                .where(Migration.id == mig.id, Migration.status == HOLDING)
                .values(status=status, updated_at=self.core.now())
            ).rowcount  # type: ignore[attr-defined]
            if not ended:
                s.rollback()
                raise Conflict(f"Migration {mig.id} of instance {server_id} has ended already.")
            self.core.record_action(s, ctx, server_id, row.project_id, name)
            values: dict[str, Any] = {"vm_state": "active" if running else "stopped"}
            if status == "reverted":
                values["host"] = mig.source_compute
                values["availability_zone"] = self.core.scheduler.zone_of_host(
                    s, str(mig.source_compute)
                )
            s.execute(update(Server).where(Server.id == server_id).values(**values))
            bump(s, mig.source_compute)
            bump(s, mig.dest_compute)
        if status == "reverted" and running:
            # the source starts the guest again: its agent's report ends the task
            self.agents.hand_over(server_id, task="powering-on")
            return
        if status == "reverted" and self.guests is not None and self.guests.ports(server_id):
            self.core.set(
                server_id, addresses=self.guests.plug_ports(server_id, mig.source_compute)
            )
        self.core.set(server_id, task_state=None)
        self._finish_action(server_id, None)

    # ------------------------------------------------------------------ abort, listings

    def abort(
        self, ctx: RequestContext, server_id: str, migration_id: int, queued_too: bool
    ) -> None:
        """DELETE /servers/{id}/migrations/{mid} (2.24): cancel a live migration under way."""
        require_admin(ctx, "abort a live migration")
        mig = self.in_progress(ctx, server_id, migration_id)
        allowed = IN_PROGRESS[LIVE][:3] if queued_too else ("running",)
        if mig.status not in allowed:
            raise BadRequest(
                f"Migration {migration_id} state of instance {server_id} is {mig.status}. "
                f"Cannot abort live migration while in this state."
            )
        if not self._fail(migration_id, "cancelled", "The live migration was aborted."):
            raise BadRequest(f"Migration {migration_id} of instance {server_id} has ended.")

    def force_complete(self, ctx: RequestContext, server_id: str, migration_id: int) -> None:
        """POST .../migrations/{mid}/action force_complete (2.22): the source pauses the
        guest so the last memory pass catches up; it runs again on the destination."""
        require_admin(ctx, "force a live migration to complete")
        mig = self.in_progress(ctx, server_id, migration_id)
        if mig.status != "running":
            raise BadRequest(
                f"Migration {migration_id} state of instance {server_id} is {mig.status}. "
                "Cannot force_complete while the migration is in this state."
            )
        with self.db.session() as s:
            forced = s.execute(
                update(Migration)
                .where(Migration.id == migration_id, Migration.status == "running")
                .values(endpoint={**(mig.endpoint or {}), "force_complete": True})
            ).rowcount  # type: ignore[attr-defined]
            if not forced:
                raise BadRequest(f"Migration {migration_id} of instance {server_id} moved on.")
            bump(s, mig.source_compute)

    def in_progress(self, ctx: RequestContext, server_id: str, migration_id: int) -> Migration:
        for mig in self.server_migrations(ctx, server_id):
            if mig.id == migration_id:
                return mig
        raise NotFound(
            f"In-progress live migration {migration_id} is not found for server {server_id}."
        )

    def server_migrations(self, ctx: RequestContext, server_id: str) -> list[Migration]:
        """A server's live migrations under way (GET /servers/{id}/migrations)."""
        require_admin(ctx, "list a server's migrations")
        with self.db.session() as s:
            self.core.server_row(s, ctx, server_id)
            return list(
                s.scalars(
                    select(Migration)
                    .where(
                        Migration.instance_uuid == server_id,
                        Migration.migration_type == LIVE,
                        Migration.status.in_(IN_PROGRESS[LIVE]),
                    )
                    .order_by(Migration.id)
                ).all()
            )

    def list(self, ctx: RequestContext, f: MigrationFilter) -> list[Migration]:
        """os-migrations: newest first, filtered and paged (a marker is a migration's uuid)."""
        require_admin(ctx, "list migrations")
        query = select(Migration).order_by(Migration.created_at.desc(), Migration.id.desc())
        exact = {
            Migration.status: f.status,
            Migration.instance_uuid: f.instance_uuid,
            Migration.migration_type: f.migration_type,
            Migration.source_compute: f.source_compute,
            Migration.user_id: f.user_id,
            Migration.project_id: f.project_id,
        }
        for column, value in exact.items():
            if value is not None:
                query = query.where(column == value)
        if f.host is not None:
            query = query.where(
                or_(Migration.source_compute == f.host, Migration.dest_compute == f.host)
            )
        if f.changes_since is not None:
            query = query.where(Migration.updated_at >= f.changes_since)
        if f.changes_before is not None:
            query = query.where(Migration.updated_at <= f.changes_before)
        with self.db.session() as s:
            if f.marker is not None:
                query = query.where(Migration.id < self._marker_id(s, f.marker))
            if f.limit is not None:
                query = query.limit(f.limit)
            return list(s.scalars(query).all())

    @staticmethod
    def _marker_id(s: Session, marker: str) -> int:
        found = s.scalar(select(Migration.id).where(Migration.uuid == marker[:36]))
        if found is None:
            raise BadRequest(f"Marker {marker[:64]} could not be found.")
        return int(found)


def _message(body: dict[str, Any]) -> str:
    message = body.get("message")
    return message[:1000] if isinstance(message, str) and message else "The host could not do it."


def _console(value: Any) -> str:
    """The source's console tail, as base64, at most CONSOLE_MAX bytes once decoded."""
    if not isinstance(value, str):
        raise BadRequest("'console' must be base64.")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("'console' must be base64.") from None
    return base64.b64encode(raw[-CONSOLE_MAX:]).decode()
