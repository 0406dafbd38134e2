"""Quotas through each service's own API, and enforced atomically, in-process.

Compute and volume speak `os-quota-sets`, the network service `/v2.0/quotas`,
object storage is limited by the operator (`souverain quota s3`). The concurrency
tests are the issue's own words: 50 concurrent creates against a quota of 10
succeed exactly 10 times. Servers are real QEMU guests (TCG, the tiny image).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from souverain import server
from souverain.cli import app as cli_app
from souverain.common.clock import Clock
from tests.host_cleanup import kill_guests
from tests.vm.guest_support import build_tiny_image, missing_requirements

from .conftest import _fast_tmp_root
from .support import (
    ADMIN_PASSWORD,
    S3,
    Cloud,
    Member,
    SteppingClock,
    TestClient,
    cli_env,
    settings_for,
)

BASE = "http://testserver"
CONCURRENT = 50
QUOTA = 10
KIB = 1024


@pytest.fixture(scope="module")
def data_dir(database_backend: str) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="souverain-quota-", dir=_fast_tmp_root()))
    try:
        yield root / "data"
    finally:
        kill_guests(root / "data")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cloud(data_dir: Path) -> Iterator[Cloud]:
    settings = settings_for(data_dir)
    if missing_requirements() is None:
        settings.image.tiny_image = build_tiny_image()
    settings.compute.host_disk_gib = 1000  # ten 1 GiB root disks fit whatever /dev/shm holds
    settings.compute.shutdown_timeout = 5
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
        built = server.prepare(settings, clock=Clock(SteppingClock().now))
    try:
        with TestClient(built.app, base_url=BASE) as client:
            yield Cloud(client, built)
    finally:
        built.close()


def call(cloud: Cloud, token: str, method: str, path: str, body: Any = None, **h: str) -> Any:
    headers = {"X-Auth-Token": token, **h}
    if body is None:
        return cloud.client.request(method, path, headers=headers)
    return cloud.client.request(method, path, headers=headers, json=body)


def fault(response: Any, status: int) -> str:
    """The status and an OpenStack `{name: {"code", "message"}}` body; the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert len(body) == 1, body
    inner = next(iter(body.values()))
    assert inner["code"] == status, body
    message: str = inner["message"]
    return message


def all_at_once(work: Callable[[int], Any], count: int = CONCURRENT) -> list[Any]:
    """Run `work(i)` in `count` threads released together; their results, in order."""
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        results[index] = work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


# ---------------------------------------------------------------------- compute


def nova(cloud: Cloud, token: str, method: str, path: str, body: Any = None, v: str = "2.1") -> Any:
    return call(
        cloud,
        token,
        method,
        "/compute/v2.1" + path,
        body,
        **{"OpenStack-API-Version": f"compute {v}"},
    )


def test_compute_quota_set_shapes_defaults_and_detail(cloud: Cloud) -> None:
    alice = cloud.member()
    pid = alice.project_id
    shown = nova(cloud, alice.token, "GET", f"/os-quota-sets/{pid}")
    assert shown.status_code == 200, shown.text
    quota = shown.json()["quota_set"]
    assert quota["id"] == pid
    assert {k: quota[k] for k in ("instances", "cores", "ram", "key_pairs", "metadata_items")} == {
        "instances": 10,
        "cores": 20,
        "ram": 51200,
        "key_pairs": 100,
        "metadata_items": 128,
    }
    assert quota["injected_files"] == 5 and quota["floating_ips"] == 10  # 2.1 shows them
    latest = nova(cloud, alice.token, "GET", f"/os-quota-sets/{pid}", v="2.57").json()
    assert "floating_ips" not in latest["quota_set"]
    assert "injected_files" not in latest["quota_set"]
    defaults = nova(cloud, alice.token, "GET", f"/os-quota-sets/{pid}/defaults").json()
    assert defaults["quota_set"]["instances"] == 10
    nova(cloud, alice.token, "POST", "/os-keypairs", {"keypair": {"name": "k"}})
    detail = nova(cloud, alice.token, "GET", f"/os-quota-sets/{pid}/detail").json()["quota_set"]
    assert detail["instances"] == {"in_use": 0, "limit": 10, "reserved": 0}
    assert detail["key_pairs"] == {"in_use": 1, "limit": 100, "reserved": 0}


