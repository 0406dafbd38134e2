"""Evacuate (Nova's os-evacuate): a server of a host that is down is rebuilt on another
host from its image; the old host, if it comes back, removes the guest it no longer has.

Only servers on agent hosts can be evacuated, onto agent hosts: the control plane can
tell such a host is down (its heartbeat stopped), and a new host builds the server from
the assignment as it builds any other. The server keeps its id, name, addresses and
ports (bound to the new host); its root disk is new, made from its image, as Nova does
without shared storage. From 2.95 the server is stopped on the new host, as in Nova.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.compute import states
from souverain.compute.agent_volumes import refuse_move_with_volumes
from souverain.compute.agents import HostAgents, bump, is_agent_host
from souverain.compute.core import NO_VALID_HOST, ComputeCore, require_admin
from souverain.compute.guests import new_admin_password
from souverain.compute.models import ComputeHost, Server
from souverain.compute.scheduler import PlacementRequest
from souverain.compute.states import Move

EVACUATE = Move("evacuate", frozenset({"active", "stopped", "error"}), "rebuild_spawning", ())


class Evacuation:
    def __init__(self, core: ComputeCore, agents: HostAgents) -> None:
        self.core = core
        self.db = core.db
        self.agents = agents

    def evacuate(
        self,
        ctx: RequestContext,
        server_id: str,
        target: str | None,
        stopped: bool,
        admin_pass: str | None = None,
    ) -> str:
        """Rebuild the server on `target` (or where the scheduler says); `stopped`: leave
        it stopped there (2.95), else as it was (an errored server comes back active).
        The password Nova answers with to 2.13: the one given, or a new one (an agent host
        injects no password: the guest takes its keys from its config drive)."""
        require_admin(ctx, "evacuate a server")
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            source = row.host
            self._check(s, row, target)
            if source is None or self.agents.status_of(source) == "UP":
                raise BadRequest(f"Compute service of {source or 'this server'} is still in use.")
        self._move(ctx, server_id, target, stopped)
        self.agents.hand_over(server_id, task="rebuild_spawning")
        with self.db.session() as s:
            bump(s, source)  # the old host, back, finds the guest no longer its own
        return admin_pass or new_admin_password()

    def _check(self, s: Session, row: Server, target: str | None) -> None:
        if target is not None:
            if s.get(ComputeHost, target) is None:
                raise NotFound(f"Compute host {target[:255]} not found.")
            if target == row.host:
                raise BadRequest("The target host can't be the same one.")
            if not is_agent_host(s, target):
                raise BadRequest(
                    f"Host {target[:255]} runs no host agent: servers are evacuated onto "
                    "agent hosts only."
                )
        if not is_agent_host(s, row.host):
            raise Conflict(
                f"Cannot 'evacuate' instance {row.id}: its host {row.host} runs no host agent, "
                "so the cloud cannot tell it is down."
            )
        if row.vm_state not in EVACUATE.sources or row.task_state:
            raise states.refusal(EVACUATE, row.id, row.vm_state, row.task_state)
        refuse_move_with_volumes(self.core, row.id, "evacuate")

    def _move(self, ctx: RequestContext, server_id: str, target: str | None, stopped: bool) -> None:
        """The compare-and-set, the claim on the new host and the action, in one go."""
        with self.db.session() as s:
            row = s.get(Server, server_id)
            assert row is not None
            end = "stopped" if stopped or row.vm_state == "stopped" else "active"
            values = {"vm_state": end, "updated_at": self.core.now()}
            if not states.begin(s, server_id, EVACUATE, values):
                raise states.refusal(EVACUATE, server_id, row.vm_state, row.task_state)
            self.core.record_action(s, ctx, server_id, row.project_id, "evacuate")
            placed = None
            for host in [target] if target else _agent_hosts(s, row.host):
                request = PlacementRequest(
                    server_id=server_id,
                    vcpus=row.vcpus,
                    memory_mib=row.memory_mib,
                    disk_gib=row.disk_gib,
                    host=host,
                    extra_specs=dict((row.flavor or {}).get("extra_specs") or {}),
                )
                placed = self.core.scheduler.select_and_claim(s, request)
                if placed is not None:
                    break
            if placed is None:
                s.rollback()
                raise BadRequest(NO_VALID_HOST)
            zone = self.core.scheduler.zone_of_host(s, placed)
            s.execute(
                update(Server)
                .where(Server.id == server_id)
                .values(host=placed, availability_zone=zone)
            )


def _agent_hosts(s: Session, source: str | None) -> list[str]:
    """The agent hosts a server may be evacuated to, least loaded first (the scheduler's
    filters then decide on each, in this order)."""
    load = (
        select(Server.host, func.coalesce(func.sum(Server.memory_mib), 0).label("used"))
        .where(Server.deleted.is_(False), Server.host.is_not(None))
        .group_by(Server.host)
        .subquery()
    )
    rows = s.execute(
        select(ComputeHost.name)
        .outerjoin(load, load.c.host == ComputeHost.name)
        .where(ComputeHost.token_hash.is_not(None), ComputeHost.name != (source or ""))
        .order_by((ComputeHost.memory_mib - func.coalesce(load.c.used, 0)).desc(), ComputeHost.name)
    ).all()
    return [name for (name,) in rows]
