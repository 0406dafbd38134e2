"""The object store's promise under failure: acknowledged means stored, and never half an object.

The server is killed with SIGKILL while boto3 clients upload, then restarted on the same data
dir: every PUT it acknowledged must read back byte for byte, every object it shows must be
whole, and the start-up sweep must leave no stray file. A full disk must turn into a clear
InsufficientStorage error that stores nothing and breaks nothing else.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.e2e.conftest import REGION, Cloud, CloudFactory, Tenant, run_souverain, unique
from tests.host_cleanup import kill_guests

pytestmark = pytest.mark.e2e

KIB = 1024
MIB = 1024 * KIB
PART = 5 * MIB  # the server's default smallest part (but the last)
INLINE_MAX = 4 * KIB  # objects up to this size live in the database row, not in a blob
# From empty to a few MiB: inline in the database, a small blob, and large blobs.
SIZES = (0, 1, 7, 100, 4 * KIB, 64 * KIB + 3, MIB, MIB + 1, 3 * MIB + 7)
PUT_THREADS = 4
OVERWRITTEN_KEYS = 3
# When to kill, in seconds after the traffic is under way: early, middle and late.
KILL_WINDOWS = ((0.05, 0.4), (0.5, 1.2), (1.2, 2.5))
JOIN_TIMEOUT = 30.0
SIZED_KEY = re.compile(r"/\d+-(\d+)$")  # `<n>-<size>`: written once with content(key, size)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def content(key: str, size: int, generation: int = 0) -> bytes:
    """The bytes a key is written with: derived from its name, so any copy can be checked."""
    return random.Random(f"{key}|{generation}").randbytes(size)


def versioned_content(key: str, generation: int, size: int) -> bytes:
    """Self-describing bytes for a key written again and again: `generation size\\n` first."""
    header = f"{generation} {size}\n".encode()
    return header + content(key, size - len(header), generation)


def generation_of(key: str, body: bytes) -> int:
    """The generation a body was written as; AssertionError if it is not whole."""
    header, _, _rest = body.partition(b"\n")
    generation, size = (int(n) for n in header.split())
    assert body == versioned_content(key, generation, size), f"{key}: torn or foreign bytes"
    return generation


def client_for(url: str, access: str, secret: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=REGION,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},  # a retry would blur which attempt was acknowledged
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=PUT_THREADS + 4,
        ),
    )


@dataclass
class Traffic:
    """Uploads in several threads until the server dies, remembering what it acknowledged."""

    client: Any
    bucket: str
    prefix: str
    rng: random.Random
    killing: threading.Event = field(default_factory=threading.Event)
    held_upload: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, str] = field(default_factory=dict)  # key -> md5 of what was sent
    acked_generation: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        workers: list[Callable[[], None]] = [
            *(lambda n=n: self._puts(n) for n in range(PUT_THREADS)),
            self._overwrites,
            self._multipart,
        ]
        for work in workers:
            thread = threading.Thread(target=self._guard, args=(work,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive(), "an upload thread hung after the server died"

    def _guard(self, work: Callable[[], None]) -> None:
        """A client error once the kill is under way is expected; anything else is a failure."""
        try:
            work()
        except Exception as exc:
            expected = isinstance(exc, BotoCoreError | ClientError) and self.killing.is_set()
            if not expected:
                with self.lock:
                    self.unexpected.append(repr(exc))

    def _ack(self, key: str, data: bytes, etag: str) -> None:
        assert etag.strip('"') == md5(data) or "-" in etag, f"{key}: ETag {etag}"
        with self.lock:
            self.acked[key] = md5(data)

    def _puts(self, thread: int) -> None:
        rng = random.Random(self.rng.random())
        n = 0
        while not self.killing.is_set():
            size = rng.choice(SIZES)
            key = f"{self.prefix}/put{thread}/{n}-{size}"
            data = content(key, size)
            reply = self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
            self._ack(key, data, reply["ETag"])
            n += 1

    def _overwrites(self) -> None:
        """The same few keys over and over: each PUT replaces a blob the sweep must not miss."""
        rng = random.Random(self.rng.random())
        generation = 0
        while not self.killing.is_set():
            key = f"{self.prefix}/overwritten/{rng.randrange(OVERWRITTEN_KEYS)}"
            data = versioned_content(key, generation, rng.choice((100, 5000, MIB + 9)))
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
            with self.lock:
                self.acked_generation[key] = generation
            generation += 1

    def _multipart(self) -> None:
        """One upload left open with a part in it, then complete uploads back to back."""
        held = f"{self.prefix}/held-open"
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=held)
        self.client.upload_part(
            Bucket=self.bucket,
            Key=held,
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=content(held, PART),
        )
        self.held_upload.set()
        n = 0
        while not self.killing.is_set():
            sizes = (PART, PART, 123_457)
            key = f"{self.prefix}/multipart/{n}-{sum(sizes)}"
            data = content(key, sum(sizes))
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            parts, offset = [], 0
            for number, size in enumerate(sizes, start=1):
                reply = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data[offset : offset + size],
                )
                parts.append({"PartNumber": number, "ETag": reply["ETag"]})
                offset += size
            reply = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            self._ack(key, data, reply["ETag"])
            n += 1


def restart(cloud: Cloud) -> Cloud:
    """The same server on the same data dir, started again; its ports are new."""
    auth_url = cloud.server.start()
    return Cloud(cloud.server, auth_url, cloud.workdir, secrets=cloud.secrets)


def blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "objects" / "blobs").glob("*/*")]


def tmp_files(data_dir: Path) -> list[Path]:
    return list((data_dir / "objects" / "tmp").iterdir())


def listed_objects(client: Any, bucket: str) -> list[dict[str, Any]]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item for page in pages for item in page.get("Contents", [])]


def open_uploads(client: Any, bucket: str) -> list[tuple[str, str, int]]:
    """(key, upload id, parts stored) for every upload neither completed nor aborted."""
    found = []
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        parts = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        found.append((upload["Key"], upload["UploadId"], len(parts.get("Parts", []))))
    return found


def read_whole(client: Any, bucket: str, item: dict[str, Any]) -> bytes:
    """An object's bytes, after checking they are all there and hash to its ETag."""
    key, etag = item["Key"], item["ETag"].strip('"')
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(body) == item["Size"], f"{key}: listed {item['Size']} bytes, read {len(body)}"
    if "-" not in etag:
        assert md5(body) == etag, f"{key}: ETag {etag} but the bytes hash to {md5(body)}"
        return body
    count, offset, part_md5s = int(etag.rsplit("-", 1)[1]), 0, []
    for number in range(1, count + 1):
        size = client.head_object(Bucket=bucket, Key=key, PartNumber=number)["ContentLength"]
        part_md5s.append(hashlib.md5(body[offset : offset + size], usedforsecurity=False))
        offset += size
    joined = md5(b"".join(h.digest() for h in part_md5s))
    assert offset == len(body) and f"{joined}-{count}" == etag, f"{key}: parts miss ETag {etag}"
    return body


