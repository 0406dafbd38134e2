"""The audit middleware records the project a service noted for the resource it acted on,
and flags an admin acting on another project's resource."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from souverain.common.audit import AuditLog, load_or_create_key, note_target_project
from souverain.common.clock import Clock
from souverain.common.middleware import AuditMiddleware


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
