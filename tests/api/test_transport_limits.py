"""The transport guard around the real applications, in process: rate limits per client and
per credential (429 + Retry-After in Keystone's and Nova's format, S3's `SlowDown`), body
limits in each API's format without a row left behind, streamed uploads past the JSON
limit, and the security headers."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from souverain.config import LimitsSettings
from souverain.transport import Limits, TransportGuard

from .support import MAX_BODY_BYTES, S3, Cloud, TestClient, password_auth
from .test_swift_api import Swift

NOT_S3 = -1
S3_PORT = 80  # what the test client's base URL names


@pytest.fixture(scope="module", params=("sqlite",))
def database_backend(postgres_session: None) -> Iterator[str]:
    """The subject is the transport, not the database: these run on SQLite only."""
    yield "sqlite"


def guard(cloud: Cloud, s3: bool = False, **limits: Any) -> TransportGuard:
    """A fresh guard (empty buckets) around the OpenStack or the S3 application."""
    platform = cloud.platform
    app = platform.s3_app if s3 else platform.app
    settings = LimitsSettings(**limits)
    return TransportGuard(
        app, Limits.from_settings(settings), platform.render, S3_PORT if s3 else NOT_S3
    )


@contextmanager
def client_at(app: TransportGuard, address: str) -> Iterator[TestClient]:
    """A client at `address` (no lifespan: the served application runs without one)."""
    yield TestClient(app, base_url="http://testserver", client=(address, 40000))


def bad_login(client: TestClient, name: str) -> Any:
    body = password_auth("wrong-password", name=name)
    return client.post("/identity/v3/auth/tokens", json=body)


def test_bad_logins_from_one_client_get_429_with_retry_after_another_client_is_served(
    shared_cloud: Cloud,
) -> None:
    app = guard(shared_cloud, auth_failures_per_client=4, client_failure_refill=30)
    with client_at(app, "203.0.113.7") as attacker, client_at(app, "198.51.100.2") as other:
        statuses = [
            bad_login(attacker, shared_cloud.unique(f"ghost{i}")).status_code for i in range(4)
        ]
        assert statuses == [401] * 4
        refused = bad_login(attacker, shared_cloud.unique("ghost"))
        assert refused.status_code == 429
        assert set(refused.json()) == {"error"} and refused.json()["error"]["code"] == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 30
        # a right password from the refused client waits too: its bucket is empty
        admin = password_auth("admin-secret-Pa55word", name="admin")
        assert attacker.post("/identity/v3/auth/tokens", json=admin).status_code == 429
        # another client logs in, and the attacker's other requests still go through
        assert other.post("/identity/v3/auth/tokens", json=admin).status_code == 201
        assert attacker.get("/identity/v3").status_code == 200


def test_bad_logins_for_one_user_name_get_429_from_any_client(shared_cloud: Cloud) -> None:
    app = guard(shared_cloud, auth_failures_per_credential=2, credential_failure_refill=60)
    name = shared_cloud.unique("target")
    with client_at(app, "203.0.113.8") as first, client_at(app, "203.0.113.9") as second:
        assert bad_login(first, name).status_code == 401
        assert bad_login(second, name).status_code == 401
        refused = bad_login(second, name)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "wrong-password" not in refused.text
        assert bad_login(first, name).status_code == 429
        assert bad_login(first, shared_cloud.unique("someone-else")).status_code == 401


def test_too_many_requests_from_one_client_get_429_in_the_apis_own_format(
    shared_cloud: Cloud,
) -> None:
    app = guard(shared_cloud, client_rate=0.01, client_burst=3)
    headers = {"X-Auth-Token": shared_cloud.admin_token}
    with client_at(app, "203.0.113.10") as busy, client_at(app, "203.0.113.11") as calm:
        assert [busy.get("/identity/v3").status_code for _ in range(3)] == [200] * 3
        refused = busy.get("/compute/v2.1/servers", headers=headers)
        assert refused.status_code == 429
        assert refused.json()["overLimit"]["code"] == 429  # Nova's fault name
        assert int(refused.headers["retry-after"]) >= 1
        assert calm.get("/compute/v2.1/servers", headers=headers).status_code == 200


def signed(s3: S3, method: str, path: str, body: bytes = b"", secret: str = "") -> dict[str, str]:
    credentials = s3.credentials
    if secret:
        credentials = Credentials(credentials.access_key, secret)
    request = AWSRequest(method=method, url="http://testserver" + path, data=body)
    S3SigV4Auth(credentials, "s3", s3.region).add_auth(request)
    return dict(request.headers)


def test_wrong_s3_signatures_get_slow_down_503_right_ones_do_not_count(shared_cloud: Cloud) -> None:
    s3 = S3(shared_cloud, shared_cloud.member())
    app = guard(shared_cloud, s3=True, auth_failures_per_credential=2, credential_failure_refill=60)
    with client_at(app, "203.0.113.12") as client:
        good = signed(s3, "GET", "/")
        assert client.get("/", headers=good).status_code == 200
        bad = signed(s3, "GET", "/", secret="not-the-secret")
        assert [client.get("/", headers=bad).status_code for _ in range(2)] == [403, 403]
        refused = client.get("/", headers=signed(s3, "GET", "/"))
        assert refused.status_code == 503
        assert b"<Code>SlowDown</Code>" in refused.content
        assert int(refused.headers["retry-after"]) >= 1
        assert "not-the-secret" not in refused.text


def test_json_bodies_over_the_limit_get_413_in_each_apis_format_and_leave_nothing(
    shared_cloud: Cloud,
) -> None:
    app = guard(shared_cloud)
    headers = {"X-Auth-Token": shared_cloud.admin_token, "Content-Type": "application/json"}
    name = shared_cloud.unique("huge")
    padding = "x" * (MAX_BODY_BYTES + 1)
    with client_at(app, "203.0.113.13") as client:
        network = client.post(
            "/network/v2.0/networks",
            content=f'{{"network": {{"name": "{name}", "description": "{padding}"}}}}',
            headers=headers,
        )
        assert network.status_code == 413
        assert network.json()["NeutronError"]["type"]  # Neutron's own shape
        assert client.get(f"/network/v2.0/networks?name={name}", headers=headers).json() == {
            "networks": []
        }
        keypair = client.post(
            "/compute/v2.1/os-keypairs",
            content=f'{{"keypair": {{"name": "{name}", "public_key": "{padding}"}}}}',
            headers=headers,
        )
        assert keypair.status_code == 413 and keypair.json()["overLimit"]["code"] == 413
        assert client.get(f"/compute/v2.1/os-keypairs/{name}", headers=headers).status_code == 404


def test_object_uploads_stream_past_the_json_limit(shared_cloud: Cloud) -> None:
    member = shared_cloud.member()
    app = guard(shared_cloud)
    data = b"o" * (MAX_BODY_BYTES * 3)
    account = f"/object-storage/v1/AUTH_{member.project_id}"
    with client_at(app, "203.0.113.14") as client:
        assert client.put(f"{account}/big", headers=member.headers).status_code in (201, 202)
        put = client.put(f"{account}/big/blob", content=data, headers=member.headers)
        assert put.status_code == 201, put.text
        assert client.get(f"{account}/big/blob", headers=member.headers).content == data


def test_security_headers_on_api_answers_not_on_customer_objects(shared_cloud: Cloud) -> None:
    app = guard(shared_cloud)
    with client_at(app, "203.0.113.15") as client:
        token = client.post(
            "/identity/v3/auth/tokens", json=password_auth("admin-secret-Pa55word", name="admin")
        )
        assert token.status_code == 201
        assert token.headers["cache-control"] == "no-store"
        for answer in (token, client.get("/compute/v2.1/")):
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["referrer-policy"] == "no-referrer"
            assert "default-src 'none'" in answer.headers["content-security-policy"]
            assert "strict-transport-security" not in answer.headers  # plain HTTP here
        secrets = client.get(
            "/key-manager/v1/secrets", headers={"X-Auth-Token": shared_cloud.admin_token}
        )
        assert secrets.status_code == 200, secrets.text
        assert secrets.headers["cache-control"] == "no-store"  # secrets are never cached
        swift = client.get("/object-storage/v1/AUTH_nobody/c/o")
        assert swift.headers["x-content-type-options"] == "nosniff"
        assert "x-frame-options" not in swift.headers


def test_a_web_listing_page_carries_a_strict_content_security_policy(shared_cloud: Cloud) -> None:
    swift = Swift(shared_cloud, shared_cloud.member())
    meta = {"X-Container-Read": ".r:*,.rlistings", "X-Container-Meta-Web-Listings": "true"}
    assert swift("PUT", "site", headers=meta).status_code == 201
    assert swift("PUT", "site/a.txt", b"a").status_code == 201
    page = swift("GET", "site/", token="")
    assert page.status_code == 200 and "Listing of" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "frame-ancestors 'none'" in policy
    # the page's one inline style is the one the policy allows, by its hash
    style = page.text.split('<style type="text/css">', 1)[1].split("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy
