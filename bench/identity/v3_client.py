"""The Keystone v3 requests the benchmark sends, and a check that a server answers them.

The request bodies built here are the exact bytes the load generator sends, so
the check before a run proves the benchmarked requests succeed. Standard
library only: this runs under whatever python3 starts the bench.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

AUTH_TOKENS = "/auth/tokens"


@dataclass(frozen=True)
class Account:
    """Who authenticates: a user and the project the tokens are scoped to."""

    user: str
    password: str
    domain: str = "Default"
    project: str = "admin"

    def password_body(self, scoped: bool = True) -> bytes:
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": self.user,
                        "domain": {"name": self.domain},
                        "password": self.password,
                    }
                },
            }
        }
        if scoped:
            auth["scope"] = self._project_scope()
        return _json({"auth": auth})

    def rescope_body(self, token: str) -> bytes:
        return _json(
            {
                "auth": {
                    "identity": {"methods": ["token"], "token": {"id": token}},
                    "scope": self._project_scope(),
                }
            }
        )

    def _project_scope(self) -> dict[str, Any]:
        return {"project": {"name": self.project, "domain": {"name": self.domain}}}


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def describe(self) -> str:
        text = self.body.decode(errors="replace")
        return f"HTTP {self.status}: {text[:400]}"


def send(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Reply:
    all_headers = {"Accept": "application/json", **(headers or {})}
    if body is not None:
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, _lower(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, _lower(error.headers.items()), error.read())


def _lower(items: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in items}


class CheckFailed(RuntimeError):
    """The server does not answer the benchmarked requests correctly."""


@dataclass
class Tokens:
    """Tokens a run needs, all obtained and verified by `check_identity`."""

    admin: str  # project-scoped admin token: X-Auth-Token when validating
    subject: str  # another project-scoped token: X-Subject-Token when validating
    rescope_source: str  # token re-scoped to the project by the token method
    rescope_source_kind: str  # "unscoped" or "project-scoped"
    observations: list[str] = field(default_factory=list)  # non-fatal departures from Keystone


def check_identity(name: str, v3_url: str, account: Account) -> Tokens:
    """Issue and validate tokens as the benchmark will; raise CheckFailed if anything is off.

    Departures from Keystone that do not stop the benchmark (wrong status on a
    bad password, ...) are returned as observations.
    """
    tokens_url = v3_url + AUTH_TOKENS

    def fail(what: str, reply: Reply) -> CheckFailed:
        return CheckFailed(f"{name}: {what} -> {reply.describe()}")

    def issue(what: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[str, Any]:
        reply = send("POST", tokens_url, body, headers)
        token = reply.headers.get("x-subject-token")
        if reply.status != 201 or not token:
            raise fail(f"{what}: expected 201 with X-Subject-Token", reply)
        return token, reply.json()["token"]

    def require_project_scope(what: str, token_body: Any) -> None:
        project = token_body.get("project") or {}
        roles = {role.get("name") for role in token_body.get("roles") or []}
        if project.get("name") != account.project or "admin" not in roles:
            raise CheckFailed(
                f"{name}: {what}: token not scoped to project {account.project!r} "
                f"with role admin: project={project!r} roles={sorted(map(str, roles))}"
            )

    admin, admin_body = issue("issue by password, project scope", account.password_body())
    require_project_scope("issue by password", admin_body)
    subject, subject_body = issue("second issue by password", account.password_body())
    if subject == admin:
        raise CheckFailed(f"{name}: two password issues returned the same token")

    observations: list[str] = []
    reply = send("POST", tokens_url, account.password_body(scoped=False))
    if reply.status == 201 and reply.headers.get("x-subject-token"):
        source, source_kind = reply.headers["x-subject-token"], "unscoped"
    else:
        observations.append(
            f"unscoped password issue (no scope in body) -> {reply.describe()}; "
            "re-scope measured from a project-scoped token instead"
        )
        source, source_kind = subject, "project-scoped"
    _, rescoped_body = issue(
        f"re-scope of {source_kind} token by the token method", account.rescope_body(source)
    )
    require_project_scope("re-scope", rescoped_body)

    reply = send("GET", tokens_url, headers={"X-Auth-Token": admin, "X-Subject-Token": subject})
    if reply.status != 200:
        raise fail("validate with admin token", reply)
    validated = reply.json()["token"]
    if validated.get("expires_at") != subject_body.get("expires_at"):
        raise CheckFailed(
            f"{name}: validated expires_at {validated.get('expires_at')!r} differs from "
            f"issued {subject_body.get('expires_at')!r}"
        )
    require_project_scope("validate", validated)

    observations += _check_refusals(tokens_url, account, admin)
    return Tokens(admin, subject, source, source_kind, observations)


def _check_refusals(tokens_url: str, account: Account, admin: str) -> list[str]:
    """What Keystone refuses, and with which status; each departure is one observation."""
    wrong = Account(account.user, account.password + "x", account.domain, account.project)
    cases = [
        ("issue with a wrong password", "POST", wrong.password_body(), {}, 401),
        (
            "validate an unknown subject token",
            "GET",
            None,
            {"X-Auth-Token": admin, "X-Subject-Token": "not-a-token"},
            404,
        ),
        ("validate without X-Auth-Token", "GET", None, {"X-Subject-Token": admin}, 401),
    ]
    observations = []
    for what, method, body, headers, expected in cases:
        reply = send(method, tokens_url, body, headers)
        if reply.status != expected:
            observations.append(f"{what}: expected HTTP {expected}, got {reply.describe()}")
    return observations
