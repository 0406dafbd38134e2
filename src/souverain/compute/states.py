"""The server state machine as data: which vm_states each action starts from, the
task_state it holds while it runs, the vm_state it ends in; and Nova's status.

An action begins with one compare-and-set on the server row (`begin`): two actions
never run on one server at once, in any number of processes. Nothing here touches
the host; the actions that do are in `actions.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from souverain.common.errors import Conflict
from souverain.compute.models import Server

VM_STATES = (
    "building",
    "active",
    "stopped",
    "paused",
    "suspended",
    "resized",
    "rescued",
    "shelved",
    "shelved_offloaded",
    "error",
    "deleted",
)


@dataclass(frozen=True)
class Move:
    """One action's row in the table.

    `ends` is the vm_state the action leaves the server in: the first while the guest
    runs afterwards, the last when it does not (one entry when that does not matter;
    none when the action keeps the vm_state it found). Any action that fails ends in
    `error` instead.
    """

    name: str  # as the conflict message and the instance actions log name it
    sources: frozenset[str]
    task: str
    ends: tuple[str, ...]
    # delete alone may start while another task runs (it takes the server from it)
    during_tasks: bool = False

    def end(self, running: bool = True) -> str:
        return self.ends[0] if running else self.ends[-1]


_LIVE = frozenset(
    {
        "active",
        "building",
        "stopped",
        "paused",
        "suspended",
        "resized",
        "rescued",
        "shelved",
        "shelved_offloaded",
        "error",
    }
)

MOVES: dict[str, Move] = {
    "delete": Move("delete", _LIVE, "deleting", ("deleted",), during_tasks=True),
    "stop": Move("stop", frozenset({"active", "error"}), "powering-off", ("stopped",)),
    "start": Move("start", frozenset({"stopped"}), "powering-on", ("active",)),
    "reboot": Move("reboot", frozenset({"active"}), "reboot_started", ("active",)),
    "reboot_hard": Move(
        "reboot",
        frozenset({"active", "stopped", "paused", "suspended", "error"}),
        "reboot_started_hard",
        ("active",),
    ),
    "pause": Move("pause", frozenset({"active"}), "pausing", ("paused",)),
    "unpause": Move("unpause", frozenset({"paused"}), "unpausing", ("active",)),
    "suspend": Move("suspend", frozenset({"active"}), "suspending", ("suspended",)),
    "resume": Move("resume", frozenset({"suspended"}), "resuming", ("active",)),
    "createImage": Move(
        "createImage",
        frozenset({"active", "stopped", "paused", "suspended"}),
        "image_snapshot",
        (),
    ),
    "createBackup": Move(
        "createBackup",
        frozenset({"active", "stopped", "paused", "suspended"}),
        "image_backup",
        (),
    ),
    "rebuild": Move(
        "rebuild", frozenset({"active", "stopped", "error"}), "rebuilding", ("active", "stopped")
    ),
    "resize": Move("resize", frozenset({"active", "stopped"}), "resize_prep", ("resized",)),
    "confirmResize": Move(
        "confirmResize", frozenset({"resized"}), "resize_confirming", ("active", "stopped")
    ),
    "revertResize": Move(
        "revertResize", frozenset({"resized"}), "resize_reverting", ("active", "stopped")
    ),
    "rescue": Move("rescue", frozenset({"active", "stopped", "error"}), "rescuing", ("rescued",)),
    "unrescue": Move("unrescue", frozenset({"rescued"}), "unrescuing", ("active",)),
    # shelving offloads at once (Nova's shelved_offload_time 0): the host keeps nothing
    "shelve": Move(
        "shelve",
        frozenset({"active", "stopped", "paused", "suspended"}),
        "shelving",
        ("shelved_offloaded",),
    ),
    "unshelve": Move(
        "unshelve", frozenset({"shelved", "shelved_offloaded"}), "unshelving", ("active",)
    ),
    # frees the host of a server left in "shelved", which shelving here never leaves
    "shelveOffload": Move(
        "shelveOffload", frozenset({"shelved"}), "shelving_offloading", ("shelved_offloaded",)
    ),
}

# Plugging a volume or port in or out is no task of its own (it runs under the server's
# lock), but it waits for any task and wants a guest that is there to take it.
PLUG_STATES = frozenset({"active", "paused", "stopped"})


def begin(s: Session, server_id: str, move: Move, values: dict[str, Any]) -> bool:
    """The compare-and-set: the row takes the move's task (and `values`) only from a
    state the move allows. False when it did not."""
    idle = (
        Server.deleted.is_(False)
        if move.during_tasks
        else or_(Server.task_state.is_(None), Server.task_state == "")
    )
    result = s.execute(
        update(Server)
        .where(Server.id == server_id, Server.vm_state.in_(move.sources), idle)
        .values(task_state=move.task, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def refusal(move: Move, server_id: str, vm_state: str, task_state: str | None) -> Conflict:
    """Nova's 409 for an action the server's state does not allow."""
    if task_state and not move.during_tasks:
        return Conflict(
            f"Cannot '{move.name}' instance {server_id} while it is in task_state {task_state}"
        )
    return Conflict(f"Cannot '{move.name}' instance {server_id} while it is in vm_state {vm_state}")


def plug_refusal(verb: str, server_id: str, vm_state: str, task_state: str | None) -> Conflict:
    """The 409 for plugging into a server that is busy or has no guest to take it."""
    state = f"task_state {task_state}" if task_state else vm_state
    return Conflict(f"Cannot '{verb}' instance {server_id} while it is in {state}")


def may_plug(vm_state: str, task_state: str | None) -> bool:
    return not task_state and vm_state in PLUG_STATES


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
    "migrating": "MIGRATING",
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
    "rescued": "RESCUE",
    "shelved": "SHELVED",
    "shelved_offloaded": "SHELVED_OFFLOADED",
    "error": "ERROR",
    "deleted": "DELETED",
}


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
    "RESCUE": ("rescued", None),
    "SHELVED": ("shelved", None),
    "SHELVED_OFFLOADED": ("shelved_offloaded", None),
    "ERROR": ("error", None),
    "DELETED": ("deleted", None),
}

# The vm_states a server is billed in (the `instance` gauge is 1 with its flavor): it holds
# its CPU and memory. Building, stopped, suspended, shelved, error and deleted are not.
BILLABLE_VM_STATES = frozenset({"active", "paused", "resized", "rescued"})
