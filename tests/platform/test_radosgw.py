"""The radosgw reference the Ceph S3 bench compares against (tests/radosgw.py) starts on a
test cluster and stores and returns an object for its user."""

from __future__ import annotations

import os

import pytest

from tests.ceph import CephCluster
from tests.platform.rados_s3 import s3_client
from tests.radosgw import radosgw_gateway

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Ceph daemons run as root here")


def test_radosgw_starts_and_round_trips_an_object(ceph: CephCluster) -> None:
    with radosgw_gateway(ceph) as gateway:
        s3 = s3_client(gateway.url, gateway.access_key, gateway.secret_key)
        s3.create_bucket(Bucket="reference")
        s3.put_object(Bucket="reference", Key="k", Body=b"stored by radosgw")
        assert s3.get_object(Bucket="reference", Key="k")["Body"].read() == b"stored by radosgw"
    assert gateway.proc.poll() is not None
