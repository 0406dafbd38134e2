"""The per-process Ceph cluster (`ceph` fixture, tests/ceph.py) the storage suites share:
started once on first use, the same for every test of the process, and gone without a
trace when stopped."""

from __future__ import annotations

import os

import pytest

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


def test_stopping_it_leaves_no_daemon_and_no_directory(ceph: CephCluster) -> None:
    cluster = ceph
    stop_shared_cluster()
    assert leftover_daemons(cluster.root) == []
    assert not cluster.root.exists()
    assert not any(daemon.alive() for daemon in cluster.daemons.values())


__all__ = ["ceph", "ceph_session"]
