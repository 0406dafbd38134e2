"""`souverain serve` as an operator sees it: start-up, restart, settings, shutdown."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from souverain.db.engine import make_engine
from tests.platform.conftest import ADMIN_PASSWORD, SOUVERAIN, ServerFactory, server_env

pytestmark = __import__("pytest").mark.e2e


def test_first_start_writes_private_clouds_yaml_that_authenticates(
    make_server: ServerFactory,
) -> None:
    server = make_server().start()
    clouds = server.data_dir / "clouds.yaml"
    assert stat.S_IMODE(clouds.stat().st_mode) == 0o600
    private_files = ["audit.log", "keys/audit.key", "keys/credential.key"]
    if server.database_url.startswith("sqlite"):
        private_files.append("souverain.db")
    for private in private_files:
        assert stat.S_IMODE((server.data_dir / private).stat().st_mode) & 0o077 == 0, private
    cloud = yaml.safe_load(clouds.read_text())["clouds"]["souverain"]
    assert cloud["region_name"] == "fr-1"
    assert cloud["auth"]["password"] == ADMIN_PASSWORD
    assert server.token()
    code, out, _ = server.stop()
    assert code == 0
    assert "identity" in out and str(clouds) in out


def test_generated_admin_password_is_used_when_none_is_given(make_server: ServerFactory) -> None:
    server = make_server()
    del server.env["SOUVERAIN_ADMIN_PASSWORD"]
    server.start()
    password = yaml.safe_load((server.data_dir / "clouds.yaml").read_text())["clouds"]["souverain"][
        "auth"
    ]["password"]
    assert len(password) >= 16
    assert server.token(password)


def test_restart_is_idempotent_and_follows_the_new_port(make_server: ServerFactory) -> None:
    first = make_server().start()
    first_url = first.auth_url
    assert first.stop()[0] == 0
    second = make_server()
    del second.env["SOUVERAIN_ADMIN_PASSWORD"]  # the known password stays in clouds.yaml
    second.start()
    assert second.auth_url != first_url
    token = second.token()
    status, _, body = second.get("/identity/v3/auth/catalog", {"X-Auth-Token": token})
    assert status == 200
    urls = {s["type"]: {e["url"] for e in s["endpoints"]} for s in json.loads(body)["catalog"]}
    assert urls["identity"] == {second.base + "/identity"}
    (s3_url,) = urls["s3"]  # the object store's own listener, also on its new port
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(s3_url, timeout=10)
    assert anonymous.value.code == 403
    assert b"<Code>AccessDenied</Code>" in anonymous.value.read()
    status, _, body = second.get("/identity/v3/users?name=admin", {"X-Auth-Token": token})
    assert len(json.loads(body)["users"]) == 1
    status, _, body = second.get("/identity/v3/roles", {"X-Auth-Token": token})
    assert sorted(r["name"] for r in json.loads(body)["roles"]) == [
        "ResellerAdmin",
        "admin",
        "member",
        "reader",
    ]


def test_every_response_has_a_request_id_and_an_access_log_line(make_server: ServerFactory) -> None:
    server = make_server().start()
    _, headers, _ = server.get("/identity/v3")
    request_id = headers["x-openstack-request-id"]
    assert request_id.startswith("req-")
    _, headers404, body = server.get("/nowhere")
    assert headers404["x-openstack-request-id"] != request_id
    assert json.loads(body)["error"]["code"] == 404
    _, _, err = server.stop()
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    logged = [x for x in lines if x.get("request_id") == request_id]
    assert logged and logged[0]["status"] == 200 and logged[0]["path"] == "/identity/v3"


def test_secrets_never_reach_the_logs(make_server: ServerFactory) -> None:
    server = make_server().start()
    token = server.token()
    server.request(
        "POST",
        "/identity/v3/auth/tokens",
        json.dumps(
            {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": "admin",
                                "domain": {"id": "default"},
                                "password": "wrong-password-xyz",
                            }
                        },
                    }
                }
            }
        ).encode(),
        {"Content-Type": "application/json"},
    )
    _, out, err = server.stop()
    audit = (server.data_dir / "audit.log").read_text()
    for secret in (ADMIN_PASSWORD, "wrong-password-xyz", token):
        assert secret not in out + err
        assert secret not in audit


def test_body_over_the_limit_gets_413_in_keystone_format(make_server: ServerFactory) -> None:
    server = make_server(SOUVERAIN_SERVER__MAX_BODY_BYTES="4096").start()
    status, _, body = server.request(
        "POST",
        "/identity/v3/auth/tokens",
        b"{" + b" " * 10_000 + b"}",
        {"Content-Type": "application/json"},
    )
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == 413 and "4096" in error["message"]


def test_chunked_body_over_the_limit_gets_413(make_server: ServerFactory) -> None:
    import http.client
    from urllib.parse import urlsplit

    server = make_server(SOUVERAIN_SERVER__MAX_BODY_BYTES="4096").start()
    url = urlsplit(server.base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b'{"x": "' + b"a" * 1000 + b'"}'

    conn.request(
        "POST",
        "/identity/v3/auth/tokens",
        body=chunks(),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["error"]["code"] == 413


def test_invalid_setting_stops_start_up_naming_it(tmp_path: Path) -> None:
    env = server_env(SOUVERAIN_IDENTITY__BCRYPT_ROUNDS="three")
    result = subprocess.run(
        [SOUVERAIN, "serve", "--data-dir", str(tmp_path), "--port", "0", "--s3-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "identity.bcrypt_rounds" in result.stderr
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nregion = "fr 1"\ncolour = "blue"\n')
    result = subprocess.run(
        [SOUVERAIN, "serve", "--config", str(config), "--data-dir", str(tmp_path)],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "server.region" in result.stderr and "server.colour" in result.stderr
    assert not (tmp_path / "souverain.db").exists()


def test_schema_newer_than_the_code_refuses_to_start(make_server: ServerFactory) -> None:
    server = make_server().start()
    assert server.stop()[0] == 0
    engine = make_engine(server.database_url)
    with engine.begin() as db:
        db.execute(text("UPDATE alembic_version SET version_num = 'ffffffff9999'"))
    engine.dispose()
    result = subprocess.run(
        [SOUVERAIN, "serve", "--data-dir", str(server.data_dir), "--port", "0", "--s3-port", "0"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3
    assert "ffffffff9999" in result.stderr and "newer" in result.stderr


def test_sigterm_lets_an_in_flight_login_finish(make_server: ServerFactory) -> None:
    # A slow password hash keeps the login in flight while the signal arrives.
    server = make_server(SOUVERAIN_IDENTITY__BCRYPT_ROUNDS="14")
    server.env["SOUVERAIN_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    server.start(timeout=60)
    outcome: dict[str, object] = {}

    def login() -> None:
        try:
            outcome["token"] = server.token()
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=login)
    worker.start()
    time.sleep(0.3)
    code, out, _ = server.stop(signal.SIGTERM, timeout=60)
    worker.join(timeout=60)
    assert "error" not in outcome, outcome
    assert outcome.get("token")
    assert code == 0
    assert "stopped cleanly" in out
    engine = make_engine(server.database_url)
    with engine.connect() as db:
        if engine.dialect.name == "sqlite":
            assert db.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        assert db.execute(text("SELECT count(*) FROM identity_users")).scalar()
    engine.dispose()


def test_sigint_stops_cleanly_and_audit_log_stays_intact(make_server: ServerFactory) -> None:
    server = make_server().start()
    server.token()
    code, _, _ = server.stop(signal.SIGINT)
    assert code == 0
    server.assert_audit_intact()