def test_compute_quota_update_is_admin_only_and_limits_follow(cloud: Cloud) -> None:
    alice = cloud.member()
    pid = alice.project_id
    body = {"quota_set": {"instances": 7, "cores": -1, "force": True}}
    assert "compute:quota:update" in fault(
        nova(cloud, alice.token, "PUT", f"/os-quota-sets/{pid}", body), 403
    )
    updated = nova(cloud, cloud.admin_token, "PUT", f"/os-quota-sets/{pid}", body)
    assert updated.status_code == 200, updated.text
    assert updated.json()["quota_set"]["instances"] == 7
    assert updated.json()["quota_set"]["cores"] == -1
    absolute = nova(cloud, alice.token, "GET", "/limits").json()["limits"]["absolute"]
    assert absolute["maxTotalInstances"] == 7 and absolute["maxTotalCores"] == -1
    assert (
        nova(cloud, alice.token, "GET", f"/os-quota-sets/{pid}").json()["quota_set"]["instances"]
        == 7
    )
    fault(nova(cloud, alice.token, "DELETE", f"/os-quota-sets/{pid}"), 403)
    assert nova(cloud, cloud.admin_token, "DELETE", f"/os-quota-sets/{pid}").status_code == 202
    absolute = nova(cloud, alice.token, "GET", "/limits").json()["limits"]["absolute"]
    assert absolute["maxTotalInstances"] == 10 and absolute["maxTotalCores"] == 20


@pytest.mark.parametrize(
    "quota_set",
    [
        {"instances": -2},
        {"instances": "ten"},
        {"instances": True},
        {"instances": 2**40},
        {"bogus": 1},
        {"fixed_ips": 1},
        {},
    ],
)
def test_compute_quota_hostile_input_is_400_and_changes_nothing(
    cloud: Cloud, quota_set: dict[str, Any]
) -> None:
    alice = cloud.member()
    pid = alice.project_id
    fault(
        nova(cloud, cloud.admin_token, "PUT", f"/os-quota-sets/{pid}", {"quota_set": quota_set}),
        400,
    )
    assert (
        nova(cloud, alice.token, "GET", f"/os-quota-sets/{pid}").json()["quota_set"]["instances"]
        == 10
    )


def test_member_cannot_read_another_projects_compute_quota(cloud: Cloud) -> None:
    alice, bob = cloud.member(), cloud.member()
    fault(nova(cloud, alice.token, "GET", f"/os-quota-sets/{bob.project_id}"), 403)
    fault(nova(cloud, alice.token, "GET", f"/os-quota-sets/{bob.project_id}/detail"), 403)
    body = {"quota_set": {"instances": 0}}
    fault(nova(cloud, alice.token, "PUT", f"/os-quota-sets/{bob.project_id}", body), 403)
    quota = nova(cloud, bob.token, "GET", f"/os-quota-sets/{bob.project_id}").json()
    assert quota["quota_set"]["instances"] == 10


def test_metadata_and_key_pair_quotas_are_enforced(cloud: Cloud) -> None:
    alice = cloud.member()
    pid = alice.project_id
    body = {"quota_set": {"key_pairs": 1, "metadata_items": 1}}
    assert nova(cloud, cloud.admin_token, "PUT", f"/os-quota-sets/{pid}", body).status_code == 200
    made = nova(cloud, alice.token, "POST", "/os-keypairs", {"keypair": {"name": "one"}})
    assert made.status_code == 200, made.text
    refused = nova(cloud, alice.token, "POST", "/os-keypairs", {"keypair": {"name": "two"}})
    assert "key pairs" in fault(refused, 403)
    if cloud.platform.settings.image.tiny_image is None:
        pytest.skip(f"the metadata quota is checked after the image: {missing_requirements()}")
    images = cloud.client.get("/image/v2/images?name=tiny", headers=alice.headers).json()
    server = {"name": "s", "imageRef": images["images"][0]["id"], "flavorRef": "1"}
    server |= {"networks": "none", "metadata": {"a": "1", "b": "2"}}
    refused = nova(cloud, alice.token, "POST", "/servers", {"server": server}, v="2.37")
    assert fault(refused, 403) == "Maximum number of metadata items exceeds 1"
    listed = nova(cloud, alice.token, "GET", "/servers").json()["servers"]
    assert listed == []  # refused before any server was made


