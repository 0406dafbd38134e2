"""Helpers the API tests share: a stepping clock, settings, a Keystone-speaking admin client."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import shutil
import sqlite3
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # starlette nudges towards httpx2; httpx is what the project installs.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient as _StarletteTestClient

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from souverain import server
from souverain.config import Settings, load_settings
from tests.postgres import database_overrides

from .response_schemas import hold_to_reference

ADMIN_PASSWORD = "admin-secret-Pa55word"
LOCKOUT_ATTEMPTS = 3
LOCKOUT_SECONDS = 600
PASSWORD_MIN_LENGTH = 8
DEFAULT_USER_PASSWORD = "user-Pa55word"
MAX_BODY_BYTES = 64 * 1024


class TestClient(_StarletteTestClient):
    """Starlette's test client holding every JSON answer of an OpenStack API to its API
    reference, at the negotiated microversion (response_schemas.py)."""

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().request(method, url, *args, **kwargs)
        hold_to_reference(response)
        return response


class SteppingClock:
    """Real time plus an offset a test can advance: expiry and lockout without sleeping."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


# The database each data dir's platform keeps its state in, when not the dir's SQLite file:
# what an operator's config says, and what the operator's commands (CliRunner) are given.
DATABASE_OF: dict[str, str] = {}
_MIGRATED_SQLITE: list[Path] = []


def place_migrated_sqlite(data_dir: Path) -> None:
    """A copy of an empty, migrated SQLite database where a cloud in `data_dir` looks for
    its own, unless one is there: the migrations run once per test process rather than
    once per cloud (about a second each), as PostgreSQL's template database does."""
    target = data_dir / "souverain.db"
    if target.exists():
        return
    if not _MIGRATED_SQLITE:
        _MIGRATED_SQLITE.append(_migrated_sqlite())
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(_MIGRATED_SQLITE[0], target)
    os.chmod(target, 0o600)


