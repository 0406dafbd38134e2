"""TLS and the transport's limits on a real `souverain serve` with `tls_self_signed`.

`openssl s_client` shows what each listener accepts; the `openstack` CLI reads the
clouds.yaml the server wrote, boto3 and the `aws` CLI the AWS config file it wrote, with
no extra flag; plain HTTP to a TLS port gets no answer; slow and oversized request heads
are cut off while a normal client is served; failed logins from one address get 429.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
import yaml

from tests.e2e.conftest import ADMIN_PASSWORD, OPENSTACK, Cloud, CloudFactory, child_env, unique

pytestmark = pytest.mark.e2e

HEAD_TIMEOUT = 2.0
FAILURES_PER_CLIENT = 4
OPENSSL_TIMEOUT = 10


@pytest.fixture(scope="module")
def tls_cloud(start_cloud: CloudFactory) -> Iterator[Cloud]:
    cloud = start_cloud(
        "tls",
        SOUVERAIN_SERVER__TLS_SELF_SIGNED="true",
        SOUVERAIN_LIMITS__HEADER_TIMEOUT=str(HEAD_TIMEOUT),
        SOUVERAIN_LIMITS__BODY_IDLE_TIMEOUT=str(HEAD_TIMEOUT),
        SOUVERAIN_LIMITS__AUTH_FAILURES_PER_CLIENT=str(FAILURES_PER_CLIENT),
        SOUVERAIN_LIMITS__CLIENT_FAILURE_REFILL="120",
    )
    yield cloud
    cloud.stop_and_check()


def written_cloud(cloud: Cloud) -> dict[str, object]:
    clouds = yaml.safe_load((cloud.server.data_dir / "clouds.yaml").read_text())
    entry: dict[str, object] = clouds["clouds"]["souverain"]
    return entry


def ca_file(cloud: Cloud) -> Path:
    return Path(str(written_cloud(cloud)["cacert"]))


def ports(cloud: Cloud) -> dict[str, int]:
    """The OpenStack and the S3 listener's ports, from the files the server wrote."""
    auth = urlsplit(cloud.auth_url)
    config = (cloud.server.data_dir / "aws-config").read_text()
    endpoint = next(
        line.split("=", 1)[1].strip() for line in config.splitlines() if "endpoint_url" in line
    )
    return {"openstack": int(auth.port or 0), "s3": int(urlsplit(endpoint).port or 0)}


def s_client(port: int, ca: Path, *flags: str) -> str:
    """What `openssl s_client` reports of one handshake (it never sends a request)."""
    result = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-CAfile",
            str(ca),
            "-verify_ip",
            "127.0.0.1",
            *flags,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=OPENSSL_TIMEOUT,
        check=False,
    )
    return result.stdout + result.stderr


def https(cloud: Cloud, port: int, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(ca_file(cloud)))
    return http.client.HTTPSConnection(
        "127.0.0.1", port, context=context, timeout=30, source_address=(source, 0)
    )


def call(
    conn: http.client.HTTPSConnection, method: str, path: str, body: object = None
) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def login(name: str, password: str) -> dict[str, object]:
    user = {"name": name, "domain": {"id": "default"}, "password": password}
    scope = {"project": {"name": "admin", "domain": {"id": "default"}}}
    return {
        "auth": {"identity": {"methods": ["password"], "password": {"user": user}}, "scope": scope}
    }


def test_only_tls12_and_13_with_aead_suites_and_a_certificate_the_ca_file_verifies(
    tls_cloud: Cloud,
) -> None:
    ca = ca_file(tls_cloud)
    for listener, port in ports(tls_cloud).items():
        for version in ("-tls1_2", "-tls1_3"):
            shown = s_client(port, ca, version, "-verify_return_error")
            assert "Verify return code: 0 (ok)" in shown, (listener, version, shown)
            assert "Cipher is (NONE)" not in shown
            assert any(suite in shown for suite in ("GCM", "CHACHA20")), shown
        # the client offers the old protocols and weak suites (SECLEVEL=0): the server says no
        for refused in (
            ("-tls1", "-cipher", "DEFAULT@SECLEVEL=0"),
            ("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"),
            ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384"),  # CBC
            ("-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384"),  # RSA key exchange
        ):
            shown = s_client(port, ca, *refused)
            assert "Cipher is (NONE)" in shown, (listener, refused, shown)


def test_plain_http_to_a_tls_port_gets_no_http_answer(tls_cloud: Cloud) -> None:
    for port in ports(tls_cloud).values():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            conn.request("GET", "/")
            conn.getresponse()
        conn.close()