def test_fifty_concurrent_server_creates_against_a_quota_of_ten(cloud: Cloud) -> None:
    if cloud.platform.settings.image.tiny_image is None:
        pytest.skip(f"server creates need real guests: {missing_requirements()}")
    alice = cloud.member()
    pid = alice.project_id
    body = {"quota_set": {"instances": QUOTA}}
    assert nova(cloud, cloud.admin_token, "PUT", f"/os-quota-sets/{pid}", body).status_code == 200
    images = cloud.client.get("/image/v2/images?name=tiny", headers=alice.headers).json()
    image_id = images["images"][0]["id"]
    request = {"server": {"name": "q", "imageRef": image_id, "flavorRef": "1", "networks": "none"}}

    def create(_: int) -> Any:
        return nova(cloud, alice.token, "POST", "/servers", request, v="2.37")

    responses = all_at_once(create)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] * QUOTA + [403] * (CONCURRENT - QUOTA), statuses
    refused = next(r for r in responses if r.status_code == 403)
    assert fault(refused, 403) == (
        f"Quota exceeded for instances: Requested 1, but already used {QUOTA} of {QUOTA} instances"
    )
    ids = [r.json()["server"]["id"] for r in responses if r.status_code == 202]
    detail = nova(cloud, alice.token, "GET", f"/os-quota-sets/{pid}/detail").json()["quota_set"]
    assert detail["instances"]["in_use"] == QUOTA
    try:
        # usage is released when a server goes: one more create fits again
        assert nova(cloud, alice.token, "DELETE", f"/servers/{ids[0]}").status_code == 204
        wait_for(
            lambda: nova(cloud, alice.token, "GET", f"/servers/{ids[0]}").status_code == 404,
            "the first server to go",
        )
        again = create(0)
        assert again.status_code == 202, again.text
        ids[0] = again.json()["server"]["id"]
    finally:
        for server_id in ids:
            nova(cloud, alice.token, "DELETE", f"/servers/{server_id}")
        for server_id in ids:
            wait_for(
                lambda sid=server_id: (
                    nova(cloud, alice.token, "GET", f"/servers/{sid}").status_code == 404
                ),
                f"{server_id} to go",
            )
    absolute = nova(cloud, alice.token, "GET", "/limits").json()["limits"]["absolute"]
    assert absolute["totalInstancesUsed"] == 0


# ---------------------------------------------------------------------- volume


def cinder(cloud: Cloud, token: str, method: str, path: str, body: Any = None) -> Any:
    return call(
        cloud, token, method, "/volume/v3" + path, body, **{"OpenStack-API-Version": "volume 3.70"}
    )


