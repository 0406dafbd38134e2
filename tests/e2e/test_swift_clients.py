"""Swift through the clients customers use: the openstack CLI, openstacksdk and rclone's
swift backend, on the same buckets and bytes as boto3 sees over S3.

Each client finds Swift in the identity catalog (`object-store`, `AUTH_<project>` expanded
for the token), as it would against any OpenStack cloud.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import CLI_TIMEOUT, Cloud, Tenant, child_env, unique

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tenant(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("swift")


def swift_url(cloud: Cloud, tenant: Tenant) -> str:
    return f"{cloud.base_url}/object-storage/v1/AUTH_{tenant.project_id}"


def test_openstack_cli_container_and_object_round_trip(
    cloud: Cloud, tenant: Tenant, tmp_path: Path
) -> None:
    container = unique("cli")
    source = tmp_path / "report.bin"
    data = os.urandom(200_000)
    source.write_bytes(data)
    created = cloud.cli_json("container", "create", container, cloud=tenant.cloud_name)
    assert created[0]["container"] == container
    cloud.cli_ok("object", "create", container, str(source), "--name", "r/report.bin",
                 cloud=tenant.cloud_name)  # fmt: skip
    listed = cloud.cli_json("object", "list", container, cloud=tenant.cloud_name)
    assert [o["Name"] for o in listed] == ["r/report.bin"]
    shown = cloud.cli_json("object", "show", container, "r/report.bin", cloud=tenant.cloud_name)
    assert int(shown["content-length"]) == len(data)
    assert shown["etag"] == hashlib.md5(data).hexdigest()
    saved = tmp_path / "saved.bin"
    cloud.cli_ok("object", "save", container, "r/report.bin", "--file", str(saved),
                 cloud=tenant.cloud_name)  # fmt: skip
    assert saved.read_bytes() == data
    cloud.cli_ok("container", "set", container, "--property", "team=ops", cloud=tenant.cloud_name)
    shown = cloud.cli_json("container", "show", container, cloud=tenant.cloud_name)
    assert "team" in str(shown["properties"])
    account = cloud.cli_json("object", "store", "account", "show", cloud=tenant.cloud_name)
    assert int(account["Containers"]) >= 1
    cloud.cli_ok("container", "delete", "--recursive", container, cloud=tenant.cloud_name)
    assert container not in cloud.cli_ok("container", "list", cloud=tenant.cloud_name)


def test_another_tenant_cannot_see_or_write_the_container(cloud: Cloud, tenant: Tenant) -> None:
    container = unique("private")
    cloud.cli_ok("container", "create", container, cloud=tenant.cloud_name)
    other = cloud.make_tenant("swift-other")
    url = swift_url(cloud, tenant)
    token = cloud.token_for(other)
    assert httpx.get(f"{url}/{container}", headers={"X-Auth-Token": token}).status_code == 403
    put = httpx.put(f"{url}/{container}/x", content=b"1", headers={"X-Auth-Token": token})
    assert put.status_code == 403
    assert container not in cloud.cli_ok("container", "list", cloud=other.cloud_name)


def test_boto3_and_openstacksdk_read_each_others_objects(cloud: Cloud, tenant: Tenant) -> None:
    s3 = cloud.s3(tenant)
    conn = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    bucket = unique("both")
    s3.create_bucket(Bucket=bucket)
    payload = os.urandom(3 * 1024 * 1024 + 5)
    s3.put_object(Bucket=bucket, Key="from-s3.bin", Body=payload, Metadata={"origin": "s3"})
    got = conn.object_store.download_object("from-s3.bin", container=bucket)
    assert got == payload
    meta = conn.object_store.get_object_metadata("from-s3.bin", container=bucket)
    assert meta.metadata.get("origin") == "s3"
    conn.object_store.upload_object(
        container=bucket,
        name="from-swift.txt",
        data=b"written by swift",
        metadata={"origin": "swift"},
    )
    back = s3.get_object(Bucket=bucket, Key="from-swift.txt")
    assert back["Body"].read() == b"written by swift"
    assert back["Metadata"].get("origin") == "swift"
    names = sorted(o.name for o in conn.object_store.objects(bucket))
    assert names == ["from-s3.bin", "from-swift.txt"]
    conn.close()


def test_rclone_swift_backend_copies_a_tree(cloud: Cloud, tenant: Tenant, tmp_path: Path) -> None:
    rclone = shutil.which("rclone")
    assert rclone is not None, "rclone is a system package of this project"
    tree = tmp_path / "tree"
    files = {"a.txt": b"alpha", "dir/b.bin": os.urandom(1_500_000), "dir/deep/c": b""}
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    container = unique("rclone")
    prefix = "RCLONE_CONFIG_SW_"
    env = child_env(
        HOME=str(tmp_path),
        **{
            f"{prefix}TYPE": "swift",
            f"{prefix}AUTH_TOKEN": cloud.token_for(tenant),
            f"{prefix}STORAGE_URL": swift_url(cloud, tenant),
        },
    )

    def run(*args: str) -> str:
        result = subprocess.run(
            [rclone, "--config", str(tmp_path / "rclone.conf"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert result.returncode == 0, f"rclone {args}\n{result.stderr}"
        return result.stdout

    (tmp_path / "rclone.conf").write_text("")
    run("mkdir", f"sw:{container}")
    run("copy", str(tree), f"sw:{container}")
    listed = sorted(run("lsf", "-R", "--files-only", f"sw:{container}").split())
    assert listed == sorted(files)
    run("check", str(tree), f"sw:{container}")
    out = tmp_path / "out"
    run("copy", f"sw:{container}", str(out))
    assert (out / "dir/b.bin").read_bytes() == files["dir/b.bin"]
    run("purge", f"sw:{container}")
