"""What the attack suite's modules share: a platform on a clock they can step, a view of
the data directory's files, and signed S3 requests (through httpx, or raw ASGI for paths
httpx would normalise).

Each module builds one platform (a few seconds) and runs every attack against it; an
attack reads the state before and after, so it must not rely on another's leftovers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from souverain import server
from souverain.common.clock import Clock

from ..api.conftest import _fast_tmp_root
from ..api.support import (
    ADMIN_PASSWORD,
    S3_BASE,
    Cloud,
    Member,
    SteppingClock,
    TestClient,
    settings_for,
)

__all__ = [
    "RawReply",
    "Signer",
    "Stepped",
    "files_under",
    "raw_request",
    "s3_code",
    "stepped_cloud",
]


@dataclass
class Stepped:
    """A cloud, its clock, and the directory its data dir lives in."""

    cloud: Cloud
    clock: SteppingClock
    root: Path

    @property
    def data_dir(self) -> Path:
        return Path(self.cloud.platform.settings.data_dir)


@contextmanager
def stepped_cloud(**identity: Any) -> Iterator[Stepped]:
    clock = SteppingClock()
    root = Path(tempfile.mkdtemp(prefix="souverain-attack-", dir=_fast_tmp_root()))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings_for(root / "data", **identity), clock=Clock(clock.now))
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                yield Stepped(Cloud(client, built), clock, root)
        finally:
            built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def files_under(root: Path) -> dict[str, int]:
    """Every file below `root` (symlinks not followed) and its size."""
    found: dict[str, int] = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            found[str(path)] = path.lstat().st_size
    return found


class Signer:
    """A member's EC2 credential signing requests for the platform's S3 app, by botocore."""

    def __init__(self, cloud: Cloud, member: Member) -> None:
        path = f"/v3/users/{member.id}/credentials/OS-EC2"
        made = cloud.post(path, {"tenant_id": member.project_id}, token=member.token)
        assert made.status_code == 201, made.text
        cred = made.json()["credential"]
        self.access, self.secret = cred["access"], cred["secret"]
        self.region = cloud.platform.settings.server.region
        self.app = cloud.platform.s3_app
        self.client = TestClient(self.app, base_url=S3_BASE)

    def sign(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        secret: str | None = None,
        **headers: str,
    ) -> dict[str, str]:
        request = AWSRequest(method=method, url=S3_BASE + path, data=body, headers=headers)
        credentials = Credentials(self.access, secret or self.secret)
        S3SigV4Auth(credentials, "s3", self.region).add_auth(request)
        return dict(request.headers)

    def send(self, method: str, path: str, body: bytes = b"", **headers: str) -> Any:
        signed = self.sign(method, path, body, **headers)
        return self.client.request(method, path, content=body, headers=signed)

    def send_raw(self, method: str, path: str, body: bytes = b"", **headers: str) -> RawReply:
        """As a client that keeps `..` in the path (httpx would resolve it)."""
        signed = {"host": "testserver", **self.sign(method, path, body, **headers)}
        signed["content-length"] = str(len(body))
        return raw_request(self.app, method, path, signed, body)

    def presign(self, method: str, path: str, expires: int) -> str:
        request = AWSRequest(method=method, url=S3_BASE + path)
        credentials = Credentials(self.access, self.secret)
        S3SigV4QueryAuth(credentials, "s3", self.region, expires=expires).add_auth(request)
        return str(request.url).removeprefix(S3_BASE)


@dataclass
class RawReply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def raw_request(
    app: Any, method: str, target: str, headers: dict[str, str], body: bytes = b""
) -> RawReply:
    """One request to an ASGI app with the path exactly as given: no dot segments resolved."""
    raw_path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    asyncio.run(app(scope, receive, send))
    return RawReply(status, b"".join(chunks))


def s3_code(response: Any) -> str:
    text: str = response.text
    return text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in text else ""