def test_volume_quota_set_shapes_and_admin_rules(cloud: Cloud) -> None:
    alice, bob = cloud.member(), cloud.member()
    pid = alice.project_id
    quota = cinder(cloud, alice.token, "GET", f"/os-quota-sets/{pid}").json()["quota_set"]
    assert quota["id"] == pid
    assert (quota["volumes"], quota["gigabytes"], quota["snapshots"]) == (10, 1000, 10)
    usage = cinder(cloud, alice.token, "GET", f"/os-quota-sets/{pid}?usage=True").json()
    assert usage["quota_set"]["volumes"] == {
        "in_use": 0,
        "limit": 10,
        "reserved": 0,
        "allocated": 0,
    }
    defaults = cinder(cloud, alice.token, "GET", f"/os-quota-sets/{pid}/defaults").json()
    assert defaults["quota_set"]["gigabytes"] == 1000
    body = {"quota_set": {"volumes": 3}}
    fault(cinder(cloud, alice.token, "PUT", f"/os-quota-sets/{pid}", body), 403)
    fault(cinder(cloud, alice.token, "GET", f"/os-quota-sets/{bob.project_id}"), 403)
    for hostile in ({"volumes": -2}, {"volumes": "many"}, {"nonsense": 1}):
        fault(
            cinder(
                cloud, cloud.admin_token, "PUT", f"/os-quota-sets/{pid}", {"quota_set": hostile}
            ),
            400,
        )
    assert cinder(cloud, cloud.admin_token, "PUT", f"/os-quota-sets/{pid}", body).status_code == 200
    limits = cinder(cloud, alice.token, "GET", "/limits").json()["limits"]["absolute"]
    assert limits["maxTotalVolumes"] == 3
    fault(cinder(cloud, alice.token, "DELETE", f"/os-quota-sets/{pid}"), 403)
    assert cinder(cloud, cloud.admin_token, "DELETE", f"/os-quota-sets/{pid}").status_code == 200
    quota = cinder(cloud, alice.token, "GET", f"/os-quota-sets/{pid}").json()["quota_set"]
    assert quota["volumes"] == 10


def test_fifty_concurrent_volume_creates_against_a_quota_of_ten(cloud: Cloud) -> None:
    alice = cloud.member()
    pid = alice.project_id
    body = {"quota_set": {"volumes": QUOTA}}
    assert cinder(cloud, cloud.admin_token, "PUT", f"/os-quota-sets/{pid}", body).status_code == 200

    def create(_: int) -> Any:
        return cinder(cloud, alice.token, "POST", "/volumes", {"volume": {"size": 1}})

    responses = all_at_once(create)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] * QUOTA + [413] * (CONCURRENT - QUOTA), statuses
    assert len(cinder(cloud, alice.token, "GET", "/volumes").json()["volumes"]) == QUOTA
    ids = [r.json()["volume"]["id"] for r in responses if r.status_code == 202]
    wait_for(
        lambda: (
            cinder(cloud, alice.token, "GET", f"/volumes/{ids[0]}").json()["volume"]["status"]
            == "available"
        ),
        "the volume to be available",
    )
    assert cinder(cloud, alice.token, "DELETE", f"/volumes/{ids[0]}").status_code == 202
    wait_for(
        lambda: cinder(cloud, alice.token, "GET", f"/volumes/{ids[0]}").status_code == 404,
        "the volume to go",
    )
    assert create(0).status_code == 202


# ---------------------------------------------------------------------- network


def test_fifty_concurrent_port_creates_against_a_quota_of_ten(cloud: Cloud) -> None:
    alice = cloud.member()
    pid = alice.project_id
    net = call(cloud, alice.token, "POST", "/network/v2.0/networks", {"network": {"name": "q"}})
    assert net.status_code == 201, net.text
    network_id = net.json()["network"]["id"]
    subnet = {"subnet": {"network_id": network_id, "cidr": "10.9.0.0/24", "ip_version": 4}}
    assert call(cloud, alice.token, "POST", "/network/v2.0/subnets", subnet).status_code == 201
    quota = {"quota": {"port": QUOTA}}
    denied = call(cloud, alice.token, "PUT", f"/network/v2.0/quotas/{pid}", quota)
    assert denied.status_code == 403, denied.text
    set_ = call(cloud, cloud.admin_token, "PUT", f"/network/v2.0/quotas/{pid}", quota)
    assert set_.status_code == 200, set_.text
    details = call(cloud, alice.token, "GET", f"/network/v2.0/quotas/{pid}/details").json()
    assert details["quota"]["port"]["used"] == 0

    def create(_: int) -> Any:
        port = {"port": {"network_id": network_id}}
        return call(cloud, alice.token, "POST", "/network/v2.0/ports", port)

    responses = all_at_once(create)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * QUOTA + [409] * (CONCURRENT - QUOTA), statuses
    ids = [r.json()["port"]["id"] for r in responses if r.status_code == 201]
    assert call(cloud, alice.token, "DELETE", f"/network/v2.0/ports/{ids[0]}").status_code == 204
    assert create(0).status_code == 201
    assert create(0).status_code == 409


