"""The per-process Ceph cluster (`ceph` fixture, tests/ceph.py) the storage suites share:
started on first use, the same for every test of a module, and gone without a trace when
stopped (at the end of the module)."""

from __future__ import annotations

import contextlib
import os

import pytest

import tests.ceph
from tests.ceph import (
    CephCluster,
    ceph,
    ceph_session,
    leftover_daemons,
    shared_cluster,
    stop_shared_cluster,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Ceph daemons run as root here")

seen: list[CephCluster] = []


def test_first_use_starts_it(ceph: CephCluster) -> None:
    seen.append(ceph)
    assert ceph.status()["health"]["status"] == "HEALTH_OK"
    assert len(ceph.daemons) == 5


def test_later_tests_get_the_same_cluster(ceph: CephCluster) -> None:
    assert seen in ([], [ceph])  # `-k` may run this one alone
    assert shared_cluster() is ceph
    assert all(daemon.alive() for daemon in ceph.daemons.values())


def test_stopping_it_leaves_no_daemon_and_no_directory(
    ceph: CephCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process-wide cluster of its own: the module's shared one serves the tests after it.
    monkeypatch.setattr(tests.ceph, "_shared", [])
    monkeypatch.setattr(tests.ceph, "_clusters", contextlib.ExitStack())
    cluster = shared_cluster()
    assert cluster is not ceph
    stop_shared_cluster()
    assert leftover_daemons(cluster.root) == []
    assert not cluster.root.exists()
    assert not any(daemon.alive() for daemon in cluster.daemons.values())
    assert all(daemon.alive() for daemon in ceph.daemons.values())


__all__ = ["ceph", "ceph_session"]
