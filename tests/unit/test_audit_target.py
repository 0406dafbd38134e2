"""The audit middleware records the project a service noted for the resource it acted on
and flags an admin acting on another project's resource; the audit key may live outside
the data dir (`audit.key_file`), and then the data dir alone cannot verify the chain.

The key-file test runs one real platform on SQLite (the key's place does not depend
on the database backend)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send
from typer.testing import CliRunner

from souverain import server
from souverain.cli import app as cli_app
from souverain.common.audit import AuditLog, load_or_create_key, note_target_project
from souverain.common.clock import Clock
from souverain.common.middleware import AuditMiddleware

from ..api.support import ADMIN_PASSWORD, cli_env, password_auth, settings_for


def test_a_service_notes_the_project_it_resolved(tmp_path: Path) -> None:
    """The project a service noted (in a worker thread, as handlers run them) is recorded."""
    log = AuditLog(tmp_path / "audit.log", load_or_create_key(tmp_path / "k"), fsync=False)

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"]["caller_admin"] = True
        scope["state"]["initiator"] = {"user_id": "u", "project_id": "mine"}
        await asyncio.to_thread(note_target_project, "theirs")
        note_target_project("ignored: the first noted wins")
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client = TestClient(AuditMiddleware(handler, log, Clock()))  # no lifespan: a bare app
    assert client.post("/network/v2.0/ports/x").status_code == 202
    log.close()
    first = json.loads((tmp_path / "audit.log").read_text().splitlines()[0])
    assert first["target_project"] == "theirs" and first["admin_action"] is True
    note_target_project("outside any call: nothing happens")


def test_audit_key_file_outside_the_data_dir() -> None:
    root = Path(tempfile.mkdtemp(prefix="souverain-api-"))
    try:
        settings = settings_for(root / "data")
        settings.audit.key_file = root / "vault" / "audit.key"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings)
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                body = password_auth(ADMIN_PASSWORD, name="admin")
                assert client.post("/identity/v3/auth/tokens", json=body).status_code == 201
        finally:
            built.close()
        data = root / "data"
        assert not (data / "keys" / "audit.key").exists()
        assert (root / "vault" / "audit.key").stat().st_mode & 0o777 == 0o600
        assert (data / "audit.log").read_text()
        env = cli_env(data)
        verify = ["audit", "verify", "--data-dir", str(data)]
        alone = CliRunner().invoke(cli_app, verify, env=env)
        assert alone.exit_code == 1 and "no key" in alone.output
        keyed = {**env, "SOUVERAIN_AUDIT__KEY_FILE": str(root / "vault" / "audit.key")}
        with_key = CliRunner().invoke(cli_app, verify, env=keyed)
        assert with_key.exit_code == 0 and "chain intact" in with_key.output, with_key.output
    finally:
        shutil.rmtree(root, ignore_errors=True)
