"""Every billable change lands on the meter: rows in `billing_events`, in-process.

Volumes, snapshots, floating IPs, routers, images and objects run on one shared
platform; S3 requests are signed with botocore's SigV4 and sent to the platform's
S3 app. The `instance` gauge needs a real guest, so it has its own platform.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from souverain import server
from souverain.billing.models import MeterEvent
from souverain.common.clock import Clock
from souverain.common.metering import gib
from tests.vm.guest_support import build_tiny_image, missing_requirements

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, S3, Cloud, Member, SteppingClock, TestClient, settings_for


def events(cloud: Cloud, metric: str, resource_id: str) -> list[tuple[str, str, Decimal, str]]:
    """(project, kind, value, flavor) of one resource's events, oldest first."""
    with cloud.platform.db.session() as s:
        rows = s.scalars(
            select(MeterEvent)
            .where(MeterEvent.metric == metric, MeterEvent.resource_id == resource_id)
            .order_by(MeterEvent.id)
        ).all()
        return [(r.project_id, r.kind, Decimal(r.value), r.flavor) for r in rows]


def gauges(cloud: Cloud, metric: str, resource_id: str) -> list[Decimal]:
    return [v for _, kind, v, _ in events(cloud, metric, resource_id) if kind == "gauge"]


def ok(response: Any, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


class Api:
    """One project member's calls to the OpenStack services, by service path."""

    def __init__(self, cloud: Cloud, member: Member) -> None:
        self.client = cloud.client
        self.member = member
        self.headers = {**member.headers, "OpenStack-API-Version": "volume 3.70"}

    def call(self, method: str, path: str, status: int, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        return ok(self.client.request(method, path, headers=headers, **kw), status)


@pytest.fixture(scope="module")
def cloud(database_backend: str) -> Iterator[Cloud]:
    root = Path(tempfile.mkdtemp(prefix="souverain-meter-", dir=_fast_tmp_root()))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings_for(root / "data"), clock=Clock(SteppingClock().now))
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                yield Cloud(client, built)
        finally:
            built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_volume_gauge_follows_create_extend_and_delete(cloud: Cloud) -> None:
    alice = cloud.member()
    api = Api(cloud, alice)
    volume = api.call("POST", "/volume/v3/volumes", 202, json={"volume": {"size": 1}})["volume"]
    vid = volume["id"]
    api.call("POST", f"/volume/v3/volumes/{vid}/action", 202, json={"os-extend": {"new_size": 2}})
    api.call("DELETE", f"/volume/v3/volumes/{vid}", 202)
    assert gauges(cloud, "volume.gb", vid) == [1, 2, 0]
    assert {p for p, *_ in events(cloud, "volume.gb", vid)} == {alice.project_id}


def test_snapshot_gauge_follows_create_and_delete(cloud: Cloud) -> None:
    api = Api(cloud, cloud.member())
    vid = api.call("POST", "/volume/v3/volumes", 202, json={"volume": {"size": 1}})["volume"]["id"]
    snap = api.call("POST", "/volume/v3/snapshots", 202, json={"snapshot": {"volume_id": vid}})
    sid = snap["snapshot"]["id"]
    api.call("DELETE", f"/volume/v3/snapshots/{sid}", 202)
    api.call("DELETE", f"/volume/v3/volumes/{vid}", 202)
    assert gauges(cloud, "snapshot.gb", sid) == [1, 0]


def test_floating_ip_and_router_are_one_while_they_exist(cloud: Cloud) -> None:
    bob = cloud.member()
    api = Api(cloud, bob)
    nets = api.call("GET", "/network/v2.0/networks?name=public", 200)["networks"]
    public = nets[0]["id"]
    fip = api.call(
        "POST",
        "/network/v2.0/floatingips",
        201,
        json={"floatingip": {"floating_network_id": public}},
    )["floatingip"]
    router = api.call("POST", "/network/v2.0/routers", 201, json={"router": {"name": "r"}})
    rid = router["router"]["id"]
    api.call("DELETE", f"/network/v2.0/floatingips/{fip['id']}", 204)
    api.call("DELETE", f"/network/v2.0/routers/{rid}", 204)
    assert events(cloud, "floatingip", fip["id"]) == [
        (bob.project_id, "gauge", 1, ""),
        (bob.project_id, "gauge", 0, ""),
    ]
    assert events(cloud, "router", rid) == [
        (bob.project_id, "gauge", 1, ""),
        (bob.project_id, "gauge", 0, ""),
    ]


def test_image_gauge_is_its_bytes_once_uploaded_and_zero_when_deleted(cloud: Cloud) -> None:
    carol = cloud.member()
    api = Api(cloud, carol)
    image = api.call(
        "POST",
        "/image/v2/images",
        201,
        json={"name": "raw", "disk_format": "raw", "container_format": "bare"},
    )
    data = b"x" * 4096
    api.call(
        "PUT",
        f"/image/v2/images/{image['id']}/file",
        204,
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    api.call("DELETE", f"/image/v2/images/{image['id']}", 204)
    assert events(cloud, "image.gb", image["id"]) == [
        (carol.project_id, "gauge", gib(len(data)), ""),
        (carol.project_id, "gauge", 0, ""),
    ]


def test_object_gauge_follows_the_bucket_bytes_and_get_counts_egress(cloud: Cloud) -> None:
    dave = cloud.member()
    s3 = S3(cloud, dave)
    flush = cloud.platform.objectstore.flush_meter
    bucket = f"meter-{dave.project_id[:8]}"
    assert s3.send("PUT", f"/{bucket}").status_code == 200
    assert s3.send("PUT", f"/{bucket}/a", b"a" * 1000).status_code == 200
    flush()
    assert s3.send("PUT", f"/{bucket}/b", b"b" * 500).status_code == 200
    flush()
    whole = s3.send("GET", f"/{bucket}/a")
    assert whole.status_code == 200 and len(whole.content) == 1000
    part = s3.send("GET", f"/{bucket}/b", Range="bytes=0-99")
    assert part.status_code == 206 and len(part.content) == 100
    assert s3.send("DELETE", f"/{bucket}/a").status_code == 204
    flush()
    assert s3.send("DELETE", f"/{bucket}/b").status_code == 204
    flush()
    assert gauges(cloud, "object.gb", bucket) == [gib(1000), gib(1500), gib(500), 0]
    egress = [(p, v) for p, kind, v, _ in events(cloud, "egress.gb", bucket) if kind == "counter"]
    # the two GETs of one interval and one hour are one counter event
    assert egress == [(dave.project_id, gib(1100))]


def test_changes_within_one_interval_are_one_gauge_of_the_final_size(cloud: Cloud) -> None:
    """The request path writes no meter event: a flush per interval writes one per bucket."""
    erin = cloud.member()
    s3 = S3(cloud, erin)
    bucket = f"burst-{erin.project_id[:8]}"
    assert s3.send("PUT", f"/{bucket}").status_code == 200
    for i in range(20):
        assert s3.send("PUT", f"/{bucket}/k{i}", b"x" * (i + 1)).status_code == 200
    for i in range(5):
        assert s3.send("GET", f"/{bucket}/k{i}").status_code == 200
    assert s3.send("DELETE", f"/{bucket}/k0").status_code == 204
    assert events(cloud, "object.gb", bucket) == []  # nothing written before the flush
    assert events(cloud, "egress.gb", bucket) == []
    cloud.platform.objectstore.flush_meter()
    stored = sum(range(2, 21))
    assert gauges(cloud, "object.gb", bucket) == [gib(stored)]
    assert events(cloud, "egress.gb", bucket) == [
        (erin.project_id, "counter", gib(sum(range(1, 6))), "")
    ]
    assert cloud.platform.objectstore.flush_meter() == 0  # nothing new: nothing written


def test_a_multipart_upload_in_progress_is_billed_until_aborted(cloud: Cloud) -> None:
    frank = cloud.member()
    s3 = S3(cloud, frank)
    bucket = f"parts-{frank.project_id[:8]}"
    assert s3.send("PUT", f"/{bucket}").status_code == 200
    started = s3.send("POST", f"/{bucket}/big?uploads")
    upload_id = started.text.split("<UploadId>")[1].split("</UploadId>")[0]
    part = s3.send("PUT", f"/{bucket}/big?partNumber=1&uploadId={upload_id}", b"p" * 3000)
    assert part.status_code == 200
    cloud.platform.objectstore.flush_meter()
    assert s3.send("DELETE", f"/{bucket}/big?uploadId={upload_id}").status_code == 204
    cloud.platform.objectstore.flush_meter()
    assert gauges(cloud, "object.gb", bucket) == [gib(3000), 0]


def test_start_up_regauges_a_bucket_whose_last_gauge_a_crash_lost(cloud: Cloud) -> None:
    grace = cloud.member()
    s3 = S3(cloud, grace)
    bucket = f"lost-{grace.project_id[:8]}"
    store = cloud.platform.objectstore
    assert s3.send("PUT", f"/{bucket}").status_code == 200
    assert s3.send("PUT", f"/{bucket}/a", b"a" * 700).status_code == 200
    store.pending.take()  # what a SIGKILL before the flush loses
    last = cloud.platform.billing.last_gauges("object.gb")
    assert store.reconcile_meter(last) >= 1
    assert gauges(cloud, "object.gb", bucket) == [gib(700)]
    # once the meter agrees, a start changes nothing for this bucket
    store.reconcile_meter(cloud.platform.billing.last_gauges("object.gb"))
    assert gauges(cloud, "object.gb", bucket) == [gib(700)]


def test_each_project_is_metered_under_its_own_id(cloud: Cloud) -> None:
    erin, frank = cloud.member(), cloud.member()
    made = {}
    for member in (erin, frank):
        volume = Api(cloud, member).call(
            "POST", "/volume/v3/volumes", 202, json={"volume": {"size": 1}}
        )
        made[member.project_id] = volume["volume"]["id"]
    for project_id, vid in made.items():
        assert [p for p, *_ in events(cloud, "volume.gb", vid)] == [project_id]


# ---------------------------------------------------------------------- a real guest


@pytest.fixture(scope="module")
def guest_cloud(database_backend: str) -> Iterator[Cloud]:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"the instance gauge needs a real guest: {reason}")
    root = Path(tempfile.mkdtemp(prefix="souverain-meter-vm-", dir=_fast_tmp_root()))
    settings = settings_for(root / "data")
    settings.image.tiny_image = build_tiny_image()
    settings.server.max_body_bytes = 1024 * 1024
    settings.compute.shutdown_timeout = 15
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings, clock=Clock(SteppingClock().now))
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                yield Cloud(client, built)
        finally:
            built.close()
    finally:
        from tests.host_cleanup import kill_guests

        kill_guests(root / "data")
        shutil.rmtree(root, ignore_errors=True)


