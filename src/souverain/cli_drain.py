"""`souverain host drain NAME`: empty a host through the cloud's own API, as an operator's
script would: its compute service disabled (no new server lands there), then each running
server live-migrated and each stopped one cold-migrated and confirmed, one at a time,
wherever the scheduler puts them. It ends with what it could not move, and why.

It holds no database credentials: it signs in with an admin's clouds.yaml entry (the one
`souverain serve` writes in its data dir, or OS_CLIENT_CONFIG_FILE's) and speaks Nova's API.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

VERSION = "compute 2.80"
POLL = 1.0
# a server in one of these is moved; any other status is reported as not movable
MOVES = {"ACTIVE": "live", "SHUTOFF": "cold"}
ENDED = ("completed", "finished", "confirmed", "error", "failed", "cancelled")


class DrainError(Exception):
    """The drain cannot go on (no credentials, the API refuses it)."""


@dataclass
class Outcome:
    server: str
    name: str
    moved_to: str | None = None
    reason: str | None = None


class Nova:
    """The compute API with an admin token (Keystone v3 password auth from clouds.yaml)."""

    def __init__(self, clouds_file: Path, cloud: str) -> None:
        try:
            entry = yaml.safe_load(clouds_file.read_text())["clouds"][cloud]
        except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise DrainError(f"no cloud {cloud!r} in {clouds_file}: {exc}") from None
        auth = entry["auth"]
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": auth["username"],
                            "password": auth["password"],
                            "domain": {"name": auth.get("user_domain_name", "Default")},
                        }
                    },
                },
                "scope": {
                    "project": {
                        "name": auth["project_name"],
                        "domain": {"name": auth.get("project_domain_name", "Default")},
                    }
                },
            }
        }
        url = auth["auth_url"].rstrip("/") + "/v3/auth/tokens"
        headers, doc = _request("POST", url, body, {})
        self.token = headers.get("x-subject-token", "")
        self.base = _compute_url(doc, entry.get("interface", "public"))

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"X-Auth-Token": self.token, "OpenStack-API-Version": VERSION}
        return _request(method, self.base + path, body, headers)[1]


def _request(
    method: str, url: str, body: Any, headers: dict[str, str]
) -> tuple[dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - operator's URL
    for key, value in headers.items():
        request.add_header(key, value)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            raw = response.read()
            headers = {key.lower(): value for key, value in response.headers.items()}
            return headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raise DrainError(_fault(exc)) from None
    except OSError as exc:
        raise DrainError(f"{method} {url}: {exc}") from None


def _fault(exc: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(exc.read())
        return str(next(iter(doc.values()))["message"])
    except (ValueError, StopIteration, KeyError, TypeError, AttributeError):
        return f"HTTP {exc.code}"


def _compute_url(token: Any, interface: str) -> str:
    for service in token["token"].get("catalog", []):
        if service["type"] == "compute":
            for endpoint in service["endpoints"]:
                if endpoint["interface"] == interface:
                    return str(endpoint["url"]).rstrip("/")
    raise DrainError("the catalog has no compute endpoint: is this an admin's project?")


def drain(nova: Nova, host: str, say: Callable[[str], None], timeout: float) -> list[Outcome]:
    """Disable `host`, then move every server off it; what became of each."""
    services = nova.call("GET", f"/os-services?host={quote(host)}&binary=nova-compute")
    if not services["services"]:
        raise DrainError(f"host {host} has no compute service: is the name right?")
    service_id = services["services"][0]["id"]
    nova.call(
        "PUT", f"/os-services/{service_id}", {"status": "disabled", "disabled_reason": "drain"}
    )
    say(f"host {host}: disabled for new servers")
    servers = nova.call("GET", f"/servers/detail?all_tenants=1&host={quote(host)}")["servers"]
    say(f"host {host}: {len(servers)} server(s) to move")
    outcomes = []
    for index, server in enumerate(servers, 1):
        say(f"[{index}/{len(servers)}] {server['name']} ({server['id']}), {server['status']}")
        outcome = _move(nova, server, host, timeout)
        say(
            f"    -> on {outcome.moved_to}"
            if outcome.moved_to
            else f"    -> not moved: {outcome.reason}"
        )
        outcomes.append(outcome)
    return outcomes


def _move(nova: Nova, server: dict[str, Any], host: str, timeout: float) -> Outcome:
    outcome = Outcome(server["id"], server["name"])
    kind = MOVES.get(server["status"])
    if kind is None:
        outcome.reason = f"it is {server['status']}: only ACTIVE and SHUTOFF servers are moved"
        return outcome
    action = (
        {"os-migrateLive": {"host": None, "block_migration": "auto"}}
        if kind == "live"
        else {"migrate": None}
    )
    try:
        nova.call("POST", f"/servers/{server['id']}/action", action)
        status = _wait_migration(nova, server["id"], timeout)
        if status == "finished":
            _wait_status(nova, server["id"], "VERIFY_RESIZE", timeout)
            nova.call("POST", f"/servers/{server['id']}/action", {"confirmResize": None})
            status = "confirmed"
        if status not in ("completed", "confirmed"):
            outcome.reason = f"its migration ended {status}: {_last_error(nova, server['id'])}"
            return outcome
        _wait_status(nova, server["id"], server["status"], timeout)
    except DrainError as exc:
        outcome.reason = str(exc)
        return outcome
    outcome.moved_to = nova.call("GET", f"/servers/{server['id']}")["server"].get(
        "OS-EXT-SRV-ATTR:host"
    )
    if outcome.moved_to == host:
        outcome.moved_to, outcome.reason = None, "it is still there"
    return outcome


def _wait_migration(nova: Nova, server_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = nova.call("GET", f"/os-migrations?instance_uuid={server_id}&limit=1")
        status = str(found["migrations"][0]["status"]) if found["migrations"] else "none"
        if status in ENDED:
            return status
        if time.monotonic() > deadline:
            raise DrainError(f"its migration is still {status} after {timeout:.0f} s")
        time.sleep(POLL)


def _wait_status(nova: Nova, server_id: str, want: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        server = nova.call("GET", f"/servers/{server_id}")["server"]
        if server["status"] == want and not server.get("OS-EXT-STS:task_state"):
            return
        if time.monotonic() > deadline:
            raise DrainError(f"it is {server['status']}, not {want}, after {timeout:.0f} s")
        time.sleep(POLL)


def _last_error(nova: Nova, server_id: str) -> str:
    actions = nova.call("GET", f"/servers/{server_id}/os-instance-actions")["instanceActions"]
    for action in actions:
        if action.get("message"):
            return str(action["message"])
    return "no reason given"
