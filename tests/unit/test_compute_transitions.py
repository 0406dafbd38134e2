"""The server state machine is its table: every (state, action) pair, driven through the
real compare-and-set on a server row in SQLite, moves exactly when the table says so."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import Conflict, NotFound
from souverain.compute.actions import Actions
from souverain.compute.agents import HostAgents
from souverain.compute.core import ComputeCore
from souverain.compute.guests import Guests
from souverain.compute.models import InstanceAction, Server
from souverain.compute.qemu import QemuDriver
from souverain.compute.states import MOVES, VM_STATES, Move, may_plug
from souverain.config import ComputeSettings
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from tests.server_rows import add_server

# What each action was allowed from before the table existed, written out again here so
# that a change to the table is a change to this test too.
EXPECTED_SOURCES = {
    "delete": {
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
    },
    "stop": {"active", "error"},
    "start": {"stopped"},
    "reboot": {"active"},
    "reboot_hard": {"active", "stopped", "paused", "suspended", "error"},
    "pause": {"active"},
    "unpause": {"paused"},
    "suspend": {"active"},
    "resume": {"suspended"},
    "createImage": {"active", "stopped", "paused", "suspended"},
    "createBackup": {"active", "stopped", "paused", "suspended"},
    "rebuild": {"active", "stopped", "error"},
    "resize": {"active", "stopped"},
    "confirmResize": {"resized"},
    "revertResize": {"resized"},
    "rescue": {"active", "stopped", "error"},
    "unrescue": {"rescued"},
    "shelve": {"active", "stopped", "paused", "suspended"},
    "unshelve": {"shelved", "shelved_offloaded"},
    "shelveOffload": {"shelved"},
}
TASK_STATES = (None, "powering-off")
OWNER = RequestContext(user_id="u", user_domain_id="default", project_id="p", roles=frozenset())


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'db.sqlite'}")
    migrate.upgrade(engine)
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def core(db: Database, tmp_path: Path) -> Iterator[ComputeCore]:
    # the table's moves touch no other service: those seams are never called here
    none = cast(Any, None)
    settings = ComputeSettings(host_vcpus=1, host_memory_mib=1024, host_disk_gib=10)
    core = ComputeCore(db, none, none, none, QemuDriver(tmp_path), Clock(), settings)
    yield core
    core.close()


def _state(db: Database, server_id: str) -> tuple[str, str | None]:
    with db.session() as s:
        row = s.get(Server, server_id)
        assert row is not None
        return row.vm_state, row.task_state


def _actions(db: Database, server_id: str) -> list[str]:
    with db.session() as s:
        return [a.action for a in s.query(InstanceAction).filter_by(server_id=server_id)]


def test_the_table_is_the_state_machine_compute_always_had() -> None:
    assert {name: set(move.sources) for name, move in MOVES.items()} == EXPECTED_SOURCES
    for move in MOVES.values():
        assert set(move.ends) <= set(VM_STATES)
        assert move.sources <= set(VM_STATES) - {"deleted"}
    assert [name for name, move in MOVES.items() if move.during_tasks] == ["delete"]


@pytest.mark.parametrize(
    ("vm_state", "task_state", "action"),
    list(itertools.product(VM_STATES, TASK_STATES, MOVES)),
)
def test_every_state_and_action_moves_as_the_table_says(
    db: Database, core: ComputeCore, vm_state: str, task_state: str | None, action: str
) -> None:
    move = MOVES[action]
    guests = Guests(core)
    actions = Actions(
        core, cast(Any, None), guests, cast(Any, None), HostAgents(core, guests.forget)
    )
    server_id = add_server(db, vm_state=vm_state, task_state=task_state)
    allowed = vm_state in move.sources and (task_state is None or move.during_tasks)
    if not allowed:
        with pytest.raises(NotFound if vm_state == "deleted" else Conflict) as refused:
            actions.begin(OWNER, server_id, move)
        if vm_state != "deleted":
            why = f"task_state {task_state}" if task_state else f"vm_state {vm_state}"
            assert refused.value.message == (
                f"Cannot '{move.name}' instance {server_id} while it is in {why}"
            )
        assert _state(db, server_id) == (vm_state, task_state)
        assert _actions(db, server_id) == []
        return
    row, _ = actions.begin(OWNER, server_id, move)
    assert (row.vm_state, row.task_state) == (vm_state, move.task)
    assert _state(db, server_id) == (vm_state, move.task)
    assert _actions(db, server_id) == [move.name]
    # and a second action finds the server busy, whatever it is
    with pytest.raises(Conflict):
        actions.begin(OWNER, server_id, MOVES["stop"])


@pytest.mark.parametrize(("action", "running"), list(itertools.product(MOVES, (True, False))))
def test_an_action_ends_in_the_vm_state_the_table_names(
    db: Database, core: ComputeCore, action: str, running: bool
) -> None:
    move = MOVES[action]
    guests = Guests(core)
    actions = Actions(
        core, cast(Any, None), guests, cast(Any, None), HostAgents(core, guests.forget)
    )
    start = sorted(move.sources)[0]
    server_id = add_server(db, vm_state=start, task_state=None)
    _, action_id = actions.begin(OWNER, server_id, move)
    ends: dict[str, Any] = {"vm_state": move.end(running)} if move.ends else {}
    actions.run(move, action_id, server_id, lambda: ends)
    core.close()  # waits for the task
    assert _state(db, server_id) == (move.end(running) if move.ends else start, None)


def test_an_end_outside_the_table_is_an_error(db: Database, core: ComputeCore) -> None:
    move: Move = MOVES["pause"]
    guests = Guests(core)
    actions = Actions(
        core, cast(Any, None), guests, cast(Any, None), HostAgents(core, guests.forget)
    )
    server_id = add_server(db, vm_state="active", task_state=None)
    _, action_id = actions.begin(OWNER, server_id, move)
    actions.run(move, action_id, server_id, lambda: {"vm_state": "suspended"})
    core.close()
    assert _state(db, server_id) == ("error", None)


@pytest.mark.parametrize(
    ("vm_state", "task_state"), list(itertools.product(VM_STATES, TASK_STATES))
)
def test_volumes_and_ports_plug_only_into_an_idle_guest(
    vm_state: str, task_state: str | None
) -> None:
    idle_guest = task_state is None and vm_state in ("active", "paused", "stopped")
    assert may_plug(vm_state, task_state) is idle_guest