# ---------------------------------------------------------------------- object storage


def s3_quota(data_dir: Path, *args: str) -> str:
    """`souverain quota s3 ...` against the platform's data dir, as an operator runs it."""
    result = CliRunner().invoke(
        cli_app, ["quota", "s3", *args, "--data-dir", str(data_dir)], env=cli_env(data_dir)
    )
    assert result.exit_code == 0, result.output
    return result.output


def s3_member(cloud: Cloud) -> tuple[Member, S3, str]:
    member = cloud.member()
    s3 = S3(cloud, member)
    bucket = cloud.unique("quota").replace("-", "")
    made = s3.send("PUT", f"/{bucket}")
    assert made.status_code == 200, made.text
    return member, s3, bucket


def quota_exceeded(response: Any) -> None:
    assert response.status_code == 403, response.text
    assert "<Code>QuotaExceeded</Code>" in response.text


def test_s3_quota_command_shows_and_sets(cloud: Cloud, data_dir: Path) -> None:
    member, _, _ = s3_member(cloud)
    pid = member.project_id
    assert s3_quota(data_dir, "--project", pid) == (
        "bytes: unlimited (default)\nobjects: unlimited (default)\n"
    )
    assert "bytes: 5 (project)" in s3_quota(data_dir, "--project", pid, "--bytes", "5")
    assert "objects: 7 (project)" in s3_quota(data_dir, "--project", pid, "--objects", "7")
    shown = s3_quota(data_dir, "--project", pid, "--reset")
    assert shown == "bytes: unlimited (default)\nobjects: unlimited (default)\n"
    refused = CliRunner().invoke(
        cli_app,
        ["quota", "s3", "--project", pid, "--bytes", "-2", "--data-dir", str(data_dir)],
        env=cli_env(data_dir),
    )
    assert refused.exit_code == 2


def test_fifty_concurrent_puts_against_a_byte_quota_of_ten_objects(
    cloud: Cloud, data_dir: Path
) -> None:
    member, s3, bucket = s3_member(cloud)
    s3_quota(data_dir, "--project", member.project_id, "--bytes", str(QUOTA * KIB))
    body = b"x" * KIB

    responses = all_at_once(lambda i: s3.send("PUT", f"/{bucket}/k{i:02d}", body))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * QUOTA + [403] * (CONCURRENT - QUOTA), statuses
    refused = next(r for r in responses if r.status_code == 403)
    quota_exceeded(refused)
    assert f"{QUOTA * KIB} bytes" in refused.text
    stored = [f"k{i:02d}" for i, r in enumerate(responses) if r.status_code == 200]
    for i, response in enumerate(responses):
        if response.status_code == 403:
            assert s3.send("HEAD", f"/{bucket}/k{i:02d}").status_code == 404
    assert cloud.platform.objectstore.usage(member.project_id) == (QUOTA * KIB, QUOTA)
    # replacing an object counts the difference: the same size fits, one byte more does not
    assert s3.send("PUT", f"/{bucket}/{stored[0]}", body).status_code == 200
    quota_exceeded(s3.send("PUT", f"/{bucket}/{stored[0]}", body + b"!"))
    # a copy is a write too
    copy = s3.send("PUT", f"/{bucket}/copy", b"", **{"x-amz-copy-source": f"/{bucket}/{stored[1]}"})
    quota_exceeded(copy)
    # a delete releases its bytes
    assert s3.send("DELETE", f"/{bucket}/{stored[1]}").status_code == 204
    assert s3.send("PUT", f"/{bucket}/again", body).status_code == 200
    quota_exceeded(s3.send("PUT", f"/{bucket}/one-too-many", body))


