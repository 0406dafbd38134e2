"""Virtual-hosted style addressing and several serving processes acting as one object store."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .conftest import REGION, Cloud, CloudFactory, unique

DOMAIN = "s3.sovereign.test"


@pytest.fixture(scope="module")
def vhost_cloud(start_cloud: CloudFactory) -> Iterator[Cloud]:
    cloud = start_cloud(
        "s3-vhost", SOUVERAIN_OBJECTSTORE__DOMAIN=DOMAIN, SOUVERAIN_SERVER__WORKERS="2"
    )
    yield cloud
    cloud.stop_and_check()


def signed(
    method: str, url: str, access: str, secret: str, body: bytes = b""
) -> tuple[str, dict[str, str]]:
    """Sign a request for `url` as botocore does; return (url, headers)."""
    request = AWSRequest(method=method, url=url, data=body)
    S3SigV4Auth(Credentials(access, secret), "s3", REGION).add_auth(request)
    return request.url, dict(request.headers.items())


def send_to(
    cloud: Cloud, method: str, url: str, headers: dict[str, str], body: bytes = b""
) -> httpx.Response:
    """Send to the cloud's S3 port whatever host name the URL carries (no DNS needed)."""
    port = urllib.parse.urlsplit(cloud.s3_url).port
    parts = urllib.parse.urlsplit(url)
    target = f"http://127.0.0.1:{port}{parts.path}" + (f"?{parts.query}" if parts.query else "")
    headers = {**headers, "Host": parts.netloc}
    return httpx.request(method, target, headers=headers, content=body, timeout=30)


def test_bucket_named_by_host_name(vhost_cloud: Cloud) -> None:
    tenant = vhost_cloud.make_tenant("vhost")
    access, secret = vhost_cloud.ec2_credentials(tenant)
    s3 = vhost_cloud.s3(tenant)
    bucket = unique("vhost")
    s3.create_bucket(Bucket=bucket)
    port = urllib.parse.urlsplit(vhost_cloud.s3_url).port
    url = f"http://{bucket}.{DOMAIN}:{port}/dir/hello.txt"
    put_url, headers = signed("PUT", url, access, secret, b"virtual host")
    assert send_to(vhost_cloud, "PUT", put_url, headers, b"virtual host").status_code == 200
    # The object is the same one path-style clients see.
    assert s3.get_object(Bucket=bucket, Key="dir/hello.txt")["Body"].read() == b"virtual host"
    get_url, headers = signed("GET", url, access, secret)
    response = send_to(vhost_cloud, "GET", get_url, headers)
    assert response.status_code == 200
    assert response.content == b"virtual host"
    list_url, headers = signed(
        "GET", f"http://{bucket}.{DOMAIN}:{port}/?list-type=2", access, secret
    )
    listing = send_to(vhost_cloud, "GET", list_url, headers)
    assert listing.status_code == 200
    assert "<Key>dir/hello.txt</Key>" in listing.text


def test_bucket_settings_changed_in_one_worker_hold_in_every_worker(vhost_cloud: Cloud) -> None:
    tenant = vhost_cloud.make_tenant("workers")
    s3 = vhost_cloud.s3(tenant)
    bucket = unique("workers")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="doc", Body=b"shared", ACL="public-read")
    anonymous = f"{vhost_cloud.s3_url}/{bucket}"

    def anonymous_listings() -> set[int]:
        # New connections spread over both workers; each must give the same answer.
        return {httpx.get(anonymous, timeout=10).status_code for _ in range(30)}

    assert anonymous_listings() == {403}
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert anonymous_listings() == {200}
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert anonymous_listings() == {403}
    s3.delete_object(Bucket=bucket, Key="doc")
    s3.delete_bucket(Bucket=bucket)
    assert {httpx.get(anonymous, timeout=10).status_code for _ in range(30)} == {404}