def _migrated_sqlite() -> Path:
    from souverain.db.engine import make_engine
    from souverain.db.migrate import upgrade

    made = Path(tempfile.mkdtemp(prefix="souverain-template-")) / "souverain.db"
    atexit.register(shutil.rmtree, made.parent, True)
    engine = make_engine(f"sqlite:///{made}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    with contextlib.closing(sqlite3.connect(made)) as conn:  # one file: no WAL beside it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    return made


def cli_env(data_dir: Any) -> dict[str, str]:
    """The environment an operator command needs beside `--data-dir` on this backend."""
    url = DATABASE_OF.get(str(data_dir))
    return {"SOUVERAIN_DATABASE__URL": url} if url else {}


def settings_for(data_dir: Any, **identity: Any) -> Settings:
    """Fast hashing, a small lockout threshold and body limit; `identity` overrides those.
    The database is a fresh copy of a migrated one, on SQLite as on PostgreSQL."""
    database = database_overrides()
    if database:
        DATABASE_OF[str(data_dir)] = database["database"]["url"]
    else:
        place_migrated_sqlite(Path(data_dir))
    return load_settings(
        environ={},
        overrides={
            "data_dir": str(data_dir),
            "server": {"max_body_bytes": MAX_BODY_BYTES},
            "identity": {
                "bcrypt_rounds": 4,
                "lockout_failure_attempts": LOCKOUT_ATTEMPTS,
                "lockout_duration": LOCKOUT_SECONDS,
                "password_min_length": PASSWORD_MIN_LENGTH,
                **identity,
            },
            "audit": {"fsync": False},
            # in-process tests check the API and the database; the kernel side is proved by
            # tests/platform and tests/e2e, each cloud with its own public network
            "network": {"dataplane": False},
            # the backend the module runs on (tests/postgres.py): SQLite or a fresh PG database
            **database,
        },
    )


def password_auth(
    password: str,
    *,
    user_id: str | None = None,
    name: str | None = None,
    domain: dict[str, str] | None = None,
    scope: Any = None,
) -> dict[str, Any]:
    user: dict[str, Any] = {"password": password}
    if user_id:
        user["id"] = user_id
    if name:
        user["name"] = name
        user["domain"] = domain or {"id": "default"}
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def assert_keystone_error(response: Any, status: int) -> dict[str, Any]:
    """The status, Keystone's `{"error": {code, title, message}}` body, and a request id."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == status
    assert isinstance(error["title"], str) and error["title"]
    assert isinstance(error["message"], str) and error["message"]
    assert response.headers.get("x-openstack-request-id", "").startswith("req-")
    return error


@dataclass
class Member:
    """A user made for a test, with the password it logs in with and its scoped token."""

    id: str
    name: str
    password: str
    project_id: str  # "" when made without a role
    token: str  # "" when made without a role

    @property
    def headers(self) -> dict[str, str]:
        assert self.token
        return {"X-Auth-Token": self.token}


class Cloud:
    """The admin's view of a fresh platform, plus helpers to populate it."""

    def __init__(self, client: TestClient, platform: server.Platform) -> None:
        self.client = client
        self.platform = platform
        self._count = 0
        admin = self.issue(
            password_auth(
                ADMIN_PASSWORD,
                name="admin",
                scope={"project": {"name": "admin", "domain": {"id": "default"}}},
            )
        )
        self.admin_token = admin.headers["X-Subject-Token"]
        self.admin_id: str = admin.json()["token"]["user"]["id"]
        self.admin_project_id: str = admin.json()["token"]["project"]["id"]
        self.role_ids = {
            r["name"]: r["id"] for r in self.get("/v3/roles").json()["roles"] if r["name"]
        }

    # -- HTTP with the admin's token unless told otherwise

    def _headers(self, token: str | None, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"X-Auth-Token": token if token is not None else self.admin_token}
        headers.update(extra or {})
        return headers

    def get(self, path: str, token: str | None = None, **kw: Any) -> Any:
        return self.client.get(
            "/identity" + path, headers=self._headers(token, kw.pop("headers", None)), **kw
        )

    def head(self, path: str, token: str | None = None, **kw: Any) -> Any:
        return self.client.head(
            "/identity" + path, headers=self._headers(token, kw.pop("headers", None)), **kw
        )

    def post(self, path: str, body: Any, token: str | None = None, **kw: Any) -> Any:
        return self.client.post(
            "/identity" + path,
            json=body,
            headers=self._headers(token, kw.pop("headers", None)),
            **kw,
        )

    def patch(self, path: str, body: Any, token: str | None = None, **kw: Any) -> Any:
        return self.client.patch(
            "/identity" + path,
            json=body,
            headers=self._headers(token, kw.pop("headers", None)),
            **kw,
        )

    def put(self, path: str, token: str | None = None, **kw: Any) -> Any:
        return self.client.put(
            "/identity" + path, headers=self._headers(token, kw.pop("headers", None)), **kw
        )

    def delete(self, path: str, token: str | None = None, **kw: Any) -> Any:
        return self.client.delete(
            "/identity" + path, headers=self._headers(token, kw.pop("headers", None)), **kw
        )

    def issue(self, body: Any, query: str = "") -> Any:
        return self.client.post("/identity/v3/auth/tokens" + query, json=body)

    # -- population

    def unique(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}-{self._count}"

    def create(self, collection: str, member: str, **fields: Any) -> dict[str, Any]:
        response = self.post(f"/v3/{collection}", {member: fields})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()[member]
        return created

    def project(self, name: str | None = None, **fields: Any) -> dict[str, Any]:
        return self.create("projects", "project", name=name or self.unique("project"), **fields)

    def user(self, name: str | None = None, password: str | None = None, **fields: Any) -> Any:
        return self.create(
            "users",
            "user",
            name=name or self.unique("user"),
            password=password or DEFAULT_USER_PASSWORD,
            **fields,
        )

    def grant(self, user_id: str, project_id: str, role: str, actor: str = "users") -> None:
        response = self.put(
            f"/v3/projects/{project_id}/{actor}/{user_id}/roles/{self.role_ids[role]}"
        )
        assert response.status_code == 204, response.text

    def token_for(self, user_id: str, password: str, project_id: str | None) -> str:
        scope = {"project": {"id": project_id}} if project_id else None
        response = self.issue(password_auth(password, user_id=user_id, scope=scope))
        assert response.status_code == 201, response.text
        token: str = response.headers["X-Subject-Token"]
        return token

    def member(
        self, role: str | None = "member", project_id: str | None = None, password: str = ""
    ) -> Member:
        """A new user holding `role` on a project (a new one unless given), logged in there."""
        password = password or f"pw-{self.unique('secret')}-Long"
        user = self.user(password=password)
        if role is None:
            return Member(user["id"], user["name"], password, "", "")
        project_id = project_id or self.project()["id"]
        self.grant(user["id"], project_id, role)
        token = self.token_for(user["id"], password, project_id)
        return Member(user["id"], user["name"], password, project_id, token)


S3_BASE = "http://testserver"


class S3:
    """SigV4-signed requests to the platform's S3 app, as one EC2 credential of a member."""

    def __init__(self, cloud: Cloud, member: Member) -> None:
        path = f"/v3/users/{member.id}/credentials/OS-EC2"
        made = cloud.post(path, {"tenant_id": member.project_id}, token=member.token)
        assert made.status_code == 201, made.text
        cred = made.json()["credential"]
        self.credentials = Credentials(cred["access"], cred["secret"])
        self.region = cloud.platform.settings.server.region
        self.app = cloud.platform.s3_app

    def send(self, method: str, path: str, body: bytes = b"", **headers: str) -> Any:
        request = AWSRequest(method=method, url=S3_BASE + path, data=body, headers=headers)
        S3SigV4Auth(self.credentials, "s3", self.region).add_auth(request)
        client = TestClient(self.app, base_url=S3_BASE)  # one per call: safe from any thread
        return client.request(method, path, content=body, headers=dict(request.headers))
