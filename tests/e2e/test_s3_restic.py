"""restic, a backup tool customers point at S3, on a bucket with Object Lock: the packs it
writes are kept by default retention, so neither boto3 nor `restic forget --prune`
can take them away.

restic runs as a subprocess with only its own settings in the environment.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CLI_TIMEOUT, REGION, Cloud, Tenant, child_env
from tests.e2e.s3_support import new_bucket, s3_error

pytestmark = pytest.mark.e2e

RESTIC = shutil.which("restic") or "restic"  # scripts/system-packages.txt installs it
PASSWORD = "restic-repository-Pa55word"


@pytest.fixture(scope="module")
def owner(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3restic")


@pytest.fixture(scope="module")
def s3(cloud: Cloud, owner: Tenant) -> Any:
    return cloud.s3(owner)


def restic(
    cloud: Cloud, owner: Tenant, repo: str, cache: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    access, secret = cloud.ec2_credentials(owner)
    env = {k: v for k, v in child_env().items() if not k.startswith(("AWS_", "RESTIC_"))}
    env.update(
        AWS_ACCESS_KEY_ID=access,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION=REGION,
        RESTIC_PASSWORD=PASSWORD,
        RESTIC_CACHE_DIR=str(cache),
    )
    return subprocess.run(
        [RESTIC, "-r", repo, "-o", f"s3.region={REGION}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_restic_backups_on_a_locked_bucket_survive_deletes_and_prune(
    cloud: Cloud, owner: Tenant, s3: Any, tmp_path: Path
) -> None:
    assert shutil.which("restic"), "restic is missing: make system-packages installs it"
    bucket = new_bucket(s3, "restic", ObjectLockEnabledForBucket=True)
    rule = {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}
    s3.put_object_lock_configuration(
        Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
    )
    repo = f"s3:{cloud.s3_url}/{bucket}"
    source = tmp_path / "source"
    source.mkdir()
    (source / "ledger.csv").write_bytes(b"date,amount\n" + b"2026-12-06,42\n" * 20_000)
    (source / "notes.txt").write_text("what ransomware would like to encrypt\n")
    cache = tmp_path / "cache"

    ok(restic(cloud, owner, repo, cache, "init"))
    ok(restic(cloud, owner, repo, cache, "backup", str(source)))
    ok(restic(cloud, owner, repo, cache, "check"))

    versions = s3.list_object_versions(Bucket=bucket, Prefix="data/")["Versions"]
    packs = [(v["Key"], v["VersionId"]) for v in versions]
    assert packs, "restic wrote no pack"
    for key, version in packs:
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert s3_error(s3.delete_object, Bucket=bucket, Key=key, VersionId=version) == (
            "AccessDenied",
            403,
        )

    # forget the snapshot and prune: restic deletes the packs it no longer needs, which on
    # a versioned bucket only stacks delete markers; the locked versions stay readable
    snapshots = json.loads(ok(restic(cloud, owner, repo, cache, "snapshots", "--json")))
    assert len(snapshots) == 1
    pruned = ok(restic(cloud, owner, repo, cache, "forget", snapshots[0]["id"], "--prune"))
    assert "remove" in pruned.lower(), pruned
    markers = s3.list_object_versions(Bucket=bucket, Prefix="data/").get("DeleteMarkers", [])
    assert {m["Key"] for m in markers} == {key for key, _ in packs}
    for key, version in packs:
        body = s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
        assert (
            len(body) == s3.head_object(Bucket=bucket, Key=key, VersionId=version)["ContentLength"]
        )
    after = s3.list_object_versions(Bucket=bucket, Prefix="data/")
    assert {(v["Key"], v["VersionId"]) for v in after["Versions"]} >= set(packs)