def test_fifty_concurrent_puts_against_an_object_quota_of_ten(cloud: Cloud, data_dir: Path) -> None:
    member, s3, bucket = s3_member(cloud)
    s3_quota(data_dir, "--project", member.project_id, "--objects", str(QUOTA))

    responses = all_at_once(lambda i: s3.send("PUT", f"/{bucket}/o{i:02d}", b"tiny"))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * QUOTA + [403] * (CONCURRENT - QUOTA), statuses
    quota_exceeded(next(r for r in responses if r.status_code == 403))
    assert cloud.platform.objectstore.usage(member.project_id)[1] == QUOTA
    stored = [f"o{i:02d}" for i, r in enumerate(responses) if r.status_code == 200]
    assert s3.send("PUT", f"/{bucket}/{stored[0]}", b"replaced").status_code == 200
    assert s3.send("DELETE", f"/{bucket}/{stored[1]}").status_code == 204
    assert s3.send("PUT", f"/{bucket}/new", b"fits").status_code == 200
    quota_exceeded(s3.send("PUT", f"/{bucket}/newer", b"does not"))


def test_multipart_parts_in_progress_are_held_to_the_quota(cloud: Cloud, data_dir: Path) -> None:
    """Parts use disk before any object exists: they count, and pass no limit either."""
    member, s3, bucket = s3_member(cloud)
    s3_quota(data_dir, "--project", member.project_id, "--bytes", "100")
    started = s3.send("POST", f"/{bucket}/big?uploads")
    assert started.status_code == 200, started.text
    upload_id = started.text.split("<UploadId>")[1].split("</UploadId>")[0]
    quota_exceeded(s3.send("PUT", f"/{bucket}/big?partNumber=1&uploadId={upload_id}", b"y" * 200))
    part = s3.send("PUT", f"/{bucket}/big?partNumber=1&uploadId={upload_id}", b"y" * 60)
    assert part.status_code == 200, part.text
    assert cloud.platform.objectstore.usage(member.project_id) == (60, 0)
    # a second part would bring the parts to 120 bytes
    quota_exceeded(s3.send("PUT", f"/{bucket}/big?partNumber=2&uploadId={upload_id}", b"z" * 60))
    quota_exceeded(s3.send("PUT", f"/{bucket}/small", b"s" * 41))
    etag = part.headers["etag"]
    xml = (
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        f"<ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    ).encode()
    assert s3.send("POST", f"/{bucket}/big?uploadId={upload_id}", xml).status_code == 200
    assert cloud.platform.objectstore.usage(member.project_id) == (60, 1)
    assert s3.send("HEAD", f"/{bucket}/big").headers["content-length"] == "60"


def test_multipart_completion_is_held_to_the_object_quota(cloud: Cloud, data_dir: Path) -> None:
    member, s3, bucket = s3_member(cloud)
    s3_quota(data_dir, "--project", member.project_id, "--objects", "1")
    assert s3.send("PUT", f"/{bucket}/first", b"1").status_code == 200
    started = s3.send("POST", f"/{bucket}/big?uploads")
    upload_id = started.text.split("<UploadId>")[1].split("</UploadId>")[0]
    part = s3.send("PUT", f"/{bucket}/big?partNumber=1&uploadId={upload_id}", b"y" * 20)
    assert part.status_code == 200, part.text
    xml = (
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        f"<ETag>{part.headers['etag']}</ETag></Part></CompleteMultipartUpload>"
    ).encode()
    quota_exceeded(s3.send("POST", f"/{bucket}/big?uploadId={upload_id}", xml))
    assert s3.send("HEAD", f"/{bucket}/big").status_code == 404
    assert s3.send("DELETE", f"/{bucket}/big?uploadId={upload_id}").status_code == 204
    assert cloud.platform.objectstore.usage(member.project_id) == (1, 1)
