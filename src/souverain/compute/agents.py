"""Host agents: the hypervisors that run guests for the cloud without a database of their
own, as Kubernetes' kubelet does for its nodes.

The API writes what should run where (a server's `host` and its task); each agent
watches what is assigned to its host (`assignments`, resumable from the host's
`revision`), makes the host match it, and reports what actually runs (`report`). A
report ends the task it answers; nothing is lost if any process restarts, because the
watch is level-triggered: an agent always gets the whole of its host's assignment.

Node authorization: an agent authenticates with its own token (enrolled by an operator,
stored as its SHA-256) and reads and reports only what is assigned to its own host.
Another host's servers answer 404, as if they did not exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.compute import console_tails
from souverain.compute.agent_volumes import AgentVolumes
from souverain.compute.core import SYSTEM, ComputeCore
from souverain.compute.guests import Guests
from souverain.compute.host_services import COMPUTE
from souverain.compute.models import ComputeHost, InstanceAction, Server, ServiceState
from souverain.compute.qemu_guest import PowerState

log = logging.getLogger(__name__)

TOKEN_PREFIX = "svh_"  # noqa: S105 - the mark of a host token, not a secret
# What a guest on an agent host can be told: the agent's answers.
ACTUAL_STATES = ("running", "stopped", "paused", "suspended", "absent", "error")
# What each state the host reports makes of the server: vm_state and power_state.
_ENDS = {
    "running": ("active", PowerState.RUNNING),
    "stopped": ("stopped", PowerState.SHUTDOWN),
    "paused": ("paused", PowerState.PAUSED),
    "suspended": ("suspended", PowerState.SUSPENDED),
}
# A reboot the agent does, by its task: hard (QEMU killed) or soft (ACPI first).
REBOOT_TASKS = {"reboot_started": False, "reboot_started_hard": True}
# The tasks an agent does once per instance action (the assignment names it as `action`,
# the report echoes it): a guest found as wanted before them is no answer.
ONCE_TASKS = frozenset({*REBOOT_TASKS, "rebuild_spawning"})
# A task an agent ends, and the actual state that ends it.
AGENT_TASKS = frozenset(
    {
        "spawning",
        "rebuild_spawning",
        "powering-on",
        "powering-off",
        "pausing",
        "unpausing",
        "suspending",
        "resuming",
        "deleting",
        *REBOOT_TASKS,
    }
)
# The tasks whose host builds the server anew (from its image and config drive).
BUILD_TASKS = frozenset({"spawning", "rebuild_spawning"})
# The actions whose host work an agent does (instance action names, as in states.MOVES).
AGENT_MOVES = frozenset(
    {"stop", "start", "reboot", "rebuild", "pause", "unpause", "suspend", "resume", "delete"}
)


class MoveRoles(Protocol):
    """A host's part in the moves under way (compute/migrations.py): added to its assignment."""

    def assign(
        self, s: Session, host: str, servers: list[dict[str, Any]]
    ) -> list[dict[str, Any]]: ...

    def end_moves(self, server_id: str, message: str) -> None: ...


@dataclass(frozen=True)
class HostReport:
    """What an agent says of its host at each heartbeat."""

    address: str | None
    roles: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    physical_vcpus: int
    physical_memory_mib: int
    physical_disk_gib: int
    hypervisor_type: str
    hypervisor_version: int


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_agent_host(s: Session, host: str | None) -> bool:
    """Whether the host's guests are run by an agent (it has a credential), not in here."""
    if host is None:
        return False
    return s.scalar(select(ComputeHost.token_hash).where(ComputeHost.name == host)) is not None


def bump(s: Session, host: str | None) -> None:
    """What is assigned to the host changed: its agent's watch wakes up."""
    if host is not None:
        s.execute(
            update(ComputeHost)
            .where(ComputeHost.name == host)
            .values(revision=ComputeHost.revision + 1)
        )


def desired(row: Server) -> str:
    """What the host should make of the server: running, stopped or absent."""
    if row.deleted or row.task_state == "deleting":
        return "absent"
    if row.task_state in ("spawning", "powering-on", "unpausing", "resuming", *REBOOT_TASKS):
        return "running"
    if row.task_state == "pausing" or row.vm_state == "paused":
        return "paused"
    if row.task_state == "suspending" or row.vm_state == "suspended":
        return "suspended"
    if row.task_state == "rebuild_spawning":  # evacuated: as it was, or stopped (2.95)
        return "stopped" if row.vm_state == "stopped" else "running"
    if row.task_state == "powering-off":
        return "stopped"
    if row.vm_state == "active":
        return "running"
    if row.vm_state in ("error", "resized"):  # resized: as it ran before the move
        return "running" if row.power_state == int(PowerState.RUNNING) else "stopped"
    return "stopped"