def blobs_expected(objects: list[dict[str, Any]], uploads: list[tuple[str, str, int]]) -> int:
    """One blob per single PUT above the inline size, one per part of a multipart object."""
    total = sum(parts for _key, _id, parts in uploads)
    for item in objects:
        etag = item["ETag"].strip('"')
        if "-" in etag:
            total += int(etag.rsplit("-", 1)[1])
        elif item["Size"] > INLINE_MAX:
            total += 1
    return total


def check_object(key: str, body: bytes, acked: dict[str, str], generations: dict[str, int]) -> None:
    """The bytes are exactly what some PUT of this key sent, and no older than acknowledged."""
    if key in acked:
        assert md5(body) == acked[key], f"{key}: not the acknowledged bytes"
    sized = SIZED_KEY.search(key)
    if sized is not None:
        assert body == content(key, int(sized[1])), f"{key}: not the bytes that were sent"
    elif "/overwritten/" in key:
        generation = generation_of(key, body)
        assert generation >= generations.get(key, 0), f"{key}: older than acknowledged"
    else:
        raise AssertionError(f"{key}: an object nobody completed")


def check_store(
    client: Any,
    bucket: str,
    data_dir: Path,
    acked: dict[str, str],
    generations: dict[str, int],
    read_back: bool = True,
) -> list[tuple[str, str, int]]:
    """Everything acknowledged is there and whole, nothing torn is shown, no file is stray."""
    objects = listed_objects(client, bucket)
    listed = {item["Key"] for item in objects}
    lost = sorted((set(acked) | set(generations)) - listed)
    assert not lost, f"acknowledged but gone after the crash: {lost}"
    if read_back:
        for item in objects:
            check_object(item["Key"], read_whole(client, bucket, item), acked, generations)
    assert tmp_files(data_dir) == [], "leftovers in objects/tmp after the start-up sweep"
    uploads = open_uploads(client, bucket)
    blobs = blob_files(data_dir)
    assert len(blobs) == blobs_expected(objects, uploads), (
        f"{len(blobs)} blob files for {len(objects)} objects and uploads {uploads}"
    )
    return uploads


