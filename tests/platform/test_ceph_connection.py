"""The storing services' shared Ceph connection (souverain.common.ceph) against a real
cluster: connect lazily, read and write through an I/O context, and tell "the cluster
cannot now" (503) from a missing object or a bug."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from souverain.common import ceph as ceph_
from souverain.config import Settings
from tests.ceph import CephCluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Ceph daemons run as root here")


def _connection(cluster: CephCluster) -> ceph_.CephConnection:
    settings = Settings.model_validate({"ceph": cluster.settings()})
    conn = ceph_.connection_from(settings)
    assert conn is not None
    return conn


def test_no_conf_file_no_connection() -> None:
    assert ceph_.connection_from(Settings()) is None


def test_reads_and_writes_through_a_pool(ceph: CephCluster) -> None:
    if "conn-test" not in ceph.pools():
        ceph.make_pool("conn-test")
    conn = _connection(ceph)
    try:
        with conn.ioctx("conn-test") as ctx:
            ctx.write_full("hello", b"bytes in RADOS")
            assert ctx.read("hello") == b"bytes in RADOS"
            ctx.remove_object("hello")
        assert conn.rados() is conn.rados()  # one handle per process
        rados = ceph_.bindings("rados")
        with pytest.raises(rados.ObjectNotFound), conn.ioctx("conn-test") as ctx:
            ctx.read("never-written")  # a missing object is not an outage
    finally:
        conn.close()


def test_unknown_pool_is_not_an_outage(ceph: CephCluster) -> None:
    conn = _connection(ceph)
    rados = ceph_.bindings("rados")
    try:
        with pytest.raises(rados.ObjectNotFound), conn.ioctx("no-such-pool"):
            pass
    finally:
        conn.close()


def test_a_missing_conf_file_says_what_to_do(tmp_path: Path) -> None:
    conn = ceph_.CephConnection(ceph_.CephAccess(conf=tmp_path / "ceph.conf"))
    with pytest.raises(RuntimeError, match=r"point it at the cluster's ceph\.conf"):
        conn.rados()


def test_an_unreachable_cluster_is_503(tmp_path: Path) -> None:
    conf = tmp_path / "ceph.conf"
    conf.write_text("[global]\nmon host = v2:127.0.0.1:9\nauth client required = none\n")
    conn = ceph_.CephConnection(ceph_.CephAccess(conf=conf, connect_timeout=1))
    with pytest.raises(ceph_.StorageUnavailable) as caught:
        conn.rados()
    assert caught.value.status == 503 and caught.value.headers["Retry-After"]


def test_timeouts_are_unavailable_other_errors_are_not() -> None:
    rados = ceph_.bindings("rados")
    rbd = ceph_.bindings("rbd")
    assert ceph_.is_unavailable(rados.TimedOut("op timed out", errno.ETIMEDOUT))
    assert ceph_.is_unavailable(rados.ConnectionShutdown("gone"))
    assert ceph_.is_unavailable(rbd.Timeout("slow", errno.ETIMEDOUT))
    assert not ceph_.is_unavailable(rados.ObjectNotFound("nope", errno.ENOENT))
    assert not ceph_.is_unavailable(rbd.ImageNotFound("nope", errno.ENOENT))
    assert not ceph_.is_unavailable(TimeoutError("not Ceph's"))
    with pytest.raises(ceph_.StorageUnavailable), ceph_.translated():
        raise rados.TimedOut("op timed out", errno.ETIMEDOUT)
    with pytest.raises(KeyError), ceph_.translated():
        raise KeyError("a bug stays a bug")


def test_bindings_names_only_ceph() -> None:
    with pytest.raises(ValueError):
        ceph_.bindings("os")


def test_every_service_shares_one_handle_per_cluster(ceph: CephCluster) -> None:
    settings = Settings.model_validate({"ceph": ceph.settings()})
    assert ceph_.connection_from(settings) is ceph_.connection_from(settings)
    assert ceph_.required_connection(settings, "x") is ceph_.connection_from(settings)
    other = Settings.model_validate({"ceph": {**ceph.settings(), "user": "someone-else"}})
    assert ceph_.connection_from(other) is not ceph_.connection_from(settings)


def test_a_backend_without_a_cluster_says_what_to_set() -> None:
    with pytest.raises(RuntimeError, match=r'volume\.backend = "rbd" needs the Ceph cluster'):
        ceph_.required_connection(Settings(), 'volume.backend = "rbd"')
