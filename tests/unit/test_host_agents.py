"""What a host agent's report does to a server: it ends the task it answers and nothing
else; another host's report is refused; a delete on a host not heard from ends at once
(Nova's local delete), and the agent, back, finds the guest no longer assigned."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from souverain.common.clock import Clock
from souverain.common.errors import BadRequest, NotFound
from souverain.compute.agents import HostAgents, desired, host_states
from souverain.compute.core import ComputeCore
from souverain.compute.models import ComputeHost, InstanceAction, Server
from souverain.compute.qemu import QemuDriver
from souverain.config import ComputeSettings
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from tests.server_rows import add_server


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def core(db: Database, tmp_path: Path) -> Iterator[ComputeCore]:
    none = cast(Any, None)
    settings = ComputeSettings(service_down_time=60, host_dead_after=300)
    core = ComputeCore(db, none, none, none, QemuDriver(tmp_path / "q"), Clock(), settings)
    yield core
    core.close()


class Forgotten:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.ids: list[str] = []

    def __call__(self, server_id: str) -> None:
        self.ids.append(server_id)
        with self.db.session() as s:
            row = s.get(Server, server_id)
            assert row is not None
            row.deleted, row.vm_state, row.task_state = True, "deleted", None


@pytest.fixture
def forgotten(db: Database) -> Forgotten:
    return Forgotten(db)


@pytest.fixture
def agents(core: ComputeCore, forgotten: Forgotten) -> HostAgents:
    agents = HostAgents(core, forgotten)
    agents.enroll("hv1")
    agents.enroll("hv2")
    return agents


def _on(db: Database, server_id: str, host: str, action: str | None = None) -> None:
    with db.session() as s:
        row = s.get(Server, server_id)
        assert row is not None
        row.host = host
        if action is not None:
            s.add(
                InstanceAction(
                    server_id=server_id,
                    project_id="p",
                    user_id="u",
                    request_id="req-1",
                    action=action,
                    start_time=dt.datetime(2026, 1, 1),
                )
            )


def _row(db: Database, server_id: str) -> Server:
    with db.session() as s:
        row = s.get(Server, server_id)
        assert row is not None
        return row


def _open_actions(db: Database, server_id: str) -> list[str]:
    with db.session() as s:
        return [
            a.action
            for a in s.query(InstanceAction).filter_by(server_id=server_id, finish_time=None)
        ]


def _beat(db: Database, host: str, when: dt.datetime | None) -> None:
    with db.session() as s:
        row = s.get(ComputeHost, host)
        assert row is not None
        row.last_seen_at = when


def test_a_build_ends_when_its_host_reports_it_running(db: Database, agents: HostAgents) -> None:
    server_id = add_server(db, vm_state="building", task_state=None)
    _on(db, server_id, "hv1", "create")
    assert agents.hand_over(server_id, task="spawning")
    assert agents.revision("hv1") == 1 and agents.revision("hv2") == 0
    revision, servers = agents.assignments("hv1")
    assert revision == 1
    assert [(s["id"], s["desired"], s["task"]) for s in servers] == [
        (server_id, "running", "spawning")
    ]
    assert agents.assignments("hv2")[1] == []
    agents.report("hv1", server_id, "stopped", None)  # not what ends a build
    assert _row(db, server_id).task_state == "spawning"
    agents.report("hv1", server_id, "running", None)
    row = _row(db, server_id)
    assert (row.vm_state, row.task_state, row.power_state) == ("active", None, 1)
    assert row.launched_at is not None
    assert _open_actions(db, server_id) == []


def test_a_failed_build_is_the_servers_fault(db: Database, agents: HostAgents) -> None:
    server_id = add_server(db, vm_state="building", task_state="spawning")
    _on(db, server_id, "hv1", "create")
    agents.report("hv1", server_id, "error", "no room for the disk")
    row = _row(db, server_id)
    assert (row.vm_state, row.task_state) == ("error", None)
    assert row.fault is not None and row.fault["message"] == "no room for the disk"


def test_another_hosts_report_is_refused_and_changes_nothing(
    db: Database, agents: HostAgents
) -> None:
    server_id = add_server(db, vm_state="active", task_state="powering-off")
    _on(db, server_id, "hv1")
    with pytest.raises(NotFound):
        agents.report("hv2", server_id, "stopped", None)
    with pytest.raises(BadRequest):
        agents.report("hv1", server_id, "exploded", None)
    assert _row(db, server_id).task_state == "powering-off"
    agents.report("hv1", server_id, "stopped", None)
    assert (_row(db, server_id).vm_state, _row(db, server_id).power_state) == ("stopped", 4)


def test_a_delete_ends_when_the_guest_is_gone(
    db: Database, agents: HostAgents, forgotten: Forgotten, core: ComputeCore
) -> None:
    server_id = add_server(db, vm_state="active", task_state="deleting")
    _on(db, server_id, "hv1", "delete")
    _beat(db, "hv1", core.now())
    assert agents.hand_over(server_id, local_delete=True)
    assert forgotten.ids == []  # the host is up: its agent removes the guest first
    assert agents.assignments("hv1")[1][0]["desired"] == "absent"
    agents.report("hv1", server_id, "absent", None)
    assert forgotten.ids == [server_id]
    assert agents.assignments("hv1")[1] == []


def test_a_delete_on_a_host_not_heard_from_ends_at_once(
    db: Database, agents: HostAgents, forgotten: Forgotten, core: ComputeCore
) -> None:
    server_id = add_server(db, vm_state="active", task_state="deleting")
    _on(db, server_id, "hv2", "delete")
    _beat(db, "hv2", core.now() - dt.timedelta(seconds=120))
    assert agents.hand_over(server_id, local_delete=True)
    assert forgotten.ids == [server_id]
    assert _open_actions(db, server_id) == []


def test_a_server_on_the_local_host_is_not_handed_over(db: Database, agents: HostAgents) -> None:
    server_id = add_server(db, vm_state="active", task_state=None)
    _on(db, server_id, "this-machine")
    assert not agents.hand_over(server_id)


def test_host_status_follows_the_heartbeat(db: Database, core: ComputeCore, agents: Any) -> None:
    now = core.now()
    with db.session() as s:
        assert host_states(s, {"hv1"}, now, 60, 300) == {"hv1": "UNKNOWN"}  # never heard
    for age, status in ((5, "UP"), (61, "UNKNOWN"), (301, "DOWN")):
        _beat(db, "hv1", now - dt.timedelta(seconds=age))
        with db.session() as s:
            assert host_states(s, {"hv1", "local"}, now, 60, 300) == {
                "hv1": status,
                "local": "UP",
            }


@pytest.mark.parametrize(
    ("vm_state", "task_state", "power", "want"),
    [
        ("building", "spawning", 0, "running"),
        ("active", None, 1, "running"),
        ("active", "powering-off", 1, "stopped"),
        ("stopped", "powering-on", 4, "running"),
        ("stopped", None, 4, "stopped"),
        ("active", "deleting", 1, "absent"),
        ("error", None, 1, "running"),
        ("error", None, 4, "stopped"),
        ("active", "pausing", 1, "paused"),
        ("paused", None, 3, "paused"),
        ("paused", "unpausing", 3, "running"),
        ("active", "suspending", 1, "suspended"),
        ("suspended", None, 7, "suspended"),
        ("suspended", "resuming", 7, "running"),
        ("active", "reboot_started", 1, "running"),
        ("stopped", "reboot_started_hard", 4, "running"),
    ],
)
def test_what_a_host_is_asked_to_make_of_a_server(
    vm_state: str, task_state: str | None, power: int, want: str
) -> None:
    row = Server(vm_state=vm_state, task_state=task_state, power_state=power, deleted=False)
    assert desired(row) == want


@pytest.mark.parametrize(
    ("task", "hard"), [("reboot_started", False), ("reboot_started_hard", True)]
)
def test_a_reboot_ends_only_on_the_report_of_that_reboot(
    db: Database, agents: HostAgents, task: str, hard: bool
) -> None:
    server_id = add_server(db, vm_state="active", task_state=None)
    _on(db, server_id, "hv1", "reboot")
    with db.session() as s:
        row = s.get(Server, server_id)
        assert row is not None
        row.task_state = task
        action_id = s.query(InstanceAction.id).filter_by(server_id=server_id).scalar()
    assert agents.hand_over(server_id)
    (assignment,) = agents.assignments("hv1")[1]
    assert assignment["desired"] == "running"
    assert assignment["reboot"] == {"hard": hard, "action": action_id}
    # a guest found running before the reboot (no action, or another one) answers nothing
    agents.report("hv1", server_id, "running", None)
    agents.report("hv1", server_id, "running", None, action_id + 1)
    assert _row(db, server_id).task_state == task
    assert _open_actions(db, server_id) == ["reboot"]
    agents.report("hv1", server_id, "running", None, action_id)
    row = _row(db, server_id)
    assert (row.vm_state, row.task_state, row.power_state) == ("active", None, 1)
    assert _open_actions(db, server_id) == []
    assert "reboot" not in agents.assignments("hv1")[1][0]


def test_a_failed_reboot_is_the_servers_fault(db: Database, agents: HostAgents) -> None:
    server_id = add_server(db, vm_state="active", task_state=None)
    _on(db, server_id, "hv1", "reboot")
    with db.session() as s:
        row = s.get(Server, server_id)
        assert row is not None
        row.task_state = "reboot_started_hard"
    agents.report("hv1", server_id, "error", "QEMU would not start")
    row = _row(db, server_id)
    assert (row.vm_state, row.task_state) == ("error", None)
    assert _open_actions(db, server_id) == []