def test_acknowledged_uploads_survive_kill_9_and_nothing_torn_or_stray_remains(
    start_cloud: CloudFactory,
) -> None:
    cloud = start_cloud("s3crash", SOUVERAIN_OBJECTSTORE__INLINE_MAX_BYTES=str(INLINE_MAX))
    tenant: Tenant = cloud.make_tenant("crash")
    access, secret = cloud.ec2_credentials(tenant)
    client = client_for(cloud.s3_url, access, secret)
    bucket = unique("crash")
    client.create_bucket(Bucket=bucket)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    acked: dict[str, str] = {}
    generations: dict[str, int] = {}
    open_before: set[str] = set()
    for round_number, (earliest, latest) in enumerate(KILL_WINDOWS):
        traffic = Traffic(client, bucket, f"round{round_number}", random.Random(rng.random()))
        traffic.start()
        assert traffic.held_upload.wait(JOIN_TIMEOUT), f"no upload opened: {traffic.unexpected}"
        delay = rng.uniform(earliest, latest)
        time.sleep(delay)
        assert not traffic.unexpected, traffic.unexpected
        traffic.killing.set()
        assert cloud.server.proc is not None
        cloud.server.proc.kill()
        cloud.server.proc.wait()
        traffic.join()
        assert not traffic.unexpected, traffic.unexpected
        acked.update(traffic.acked)
        generations.update(traffic.acked_generation)

        cloud = restart(cloud)
        client = client_for(cloud.s3_url, access, secret)
        where = f"(seed {seed}, round {round_number}, killed after {delay:.2f}s)"
        try:
            uploads = check_store(client, bucket, cloud.data_dir, acked, generations)
        except AssertionError as exc:
            raise AssertionError(f"{exc} {where}") from None
        held = {key for key, _id, parts in uploads if key.endswith("/held-open") and parts == 1}
        assert f"round{round_number}/held-open" in held, f"open upload lost {where}"
        assert open_before <= {key for key, _id, _parts in uploads}, where
        open_before = {key for key, _id, _parts in uploads}

    # Open uploads can still be aborted after the crashes, and their parts then go.
    for key, upload_id, _parts in open_uploads(client, bucket):
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert check_store(client, bucket, cloud.data_dir, acked, generations, read_back=False) == []
    cloud.stop_and_check()


# ---------------------------------------------------------------------- a full disk