def _handed_over(row: Server) -> bool:
    """Whether the host should act on the server: not while its build is still being
    placed (claimed, not yet handed over), which would have the host make it stopped."""
    return row.vm_state != "building" or row.task_state in (*BUILD_TASKS, "deleting")


def _assignment(row: Server) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "desired": desired(row),
        "task": row.task_state if row.task_state in AGENT_TASKS else None,
        "vcpus": int((row.flavor or {}).get("vcpus", row.vcpus)),
        "memory_mib": int((row.flavor or {}).get("ram", row.memory_mib)),
        "disk_gib": row.disk_gib,
        "image_id": row.image_id,
        "flavor": str((row.flavor or {}).get("name", "")),
        "networks": "none" if row.networks == "none" else "ports",
        "mac": row.mac,
    }


def with_network(
    servers: list[dict[str, Any]], plan: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The host's network part of its assignment (segments, firewall input) and, on each
    server, the ports its guest needs taps for; None on a cloud without the overlay (its
    guests keep the isolated NIC). The plan holds only this host's ports (node
    authorization is the plan's: network/host_plan.py)."""
    if plan is None:
        return None
    ports = plan.get("servers", {})
    for server in servers:
        if server.get("networks") != "none":
            server["ports"] = ports.get(server["id"], [])
    return {k: v for k, v in plan.items() if k != "servers"}


def bump_hosts(s: Session, hosts: set[str]) -> None:
    """What the network side says changed for these hosts: their agents' watches wake."""
    if hosts:
        s.execute(
            update(ComputeHost)
            .where(ComputeHost.name.in_(sorted(hosts)), ComputeHost.token_hash.is_not(None))
            .values(revision=ComputeHost.revision + 1)
        )


def _open_actions(s: Session, server_ids: list[str]) -> dict[str, int]:
    """Each server's newest unfinished instance action."""
    if not server_ids:
        return {}
    rows = s.execute(
        select(InstanceAction.server_id, func.max(InstanceAction.id))
        .where(InstanceAction.server_id.in_(server_ids), InstanceAction.finish_time.is_(None))
        .group_by(InstanceAction.server_id)
    ).all()
    return {server_id: int(action) for server_id, action in rows}


def _answers(s: Session, server_id: str, action: int | None) -> bool:
    """Whether a report names the server's open instance action (the reboot it did)."""
    return action is not None and _open_actions(s, [server_id]).get(server_id) == action


def enroll(s: Session, name: str, roles: str, now: dt.datetime) -> str:
    """A new host and its token (shown once); a known host gets a new token, which ends
    the old one."""
    if not name or len(name) > 255 or any(c.isspace() or c in "/?#%" for c in name):
        raise BadRequest("A host name is 1 to 255 characters, without spaces, '/', '?', '#', '%'.")
    if roles not in ("compute", "network", "compute,network"):
        raise BadRequest("A host's roles are 'compute', 'network' or 'compute,network'.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = s.get(ComputeHost, name)
    if row is None:
        zero = dict.fromkeys(
            (
                "vcpus",
                "memory_mib",
                "disk_gib",
                "physical_vcpus",
                "physical_memory_mib",
                "physical_disk_gib",
                "hypervisor_version",
                "revision",
            ),
            0,
        )
        row = ComputeHost(name=name, roles=roles, hypervisor_type="QEMU", created_at=now, **zero)
        s.add(row)
    row.roles = roles
    row.token_hash = token_hash(token)
    return token


class HostAgents:
    def __init__(self, core: ComputeCore, forget: Any, guests: Guests | None = None) -> None:
        self.core = core
        self.db = core.db
        # ends a deleted server's life in the database (ports, volumes, tokens, the row)
        self._forget = forget
        self.guests = guests
        # host name -> its data plane's plan (network/host_plan.py), set by the composition
        # root on a cloud with the VXLAN overlay; None: agents' guests get no tenant network
        self.network_plan: Callable[[str, frozenset[str]], dict[str, Any]] | None = None
        # moves under way between hosts (compute/migrations.py): each host's part in them
        self.moves: MoveRoles | None = None
        # volumes of its servers a host plugs in (RBD: every host reaches them)
        self.volumes = AgentVolumes(core, bump)

    def network_of(self, host: str, servers: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The network part of the host's assignment (see with_network); the ports of the
        servers moving here are planned here already (their destination's taps)."""
        incoming = frozenset(
            str(entry["id"])
            for entry in servers
            if (entry.get("migration") or {}).get("role") == "destination"
        )
        plan = self.network_plan(host, incoming) if self.network_plan is not None else None
        return with_network(servers, plan)

    def wake(self, hosts: set[str]) -> None:
        with self.db.session() as s:
            bump_hosts(s, hosts)

    def addresses(self) -> dict[str, str]:
        """Every host's reported underlay address (agents send it in their heartbeats)."""
        with self.db.session() as s:
            rows = s.execute(
                select(ComputeHost.name, ComputeHost.address).where(
                    ComputeHost.address.is_not(None), ComputeHost.address != ""
                )
            ).all()
        return {name: str(address) for name, address in rows}

    # ------------------------------------------------------------------ credentials

    def enroll(self, name: str, roles: str = "compute") -> str:
        with self.db.session() as s:
            return enroll(s, name, roles, self.core.now())

    def host_of(self, token: str) -> str | None:
        """The host a token belongs to, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        with self.db.session() as s:
            found: str | None = s.scalar(
                select(ComputeHost.name).where(ComputeHost.token_hash == token_hash(token))
            )
            return found

    # ------------------------------------------------------------------ watch

    def heartbeat(self, host: str, report: HostReport) -> int:
        """Record the host's report; its current revision."""
        with self.db.session() as s:
            row = s.get(ComputeHost, host)
            if row is None:
                raise NotFound(f"Host {host} is not enrolled.")
            for field, value in report.__dict__.items():
                setattr(row, field, value)
            row.last_seen_at = self.core.now()
            return row.revision

    def revision(self, host: str) -> int:
        with self.db.session() as s:
            rev = s.scalar(select(ComputeHost.revision).where(ComputeHost.name == host))
        if rev is None:
            raise NotFound(f"Host {host} is not enrolled.")
        return int(rev)

    def revisions(self) -> dict[str, int]:
        """Every agent host's revision."""
        with self.db.session() as s:
            rows = s.execute(
                select(ComputeHost.name, ComputeHost.revision).where(
                    ComputeHost.token_hash.is_not(None)
                )
            ).all()
        return {name: int(rev) for name, rev in rows}

    def assignments(self, host: str) -> tuple[int, list[dict[str, Any]]]:
        """The host's revision and every server assigned to it, with what it should be."""
        with self.db.session() as s:
            rev = s.scalar(select(ComputeHost.revision).where(ComputeHost.name == host))
            if rev is None:
                raise NotFound(f"Host {host} is not enrolled.")
            rows = s.scalars(
                select(Server)
                .where(Server.host == host, Server.deleted.is_(False))
                .order_by(Server.id)
            ).all()
            actions = _open_actions(s, [r.id for r in rows if r.task_state in ONCE_TASKS])
            servers = [self._with_build(r) for r in rows if _handed_over(r)]
            if self.moves is not None:
                servers = self.moves.assign(s, host, servers)
        self.volumes.assign(servers)
        for assignment in servers:
            action = actions.get(assignment["id"])
            if action is None:
                continue
            assignment["action"] = action
            if assignment["task"] in REBOOT_TASKS:
                hard = REBOOT_TASKS[assignment["task"]]
                assignment["reboot"] = {"hard": hard, "action": action}
        return int(rev), servers

    def assignment_of(self, row: Server) -> dict[str, Any]:
        """A server's assignment, without what it is built from."""
        return _assignment(row)

    def _with_build(self, row: Server) -> dict[str, Any]:
        """A server's assignment; while it is being built, what the host builds it from."""
        assignment = _assignment(row)
        if row.task_state in BUILD_TASKS:
            build = self.build_docs(row)
            if build is not None:
                assignment["build"] = build
        return assignment

    def build_docs(self, row: Server) -> dict[str, Any] | None:
        """What a host makes the server from: its image's format and its config drive's
        documents (no password: a guest on an agent host gets its keys, as Nova's libvirt
        without password injection)."""
        if self.guests is None:
            return None
        meta, _, network = self.guests.config_drive_docs(row)
        image = self.core.images.get(SYSTEM, row.image_id) if row.image_id else None
        docs: dict[str, Any] = {
            "disk_format": image["disk_format"] if image else None,
            "root_volume": row.root_volume_id is not None,
            "meta_data": meta,
            "user_data": row.user_data,
            "network_data": network,
        }
        parent = self._rbd_parent(row.image_id) if image is not None else None
        if parent is not None:  # images on RBD: a host on RBD clones it, copies nothing
            docs["rbd"] = parent
        return docs

    def _rbd_parent(self, image_id: str | None) -> dict[str, str] | None:
        if self.core.settings.disk_backend != "rbd" or not image_id:
            return None
        try:
            ref = self.core.images.clone_parent(SYSTEM, image_id)
        except NotFound:
            return None
        if ref is None or ref.snapshot is None:
            return None
        return {"pool": ref.pool, "image": ref.image, "snapshot": ref.snapshot}

    def image_file(self, host: str, image_id: str) -> Path:
        """The bytes of an image a server assigned to `host` boots from; 404 otherwise."""
        with self.db.session() as s:
            used = s.scalar(
                select(Server.id)
                .where(Server.host == host, Server.image_id == image_id, Server.deleted.is_(False))
                .limit(1)
            )
        if used is None or len(image_id) > 64:
            raise NotFound(f"No server of host {host} boots from image {image_id[:64]}.")
        return self.core.images.image_for_boot(SYSTEM, image_id).path

    # ------------------------------------------------------------------ reports

    def console(self, host: str, server_id: str, output: str) -> None:
        """The newest part of a guest's console, as the agent of its host sent it."""
        with self.db.session() as s:
            console_tails.store(s, host, server_id, output, self.core.now())

    def report(
        self,
        host: str,
        server_id: str,
        state: str,
        message: str | None,
        action: int | None = None,
    ) -> None:
        """What the agent of `host` found the server to be; ends the task it answers. A
        reboot or a rebuild ends only on the report of that one (`action`, the instance
        action the assignment named): a guest found as wanted before it is no answer."""
        if state not in ACTUAL_STATES:
            raise BadRequest(f"state must be one of {', '.join(ACTUAL_STATES)}, not {state!r}.")
        with self.db.session() as s:
            row = s.get(Server, server_id) if len(server_id) <= 36 else None
            if row is None or row.deleted or row.host != host:
                raise NotFound(f"Server {server_id} is not assigned to host {host}.")
            task, wanted = row.task_state, desired(row)
            if task in ONCE_TASKS and state != "error" and not _answers(s, server_id, action):
                return
        if task in AGENT_TASKS and state == "error":
            self._fail(server_id, message or "The host could not do it.")
        elif task in AGENT_TASKS and wanted == state:
            self._end(server_id, task, state)
        elif task is None and state in _ENDS:
            self._observed(server_id, state)

    def _end(self, server_id: str, task: str, state: str) -> None:
        if state == "absent":
            self._forget(server_id)
            if self.moves is not None:
                self.moves.end_moves(server_id, "The server was deleted while it moved.")
            self.finish_open_action(server_id, None)
            return
        vm_state, power = _ENDS[state]
        values: dict[str, Any] = {
            "vm_state": vm_state,
            "task_state": None,
            "power_state": int(power),
            "updated_at": self.core.now(),
        }
        if task == "spawning":
            values["launched_at"] = self.core.now()
        if task in ("powering-on", "rebuild_spawning", *REBOOT_TASKS):
            values["fault"] = None
        self.core.update_metered(
            server_id,
            update(Server)
            .where(Server.id == server_id, Server.task_state == task)
            .values(**values)
            .execution_options(synchronize_session=False),
        )
        self.finish_open_action(server_id, None)

    def _fail(self, server_id: str, message: str) -> None:
        log.warning("server %s: its host says: %s", server_id, message)
        self.core.set(
            server_id,
            vm_state="error",
            task_state=None,
            fault=self.core.fault(message[:255]),
        )
        self.finish_open_action(server_id, message[:255])

    def _observed(self, server_id: str, state: str) -> None:
        """No task runs: the host's word is the power state (Nova's power-state sync)."""
        power = int(_ENDS[state][1])
        with self.db.session() as s:
            s.execute(
                update(Server)
                .where(Server.id == server_id, Server.task_state.is_(None))
                .values(power_state=power)
            )

    def finish_open_action(self, server_id: str, error: str | None) -> None:
        with self.db.session() as s:
            action_id = s.scalar(
                select(InstanceAction.id)
                .where(InstanceAction.server_id == server_id, InstanceAction.finish_time.is_(None))
                .order_by(InstanceAction.id.desc())
                .limit(1)
            )
        if action_id is not None:
            self.core.finish_action(action_id, error)

    # ------------------------------------------------------------------ the API's side

    def hand_over(
        self, server_id: str, task: str | None = None, local_delete: bool = False
    ) -> bool:
        """Leave the server's current task to its host's agent, if it has one: wake the
        agent's watch (and set `task` first). A delete on a host not heard from lately ends
        here, as Nova's local delete does: the agent, back, removes what is not assigned."""
        with self.db.session() as s:
            row = s.get(Server, server_id)
            if row is None or not is_agent_host(s, row.host):
                return False
            host = row.host
            from_volume = row.root_volume_id is not None
        if task in BUILD_TASKS and self._refuse_build(server_id, host, from_volume):
            return True
        with self.db.session() as s:
            if task is not None:
                s.execute(
                    update(Server)
                    .where(Server.id == server_id)
                    .values(task_state=task, updated_at=self.core.now())
                )
            bump(s, host)
        if local_delete and host is not None and self.status_of(host) != "UP":
            self._forget(server_id)
            if self.moves is not None:
                self.moves.end_moves(server_id, "The server was deleted while it moved.")
            self.finish_open_action(server_id, None)
        return True

    def _refuse_build(self, server_id: str, host: str | None, from_volume: bool) -> bool:
        """Bind the new server's ports to its host; False when its agent can build it."""
        if from_volume:
            self._fail(
                server_id,
                f"Host {host} runs guests through its agent, which boots from images only "
                "for now: boot this server from an image, or on a host without an agent.",
            )
            return True
        if self.guests is not None and self.guests.ports(server_id):
            self.core.set(server_id, addresses=self.guests.plug_ports(server_id, host))
        return False

    def status_of(self, host: str) -> str:
        settings = self.core.settings
        with self.db.session() as s:
            states = host_states(
                s, {host}, self.core.now(), settings.service_down_time, settings.host_dead_after
            )
        return states.get(host, "UNKNOWN")

    def refuse_unless_supported(self, s: Session, row: Server, move: str) -> None:
        if move not in AGENT_MOVES and is_agent_host(s, row.host):
            raise Conflict(
                f"Cannot '{move}' instance {row.id} while it is on host {row.host}: its host "
                f"agent does only {', '.join(sorted(AGENT_MOVES))} for now."
            )


def host_states(
    s: Session, hosts: set[str], now: dt.datetime, down_after: float, dead_after: float
) -> dict[str, str]:
    """Nova's host_status of each host: UP; UNKNOWN when its agent has not been heard from
    for `down_after` seconds, DOWN after `dead_after` or when forced down; MAINTENANCE
    when its compute service is disabled."""
    hosts = {h for h in hosts if h}
    if not hosts:
        return {}
    rows = s.execute(
        select(ComputeHost.name, ComputeHost.token_hash, ComputeHost.last_seen_at).where(
            ComputeHost.name.in_(hosts)
        )
    ).all()
    out = dict.fromkeys(hosts, "UP")
    for name, token, seen in rows:
        if token is not None:  # the all-in-one's own host is up while this process answers
            out[name] = _status(now, seen, down_after, dead_after)
    services = s.scalars(
        select(ServiceState).where(ServiceState.host.in_(hosts), ServiceState.binary == COMPUTE)
    )
    for state in services:
        if state.forced_down:
            out[state.host] = "DOWN"
        elif state.disabled and out[state.host] == "UP":
            out[state.host] = "MAINTENANCE"
    return out


def _status(now: dt.datetime, seen: dt.datetime | None, down_after: float, dead: float) -> str:
    if seen is None:
        return "UNKNOWN"
    age = (now - seen).total_seconds()
    if age > dead:
        return "DOWN"
    if age > down_after:
        return "UNKNOWN"
    return "UP"
