"""A build whose API node died before handing it to a host (placed or not) ends in ERROR
once it is old enough, by a compare-and-set, and lets go of its claim: a build handed
over, or a younger one, is never touched."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from souverain.common.clock import Clock
from souverain.compute.core import ComputeCore
from souverain.compute.guests import Guests
from souverain.compute.models import Server
from souverain.compute.qemu import QemuDriver
from souverain.compute.reconcile import CUT_SHORT_BUILD, HostSync, end_orphaned_builds
from souverain.config import ComputeSettings
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from tests.server_rows import add_server


@pytest.fixture
def core(tmp_path: Path) -> Iterator[ComputeCore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    none = cast(Any, None)
    core = ComputeCore(
        Database(engine), none, none, none, QemuDriver(tmp_path / "q"), Clock(), ComputeSettings()
    )
    yield core
    core.close()
    engine.dispose()


def _aged(core: ComputeCore, server_id: str, seconds: float, host: str | None = None) -> None:
    with core.db.session() as s:
        row = s.get(Server, server_id)
        assert row is not None
        row.updated_at = core.now() - dt.timedelta(seconds=seconds)
        row.host = host


def test_only_old_unplaced_builds_end(core: ComputeCore) -> None:
    old = add_server(core.db, vm_state="building", task_state="scheduling")
    young = add_server(core.db, vm_state="building", task_state="scheduling")
    placed = add_server(core.db, vm_state="building", task_state="spawning")
    claimed = add_server(core.db, vm_state="building", task_state="scheduling")
    _aged(core, old, 400)
    _aged(core, young, 10)
    _aged(core, placed, 400, host="hv1")
    _aged(core, claimed, 400, host="hv1")
    assert sorted(end_orphaned_builds(core, 300)) == sorted([old, claimed])
    with core.db.session() as s:
        rows = {sid: s.get(Server, sid) for sid in (old, young, placed, claimed)}
        for sid in (old, claimed):
            ended = rows[sid]
            assert ended is not None and (ended.vm_state, ended.task_state) == ("error", None)
            assert ended.fault is not None and ended.fault["message"] == CUT_SHORT_BUILD
            assert ended.host is None
        for sid in (young, placed):
            row = rows[sid]
            assert row is not None and row.vm_state == "building"
    assert end_orphaned_builds(core, 300) == []  # done once


def test_a_nodes_start_leaves_a_young_unplaced_build_and_ends_an_old_one(
    core: ComputeCore,
) -> None:
    """With several API nodes, one node's start-up reconcile must not end a build another
    live node is placing: only one older than `orphaned_build_after` is cut short."""
    young = add_server(core.db, vm_state="building", task_state="scheduling")
    old = add_server(core.db, vm_state="building", task_state="scheduling")
    _aged(core, young, 10)
    _aged(core, old, core.settings.orphaned_build_after + 100)
    HostSync(core, Guests(core)).reconcile()
    with core.db.session() as s:
        kept, ended = s.get(Server, young), s.get(Server, old)
        assert kept is not None and (kept.vm_state, kept.task_state) == ("building", "scheduling")
        assert ended is not None and (ended.vm_state, ended.task_state) == ("error", None)
        assert ended.fault is not None and ended.fault["message"] == CUT_SHORT_BUILD