def _server_status(api: Api, server_id: str) -> tuple[str, str | None] | None:
    response = api.client.get(f"/compute/v2.1/servers/{server_id}", headers=api.headers)
    if response.status_code == 404:
        return None
    body = response.json()["server"]
    return body["status"], body["OS-EXT-STS:task_state"]


def _wait(api: Api, server_id: str, status: str | None, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        now = _server_status(api, server_id)
        if (now is None and status is None) or (now is not None and now == (status, None)):
            return
        assert now is None or now[0] != "ERROR", now
        assert time.monotonic() < deadline, f"{server_id} never became {status}: {now}"
        time.sleep(0.2)


def test_instance_gauge_is_one_with_its_flavor_only_while_running(guest_cloud: Cloud) -> None:
    cloud = guest_cloud
    api = Api(cloud, cloud.member())
    images = api.call("GET", "/image/v2/images?name=tiny", 200)["images"]
    body = {"name": "m", "imageRef": images[0]["id"], "flavorRef": "1", "networks": "none"}
    created = api.call(
        "POST",
        "/compute/v2.1/servers",
        202,
        json={"server": body},
        headers={"OpenStack-API-Version": "compute 2.37"},
    )
    sid = created["server"]["id"]
    _wait(api, sid, "ACTIVE")
    api.call("POST", f"/compute/v2.1/servers/{sid}/action", 202, json={"os-stop": None})
    _wait(api, sid, "SHUTOFF")
    api.call("POST", f"/compute/v2.1/servers/{sid}/action", 202, json={"os-start": None})
    _wait(api, sid, "ACTIVE")
    api.call("DELETE", f"/compute/v2.1/servers/{sid}", 204)
    _wait(api, sid, None)
    project = api.member.project_id
    assert events(cloud, "instance", sid) == [
        (project, "gauge", 1, "t1.nano"),
        (project, "gauge", 0, ""),
        (project, "gauge", 1, "t1.nano"),
        (project, "gauge", 0, ""),
    ]
