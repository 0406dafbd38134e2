"""The transport's rules without a server: token buckets, whose login a body names, the
self-signed certificate's life, and the TLS context's floor."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from souverain import tls
from souverain.config import ConfigError, load_settings
from souverain.transport import (
    MAX_BUCKETS,
    TokenBuckets,
    keystone_credential,
    s3_credential,
)


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_its_burst_through_then_says_how_long_to_wait() -> None:
    ticks = Ticks()
    buckets = TokenBuckets(3, 0.5, ticks)  # one token every two seconds
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(2.0)
    assert buckets.wait("b") == 0.0  # another key has its own bucket
    ticks.now += 1.0
    assert buckets.wait("a") == pytest.approx(1.0)
    ticks.now += 1.0
    assert buckets.take("a") == 0.0
    ticks.now += 1000
    assert buckets._level("a", ticks.now) == 3  # never more than the burst


def test_a_flood_of_keys_cannot_grow_the_table_without_bound() -> None:
    ticks = Ticks()
    buckets = TokenBuckets(2, 1.0, ticks)
    for i in range(MAX_BUCKETS + 10):
        buckets.take(f"name-{i}")
    assert len(buckets.buckets) <= MAX_BUCKETS


@pytest.mark.parametrize(
    ("body", "credential"),
    [
        (
            {
                "auth": {
                    "identity": {
                        "password": {
                            "user": {"name": "alice", "domain": {"id": "default"}, "password": "x"}
                        }
                    }
                }
            },
            "user:default/alice",
        ),
        (
            {"auth": {"identity": {"password": {"user": {"id": "u1", "password": "x"}}}}},
            "user-id:u1",
        ),
        ({"credentials": {"access": "AKID", "signature": "s"}}, "access:AKID"),
        ({"auth": {"identity": {"password": {"user": ["not", "a", "dict"]}}}}, None),
        ({"auth": {"identity": {"password": {"user": {"name": 7}}}}}, None),
        ([1, 2, 3], None),
        ("just a string", None),
    ],
)
def test_the_credential_a_login_names(body: object, credential: str | None) -> None:
    assert keystone_credential(json.dumps(body).encode()) == credential


def test_hostile_login_bodies_name_no_credential() -> None:
    for raw in (b"", b"{", b"\xff\xfe", b"null", b'{"auth": null}', b"1e999999"):
        assert keystone_credential(raw) is None
    # the password itself is never part of the key
    body = b'{"auth":{"identity":{"password":{"user":{"name":"bob","password":"s3cret"}}}}}'
    assert "s3cret" not in (keystone_credential(body) or "")


def test_the_access_key_a_sigv4_request_names() -> None:
    header = b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/fr-1/s3/aws4_request, Sig=.."
    assert s3_credential({"headers": [(b"authorization", header)]}) == "access:AKIDEXAMPLE"
    query = b"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID2%2F20260101%2Ffr-1"
    assert s3_credential({"headers": [], "query_string": query}) == "access:AKID2"
    assert s3_credential({"headers": [], "query_string": b""}) is None


def test_tls_settings_are_checked_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="go together"):
        load_settings(environ={"SOUVERAIN_SERVER__TLS_CERT_FILE": str(tmp_path / "c.pem")})
    settings = load_settings(environ={"SOUVERAIN_SERVER__TLS_SELF_SIGNED": "true"})
    assert settings.base_url.startswith("https://")
    assert settings.s3_url.startswith("https://")
    assert load_settings(environ={}).base_url.startswith("http://")


def _settings(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    return load_settings(
        environ={
            "SOUVERAIN_SERVER__TLS_SELF_SIGNED": "true",
            "SOUVERAIN_DATA_DIR": str(tmp_path / "data"),
            **env,
        }
    )


def test_self_signed_certificate_is_made_once_kept_and_remade_for_a_new_name(
    tmp_path: Path,
) -> None:
    files = tls.ensure_self_signed(_settings(tmp_path))
    assert files is not None
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    first = files.cert.read_bytes()
    leaf = x509.load_pem_x509_certificate(first)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert leaf.signature_hash_algorithm is not None
    assert leaf.signature_hash_algorithm.name == "sha256"

    assert tls.ensure_self_signed(_settings(tmp_path)) == files
    assert files.cert.read_bytes() == first  # still good: kept

    renamed = _settings(tmp_path, SOUVERAIN_SERVER__PUBLIC_URL="https://api.example.test:8770")
    tls.ensure_self_signed(renamed)
    again = x509.load_pem_x509_certificate(files.cert.read_bytes())
    names = again.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "api.example.test" in names.get_values_for_type(x509.DNSName)

    late = dt.datetime.now(dt.UTC) + dt.timedelta(days=tls.CERT_DAYS - 10)
    tls.ensure_self_signed(renamed, now=late)  # about to expire: remade
    assert x509.load_pem_x509_certificate(files.cert.read_bytes()).serial_number != (
        again.serial_number
    )


def test_server_context_speaks_only_tls12_plus_with_aead_suites_and_verifies(
    tmp_path: Path,
) -> None:
    files = tls.ensure_self_signed(_settings(tmp_path))
    assert files is not None
    context = tls.server_context(files)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    for suite in context.get_ciphers():
        assert suite["aead"], suite["name"]
        assert suite["protocol"] == "TLSv1.3" or suite["kea"] == "kx-ecdhe", suite["name"]
    # a strict client (Python's default context) trusting ca.pem accepts the server
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.sendall(b"ok")

        thread = threading.Thread(target=serve)
        thread.start()
        client = tls.client_context(files.ca)
        assert client is not None
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client.wrap_socket(raw, server_hostname="localhost") as conn,
        ):
            assert conn.recv(2) == b"ok"
            assert conn.version() in ("TLSv1.2", "TLSv1.3")
        thread.join(5)


def test_an_operators_certificate_is_served_and_clients_trust_what_the_operator_names(
    tmp_path: Path,
) -> None:
    made = tls.ensure_self_signed(_settings(tmp_path / "made"))  # stands for the operator's PKI
    assert made is not None and made.ca is not None
    env = {
        "SOUVERAIN_DATA_DIR": str(tmp_path / "data"),
        "SOUVERAIN_SERVER__TLS_CERT_FILE": str(made.cert),
        "SOUVERAIN_SERVER__TLS_KEY_FILE": str(made.key),
    }
    operator = load_settings(environ=env)
    files = tls.tls_files(operator)
    assert files is not None and files.ca is None  # a public CA: the clients' system trust
    assert tls.ensure_self_signed(operator) == files  # nothing is made for it
    assert not (tmp_path / "data" / "tls").exists()
    tls.server_context(files)  # loads
    named = load_settings(environ={**env, "SOUVERAIN_SERVER__TLS_CA_FILE": str(made.ca)})
    named_files = tls.tls_files(named)
    assert named_files is not None and named_files.ca == made.ca
    with pytest.raises(ConfigError, match="exclude"):
        load_settings(environ={**env, "SOUVERAIN_SERVER__TLS_SELF_SIGNED": "true"})