@pytest.fixture
def tiny_objects_disk(tmp_path: Path) -> Iterator[Path]:
    """A cloud root whose `data/objects` is a 4 MiB tmpfs; the database lives beside it."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to put a 4 MiB tmpfs under the object store")
    objects = tmp_path / "data" / "objects"
    objects.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(objects)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"needs root to mount a tmpfs (mount failed: {mounted.stderr.strip()})")
    try:
        yield tmp_path
    finally:
        subprocess.run(["umount", "-l", str(objects)], check=False)


def test_full_disk_refuses_the_upload_with_insufficient_storage_and_breaks_nothing(
    tiny_objects_disk: Path,
) -> None:
    cloud = Cloud.start(tiny_objects_disk)
    try:
        tenant = cloud.make_tenant("diskfull")
        client = cloud.s3(tenant)
        bucket = unique("full")
        client.create_bucket(Bucket=bucket)
        kept = os.urandom(MIB)
        client.put_object(Bucket=bucket, Key="kept", Body=kept)
        client.put_object(Bucket=bucket, Key="filler", Body=os.urandom(MIB))

        with pytest.raises(ClientError) as refused:
            client.put_object(Bucket=bucket, Key="too-big", Body=os.urandom(6 * MIB))
        error = refused.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 507, error
        assert error["Error"]["Code"] == "InsufficientStorage", error
        assert "disk space" in error["Error"]["Message"], error

        assert tmp_files(cloud.data_dir) == [], "a refused upload left bytes behind"
        assert len(blob_files(cloud.data_dir)) == 2
        names = [o["Key"] for o in listed_objects(client, bucket)]
        assert names == ["filler", "kept"]
        assert client.get_object(Bucket=bucket, Key="kept")["Body"].read() == kept

        # A part is refused the same way, and its upload stays usable.
        upload_id = client.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
        with pytest.raises(ClientError) as part_refused:
            client.upload_part(
                Bucket=bucket,
                Key="parts",
                UploadId=upload_id,
                PartNumber=1,
                Body=os.urandom(6 * MIB),
            )
        assert part_refused.value.response["Error"]["Code"] == "InsufficientStorage"
        assert tmp_files(cloud.data_dir) == []
        client.abort_multipart_upload(Bucket=bucket, Key="parts", UploadId=upload_id)

        client.delete_object(Bucket=bucket, Key="filler")
        small = os.urandom(300 * KIB)
        client.put_object(Bucket=bucket, Key="small", Body=small)
        assert client.get_object(Bucket=bucket, Key="small")["Body"].read() == small
        assert client.get_object(Bucket=bucket, Key="kept")["Body"].read() == kept
        assert len(blob_files(cloud.data_dir)) == 2
    finally:
        try:
            cloud.stop_and_check()
        finally:
            kill_guests(cloud.data_dir)  # its bridge and tables outlive it by design


# ---------------------------------------------------------------------- running totals


def churn(client: Any, bucket: str, label: str, killing: threading.Event) -> None:
    """PUT, overwrite, DELETE (a marker), delete of a version, in a versioned bucket."""
    n = 0
    while not killing.is_set():
        key = f"{label}/{n % 7}"
        client.put_object(Bucket=bucket, Key=key, Body=os.urandom(random.choice(SIZES)))
        if n % 3 == 0:
            client.delete_object(Bucket=bucket, Key=key)
        if n % 5 == 0:
            listed = client.list_object_versions(Bucket=bucket, Prefix=key)
            for version in listed.get("Versions", [])[-1:]:
                client.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
        n += 1


def uploads(client: Any, bucket: str, label: str, killing: threading.Event) -> None:
    """Multipart uploads completed and aborted in turn, with a part sent twice."""
    n = 0
    while not killing.is_set():
        key = f"{label}/{n}"
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for number, size in ((1, PART), (1, PART), (2, 4321)):
            reply = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=b"u" * size
            )
            parts = [p for p in parts if p["PartNumber"] != number]
            parts.append({"PartNumber": number, "ETag": reply["ETag"]})
        if n % 2:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        else:
            client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        n += 1


def test_usage_totals_agree_with_a_recount_after_kill_9_in_every_kind_of_write(
    start_cloud: CloudFactory,
) -> None:
    """The totals change in the transaction of the write: a crash anywhere leaves both or
    neither, so `souverain s3 recount` agrees after every SIGKILL."""
    cloud = start_cloud("s3usage", SOUVERAIN_OBJECTSTORE__INLINE_MAX_BYTES=str(INLINE_MAX))
    access, secret = cloud.ec2_credentials(cloud.make_tenant("usage"))
    client = client_for(cloud.s3_url, access, secret)
    plain, versioned = unique("plain"), unique("versioned")
    for bucket in (plain, versioned):
        client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Enabled"})
    rng = random.Random()
    for round_number, (earliest, latest) in enumerate(KILL_WINDOWS):
        killing = threading.Event()
        traffic = Traffic(client, plain, f"usage{round_number}", random.Random(rng.random()))
        traffic.killing = killing
        work = [
            functools.partial(churn, client, versioned, "churn-a", killing),
            functools.partial(churn, client, versioned, "churn-b", killing),
            functools.partial(uploads, client, versioned, "mp", killing),
            functools.partial(uploads, client, plain, "mp", killing),
        ]
        traffic.start()
        for each in work:
            thread = threading.Thread(target=traffic._guard, args=(each,), daemon=True)
            thread.start()
            traffic.threads.append(thread)
        time.sleep(rng.uniform(earliest, latest) + 1.0)
        assert not traffic.unexpected, traffic.unexpected
        killing.set()
        assert cloud.server.proc is not None
        cloud.server.proc.kill()
        cloud.server.proc.wait()
        traffic.join()
        assert not traffic.unexpected, traffic.unexpected

        checked = run_souverain("s3", "recount", "--data-dir", str(cloud.data_dir))
        assert checked.returncode == 0, f"round {round_number}: {checked.stdout}{checked.stderr}"
        assert "2 bucket(s) recounted, 0 disagreed" in checked.stdout, checked.stdout
        cloud = restart(cloud)
        client = client_for(cloud.s3_url, access, secret)
    cloud.stop_and_check()
