"""The object store driven by the command-line clients customers script with: `aws` and rclone.

Each client runs as a subprocess with a configuration of its own (empty files, keys in the
environment), so nothing on the machine running the tests takes part. boto3 only sets up and
checks what the CLIs did; it is never the client under test here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import BIN, CLI_TIMEOUT, REGION, Cloud, child_env, unique

pytestmark = pytest.mark.e2e

AWS = str(BIN / "aws")
RCLONE_REMOTE = "souverain"
MIB = 1024 * 1024


@dataclass
class S3Account:
    """One tenant's view of the object store: its EC2 keys, the endpoint, a boto3 client."""

    access: str
    secret: str
    url: str
    boto: Any
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A child environment that holds only our settings of AWS and rclone."""
        base = {
            k: v for k, v in child_env().items() if not k.startswith(("AWS_", "RCLONE_", "BOTO_"))
        }
        base.update(HOME=str(self.home), **extra)
        return base

    def aws(self, *args: str) -> subprocess.CompletedProcess[str]:
        config = self.home / "aws-config"
        credentials = self.home / "aws-credentials"
        env = self.env(
            AWS_ACCESS_KEY_ID=self.access,
            AWS_SECRET_ACCESS_KEY=self.secret,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=str(config),
            AWS_SHARED_CREDENTIALS_FILE=str(credentials),
            AWS_EC2_METADATA_DISABLED="true",
        )
        return subprocess.run(
            [AWS, "--endpoint-url", self.url, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def aws_ok(self, *args: str) -> str:
        result = self.aws(*args)
        assert result.returncode == 0, f"aws {' '.join(args)}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def aws_json(self, *args: str) -> Any:
        return json.loads(self.aws_ok(*args, "--output", "json"))

    def rclone(self, *args: str) -> subprocess.CompletedProcess[str]:
        prefix = f"RCLONE_CONFIG_{RCLONE_REMOTE.upper()}_"
        env = self.env(
            **{
                f"{prefix}TYPE": "s3",
                f"{prefix}PROVIDER": "Other",
                f"{prefix}ACCESS_KEY_ID": self.access,
                f"{prefix}SECRET_ACCESS_KEY": self.secret,
                f"{prefix}ENDPOINT": self.url,
                f"{prefix}REGION": REGION,
                # Multipart from 5 MiB up, so a modest file takes rclone's multipart path too.
                f"{prefix}UPLOAD_CUTOFF": "5M",
                f"{prefix}CHUNK_SIZE": "5M",
            }
        )
        rclone = shutil.which("rclone")
        assert rclone is not None
        return subprocess.run(
            [rclone, "--config", str(self.home / "rclone.conf"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def rclone_ok(self, *args: str) -> str:
        result = self.rclone(*args)
        assert result.returncode == 0, f"rclone {' '.join(args)}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def new_bucket(self, label: str) -> str:
        name = unique(label)
        self.boto.create_bucket(Bucket=name)
        return name

    def remote_tree(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """Every key under the prefix (prefix removed) and the md5 of its bytes, read back."""
        found: dict[str, str] = {}
        for page in self.boto.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                body = self.boto.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                found[item["Key"][len(prefix) :]] = md5(body)
        return found


@pytest.fixture(scope="module")
def account(cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> S3Account:
    tenant = cloud.make_tenant("s3cli")
    access, secret = cloud.ec2_credentials(tenant)
    home = tmp_path_factory.mktemp("s3cli-home")
    # Empty on purpose, but for path-style addressing: the endpoint has no bucket subdomains.
    (home / "aws-config").write_text("[default]\ns3 =\n    addressing_style = path\n")
    (home / "aws-credentials").write_text("")
    (home / "rclone.conf").write_text("")
    return S3Account(access, secret, cloud.s3_url, cloud.s3(tenant), home)


@pytest.fixture(scope="module")
def rclone_installed() -> Iterator[None]:
    if shutil.which("rclone") is None:
        pytest.skip(
            "rclone is not installed (Debian package `rclone`, in scripts/system-packages.txt)"
        )
    yield


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def local_tree(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): md5(path.read_bytes())
        for path in root.rglob("*")
        if path.is_file()
    }


def sample_tree() -> dict[str, bytes]:
    """Nested directories, an empty file, a name with a space and one with unicode."""
    return {
        "readme.txt": b"hello from the command line\n",
        "empty": b"",
        "docs/guide.md": b"# Guide\n" * 200,
        "docs/images/logo.bin": os.urandom(70_000),
        "docs/images/deep/er/still.txt": b"nested five levels down",
        "data/rapport annuel.csv": b"a,b\n1,2\n",
        "data/été.txt": "données accentuées".encode(),
    }


# ---------------------------------------------------------------------- aws s3


def test_aws_s3_mb_cp_ls_rm_rb_round_trip_small_and_multipart_files(
    account: S3Account, tmp_path: Path
) -> None:
    bucket = unique("awscp")
    small = os.urandom(1234)
    large = os.urandom(20 * MIB + 17)  # over the CLI's 8 MiB threshold: a multipart upload
    (tmp_path / "small.bin").write_bytes(small)
    (tmp_path / "large.bin").write_bytes(large)

    assert f"make_bucket: {bucket}" in account.aws_ok("s3", "mb", f"s3://{bucket}")
    account.aws_ok("s3", "cp", str(tmp_path / "small.bin"), f"s3://{bucket}/small.bin")
    account.aws_ok("s3", "cp", str(tmp_path / "large.bin"), f"s3://{bucket}/dir/large.bin")

    head = account.boto.head_object(Bucket=bucket, Key="dir/large.bin")
    assert head["ContentLength"] == len(large)
    assert head["ETag"].strip('"').endswith(f"-{-(-len(large) // (8 * MIB))}"), head["ETag"]
    buckets = account.aws_ok("s3", "ls")
    assert bucket in buckets.split()

    top = account.aws_ok("s3", "ls", f"s3://{bucket}/")
    assert "PRE dir/" in top
    assert "small.bin" in top and "large.bin" not in top
    recursive = account.aws_ok("s3", "ls", "--recursive", f"s3://{bucket}")
    listed = {line.split()[-1]: int(line.split()[-2]) for line in recursive.splitlines()}
    assert listed == {"small.bin": len(small), "dir/large.bin": len(large)}

    down = tmp_path / "down"
    account.aws_ok("s3", "cp", f"s3://{bucket}/small.bin", str(down / "small.bin"))
    account.aws_ok("s3", "cp", f"s3://{bucket}/dir/large.bin", str(down / "large.bin"))
    assert (down / "small.bin").read_bytes() == small
    assert md5((down / "large.bin").read_bytes()) == md5(large)

    failed = account.aws("s3", "rb", f"s3://{bucket}")
    assert failed.returncode != 0 and "BucketNotEmpty" in failed.stderr, failed.stderr
    removed = account.aws_ok("s3", "rm", "--recursive", f"s3://{bucket}")
    assert removed.count("delete: ") == 2, removed
    assert account.aws_ok("s3", "ls", "--recursive", f"s3://{bucket}") == ""
    assert f"remove_bucket: {bucket}" in account.aws_ok("s3", "rb", f"s3://{bucket}")
    assert bucket not in account.aws_ok("s3", "ls").split()


def test_aws_s3_sync_uploads_a_tree_then_mirrors_changes_and_deletions(
    account: S3Account, tmp_path: Path
) -> None:
    bucket = account.new_bucket("awssync")
    src = tmp_path / "src"
    files = sample_tree()
    write_tree(src, files)

    account.aws_ok("s3", "sync", str(src), f"s3://{bucket}/backup")
    assert account.remote_tree(bucket, "backup/") == local_tree(src)

    (src / "docs/guide.md").write_bytes(b"# Guide, second edition, longer than the first\n" * 300)
    (src / "docs/images/deep/er/still.txt").unlink()
    (src / "new/file.txt").parent.mkdir()
    (src / "new/file.txt").write_bytes(b"added after the first sync")
    second = account.aws_ok("s3", "sync", "--delete", str(src), f"s3://{bucket}/backup")
    assert "delete: s3://" in second and "deep/er/still.txt" in second, second
    assert account.remote_tree(bucket, "backup/") == local_tree(src)

    # Nothing left to do: a third sync changes nothing.
    assert account.aws_ok("s3", "sync", "--delete", str(src), f"s3://{bucket}/backup") == ""

    back = tmp_path / "back"
    account.aws_ok("s3", "sync", f"s3://{bucket}/backup", str(back))
    assert local_tree(back) == local_tree(src)


# ---------------------------------------------------------------------- aws s3api


def test_aws_s3api_versioning_keeps_every_version(account: S3Account, tmp_path: Path) -> None:
    bucket = account.new_bucket("awsver")
    account.aws_ok(
        "s3api",
        "put-bucket-versioning",
        "--bucket",
        bucket,
        "--versioning-configuration",
        "Status=Enabled",
    )
    versioning = account.aws_json("s3api", "get-bucket-versioning", "--bucket", bucket)
    assert versioning["Status"] == "Enabled"
    account.boto.put_object(Bucket=bucket, Key="notes.txt", Body=b"first")
    account.boto.put_object(Bucket=bucket, Key="notes.txt", Body=b"second, longer")
    account.boto.delete_object(Bucket=bucket, Key="notes.txt")

    listed = account.aws_json("s3api", "list-object-versions", "--bucket", bucket)
    versions = listed["Versions"]
    assert [v["Size"] for v in versions] == [len(b"second, longer"), len(b"first")]
    assert not any(v["IsLatest"] for v in versions)
    [marker] = listed["DeleteMarkers"]
    assert marker["Key"] == "notes.txt" and marker["IsLatest"]

    oldest = versions[-1]["VersionId"]
    out = tmp_path / "oldest.txt"
    account.aws_ok(
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "notes.txt",
        "--version-id",
        oldest,
        str(out),
    )
    assert out.read_bytes() == b"first"


def test_aws_s3api_object_tagging_round_trips(account: S3Account) -> None:
    bucket = account.new_bucket("awstag")
    account.boto.put_object(Bucket=bucket, Key="tagged", Body=b"x")
    account.aws_ok(
        "s3api",
        "put-object-tagging",
        "--bucket",
        bucket,
        "--key",
        "tagged",
        "--tagging",
        json.dumps({"TagSet": [{"Key": "team", "Value": "infra"}, {"Key": "tier", "Value": "2"}]}),
    )
    tags = account.aws_json("s3api", "get-object-tagging", "--bucket", bucket, "--key", "tagged")
    assert sorted((t["Key"], t["Value"]) for t in tags["TagSet"]) == [
        ("team", "infra"),
        ("tier", "2"),
    ]


def test_aws_s3api_multipart_upload_by_hand(account: S3Account, tmp_path: Path) -> None:
    bucket = account.new_bucket("awsmpu")
    parts = [os.urandom(5 * MIB), os.urandom(123_456)]
    created = account.aws_json(
        "s3api", "create-multipart-upload", "--bucket", bucket, "--key", "joined.bin"
    )
    upload_id = created["UploadId"]
    done = []
    for number, data in enumerate(parts, start=1):
        path = tmp_path / f"part{number}"
        path.write_bytes(data)
        uploaded = account.aws_json(
            "s3api",
            "upload-part",
            "--bucket",
            bucket,
            "--key",
            "joined.bin",
            "--upload-id",
            upload_id,
            "--part-number",
            str(number),
            "--body",
            str(path),
        )
        assert uploaded["ETag"].strip('"') == md5(data)
        done.append({"PartNumber": number, "ETag": uploaded["ETag"]})
    completed = account.aws_json(
        "s3api",
        "complete-multipart-upload",
        "--bucket",
        bucket,
        "--key",
        "joined.bin",
        "--upload-id",
        upload_id,
        "--multipart-upload",
        json.dumps({"Parts": done}),
    )
    expected_etag = md5(b"".join(bytes.fromhex(md5(p)) for p in parts)) + "-2"
    assert completed["ETag"].strip('"') == expected_etag
    body = account.boto.get_object(Bucket=bucket, Key="joined.bin")["Body"].read()
    assert body == b"".join(parts)
    assert account.boto.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_aws_s3api_object_lock_keeps_a_backup_from_deletion(
    account: S3Account, tmp_path: Path
) -> None:
    bucket = unique("cli-worm")
    account.aws_ok("s3api", "create-bucket", "--bucket", bucket, "--object-lock-enabled-for-bucket")
    rule = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
    }
    account.aws_ok(
        "s3api",
        "put-object-lock-configuration",
        "--bucket",
        bucket,
        "--object-lock-configuration",
        json.dumps(rule),
    )
    assert account.aws_json("s3api", "get-object-lock-configuration", "--bucket", bucket) == {
        "ObjectLockConfiguration": rule
    }
    (tmp_path / "backup.tar").write_bytes(b"nightly backup")
    account.aws_ok("s3", "cp", str(tmp_path / "backup.tar"), f"s3://{bucket}/backup.tar")
    retention = account.aws_json(
        "s3api", "get-object-retention", "--bucket", bucket, "--key", "backup.tar"
    )["Retention"]
    assert retention["Mode"] == "GOVERNANCE"
    version = account.aws_json("s3api", "head-object", "--bucket", bucket, "--key", "backup.tar")[
        "VersionId"
    ]

    refused = account.aws(
        "s3api", "delete-object", "--bucket", bucket, "--key", "backup.tar", "--version-id", version
    )

    assert refused.returncode != 0
    assert "AccessDenied" in refused.stderr
    account.aws_ok(
        "s3api",
        "put-object-legal-hold",
        "--bucket",
        bucket,
        "--key",
        "backup.tar",
        "--legal-hold",
        "Status=ON",
    )
    held = account.aws_json(
        "s3api", "get-object-legal-hold", "--bucket", bucket, "--key", "backup.tar"
    )
    assert held == {"LegalHold": {"Status": "ON"}}


def test_aws_s3_presign_url_is_fetched_without_credentials(account: S3Account) -> None:
    bucket = account.new_bucket("awspresign")
    data = os.urandom(4096)
    account.boto.put_object(Bucket=bucket, Key="shared/report.bin", Body=data)
    url = account.aws_ok(
        "s3", "presign", f"s3://{bucket}/shared/report.bin", "--expires-in", "300"
    ).strip()
    assert "X-Amz-Signature=" in url and url.startswith(account.url), url

    fetched = httpx.get(url, timeout=30)
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == data

    unsigned = httpx.get(url.split("?", 1)[0], timeout=30)
    assert unsigned.status_code == 403, unsigned.text
    tampered = httpx.get(url.replace("report.bin", "report.bin2"), timeout=30)
    assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content


# ---------------------------------------------------------------------- rclone


def rclone_listing(account: S3Account, target: str) -> dict[str, int]:
    entries = json.loads(account.rclone_ok("lsjson", "-R", "--files-only", target))
    return {e["Path"]: e["Size"] for e in entries}


def test_rclone_copy_sync_check_and_lsjson_agree_with_the_local_tree(
    account: S3Account, rclone_installed: None, tmp_path: Path
) -> None:
    bucket = account.new_bucket("rclone")
    target = f"{RCLONE_REMOTE}:{bucket}/mirror"
    src = tmp_path / "src"
    write_tree(src, {**sample_tree(), "big/video.bin": os.urandom(11 * MIB + 5)})

    account.rclone_ok("copy", str(src), target)
    assert rclone_listing(account, target) == {
        p.relative_to(src).as_posix(): p.stat().st_size for p in src.rglob("*") if p.is_file()
    }
    assert account.remote_tree(bucket, "mirror/") == local_tree(src)
    big = account.boto.head_object(Bucket=bucket, Key="mirror/big/video.bin")
    assert big["ETag"].strip('"').endswith("-3"), big["ETag"]  # went up in 5 MiB parts
    account.rclone_ok("check", str(src), target)

    (src / "readme.txt").write_bytes(b"changed after the first copy, so a different size\n")
    (src / "data/rapport annuel.csv").unlink()
    write_tree(src, {"added/later.txt": b"new"})
    mismatch = account.rclone("check", str(src), target)
    assert mismatch.returncode != 0, mismatch.stderr

    account.rclone_ok("sync", str(src), target)
    account.rclone_ok("check", str(src), target)
    assert account.remote_tree(bucket, "mirror/") == local_tree(src)

    back = tmp_path / "back"
    account.rclone_ok("sync", target, str(back))
    assert local_tree(back) == local_tree(src)


def test_keys_from_openstack_ec2_credentials_create_work_with_aws_s3(
    cloud: Cloud, tmp_path: Path
) -> None:
    """The customer's path: keys and endpoint from the openstack CLI, data through aws s3."""
    tenant = cloud.make_tenant("s3-headline")
    created = cloud.cli_json("ec2", "credentials", "create", cloud=tenant.cloud_name)
    cloud.secrets.add(created["secret"])
    assert created["project_id"] == tenant.project_id
    catalog = cloud.cli_json("catalog", "show", "s3", cloud=tenant.cloud_name)
    endpoint = next(e["url"] for e in catalog["endpoints"] if e["interface"] == "public")
    home = tmp_path / "home"
    home.mkdir()
    (home / "aws-config").write_text("[default]\ns3 =\n    addressing_style = path\n")
    (home / "aws-credentials").write_text("")
    customer = S3Account(created["access"], created["secret"], endpoint, None, home)
    bucket = unique("headline")
    customer.aws_ok("s3", "mb", f"s3://{bucket}")
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.7 quarterly figures")
    customer.aws_ok("s3", "cp", str(tmp_path / "report.pdf"), f"s3://{bucket}/2026/report.pdf")
    assert "2026/report.pdf" in customer.aws_ok("s3", "ls", "--recursive", f"s3://{bucket}")
    customer.aws_ok("s3", "cp", f"s3://{bucket}/2026/report.pdf", str(tmp_path / "back.pdf"))
    assert (tmp_path / "back.pdf").read_bytes() == b"%PDF-1.7 quarterly figures"
    # Deleting the credential takes the keys away at once.
    cloud.cli_ok("ec2", "credentials", "delete", created["access"], cloud=tenant.cloud_name)
    denied = customer.aws("s3", "ls", f"s3://{bucket}")
    assert denied.returncode != 0
    assert "InvalidAccessKeyId" in denied.stderr