def test_openstack_cli_boto3_and_aws_cli_work_with_the_files_the_server_wrote(
    tls_cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tls_cloud.server.data_dir
    assert written_cloud(tls_cloud)["verify"] is True
    issued = subprocess.run(
        [OPENSTACK, "--os-cloud", "souverain", "token", "issue", "-f", "json"],
        env=child_env(OS_CLIENT_CONFIG_FILE=str(data_dir / "clouds.yaml")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert issued.returncode == 0, issued.stderr
    token = json.loads(issued.stdout)["id"]
    conn = https(tls_cloud, ports(tls_cloud)["openstack"])
    assert call(conn, "GET", "/identity/v3/auth/tokens")[0] == 401  # no token
    conn.request(
        "GET", "/identity/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token}
    )
    scope = json.loads(conn.getresponse().read())["token"]
    conn.request(
        "POST",
        f"/identity/v3/users/{scope['user']['id']}/credentials/OS-EC2",
        body=json.dumps({"tenant_id": scope["project"]["id"]}),
        headers={"X-Auth-Token": token, "Content-Type": "application/json"},
    )
    created = conn.getresponse()
    assert created.status == 201
    assert created.getheader("cache-control") == "no-store"
    assert created.getheader("strict-transport-security", "").startswith("max-age=")
    credential = json.loads(created.read())["credential"]
    conn.close()

    config = str(data_dir / "aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", config)  # the file names the endpoint and the CA
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)  # it would win over the file's
    session = boto3.Session(
        profile_name="souverain",
        aws_access_key_id=credential["access"],
        aws_secret_access_key=credential["secret"],
    )
    s3 = session.client("s3")
    bucket = unique("tls")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"over TLS")
    answer = s3.get_object(Bucket=bucket, Key="k")
    assert answer["Body"].read() == b"over TLS"
    s3_headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert s3_headers["strict-transport-security"].startswith("max-age=")
    assert s3_headers["x-content-type-options"] == "nosniff"
    assert "x-frame-options" not in s3_headers  # a customer's object is the customer's page

    aws_env = child_env(
        AWS_CONFIG_FILE=config,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_PROFILE="souverain",
        AWS_ACCESS_KEY_ID=credential["access"],
        AWS_SECRET_ACCESS_KEY=credential["secret"],
    )
    aws_env.pop("AWS_CA_BUNDLE", None)  # the file's ca_bundle must be what is trusted
    listed = subprocess.run(
        ["aws", "s3", "ls", f"s3://{bucket}"],
        env=aws_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert listed.returncode == 0, listed.stderr
    assert " k" in listed.stdout


def test_slow_heads_and_bodies_are_cut_off_in_time_while_a_normal_client_is_served(
    tls_cloud: Cloud,
) -> None:
    port = ports(tls_cloud)["openstack"]
    context = ssl.create_default_context(cafile=str(ca_file(tls_cloud)))
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]  # no handshake
    slow = []
    for _ in range(20):
        raw = socket.create_connection(("127.0.0.1", port))
        conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
        conn.sendall(b"GET /identity/v3 HTTP/1.1\r\nHost: x\r\n")  # a head never finished
        slow.append(conn)
    stalled = []
    for _ in range(5):  # a body that stops: `Content-Length: 1000`, 20 bytes, then nothing
        raw = socket.create_connection(("127.0.0.1", port))
        conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
        conn.sendall(
            b"POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b"{" * 20
        )
        stalled.append(conn)
    started = time.monotonic()
    for _ in range(3):
        conn = https(tls_cloud, port)
        assert call(conn, "GET", "/identity/v3")[0] == 200
        conn.close()
    assert time.monotonic() - started < HEAD_TIMEOUT  # served at once, beside the slow ones
    for conn in slow:
        conn.settimeout(HEAD_TIMEOUT + 5)
        conn.sendall(b"X-Drip: 1\r\n")  # dripping does not extend the deadline
    for conn in slow:
        answer = _until_closed(conn)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert answer.endswith(b"The request took too long to arrive.")  # and nothing more
        conn.close()
    for conn in stalled:
        conn.settimeout(HEAD_TIMEOUT + 5)
        assert _until_closed(conn) == b""  # closed mid-body: no answer to half a request
        conn.close()
    for raw in silent:
        raw.settimeout(HEAD_TIMEOUT + 5)
        assert raw.recv(100) == b""  # the handshake's deadline closed it
        raw.close()
    assert time.monotonic() - started < HEAD_TIMEOUT + 4

    big = https(tls_cloud, port)
    big.putrequest("GET", "/identity/v3")
    big.putheader("X-Filler", "a" * (80 * 1024))
    big.endheaders()
    assert big.getresponse().status == 431
    big.close()


def _until_closed(conn: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    while chunk := conn.recv(4096):
        answer += chunk
    return answer


def test_failed_logins_from_one_address_get_429_another_address_still_logs_in(
    tls_cloud: Cloud,
) -> None:
    port = ports(tls_cloud)["openstack"]
    attacker = https(tls_cloud, port, source="127.0.0.2")
    for _ in range(FAILURES_PER_CLIENT):
        assert call(attacker, "POST", "/identity/v3/auth/tokens", login("admin", "nope"))[0] == 401
    status, headers, body = call(
        attacker, "POST", "/identity/v3/auth/tokens", login("admin", "nope")
    )
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert json.loads(body)["error"]["code"] == 429
    other = https(tls_cloud, port)
    status, headers, _ = call(
        other, "POST", "/identity/v3/auth/tokens", login("admin", ADMIN_PASSWORD)
    )
    other.close()
    assert status == 201
    assert headers["cache-control"] == "no-store"


def test_an_agent_reaches_the_internal_api_only_trusting_its_ca_file(tls_cloud: Cloud) -> None:
    from souverain.agent.client import ControlPlaneError, InternalClient
    from souverain.tls import client_context

    base = tls_cloud.auth_url.rsplit("/identity", 1)[0]
    trusting = InternalClient(
        base, "no-such-host", "not-a-host-token", context=client_context(ca_file(tls_cloud))
    )
    with pytest.raises(ControlPlaneError, match="HTTP 401"):  # TLS held: the server said no
        trusting.heartbeat({})
    system_only = InternalClient(base, "no-such-host", "not-a-host-token")
    with pytest.raises(ControlPlaneError, match="CERTIFICATE_VERIFY_FAILED"):
        system_only.heartbeat({})
