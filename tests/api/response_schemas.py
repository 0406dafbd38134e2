"""Response bodies held to the OpenStack API references: a shape per route and microversion.

The facts live in tests/api/apiref/<service>.json, written by scripts/apiref-schemas from
the api-ref sources of nova, cinder, neutron-lib, glance and keystone. For one response
this finds the route template, keeps the fields documented at the negotiated
microversion (a field documented only at a later or earlier one is undocumented here)
and reports a documented-required field that is missing and a field the reference does
not document. It must not judge what the reference leaves open: maps keyed by user data
(metadata, extra specs, addresses) and fields without documented members are opaque,
admin-only fields are never required, and a route the reference does not describe is
not checked. Known gaps of Souverain are listed in tests/api/apiref/known_gaps.toml.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

APIREF = Path(__file__).resolve().parent / "apiref"
KNOWN_GAPS = APIREF / "known_gaps.toml"

Version = tuple[int, int]
# identity, image and network have no microversions: every documented version applies
UNVERSIONED: Version = (10**6, 0)
# objects that keep attributes a caller sets, beside the documented ones: Keystone's
# "extra" attributes of users, projects, domains and groups, Glance's image properties
OPEN_MEMBERS: dict[str, frozenset[str]] = {
    "identity": frozenset(
        {"user", "users", "project", "projects", "domain", "domains", "group", "groups"}
    ),
    "image": frozenset({"", "images"}),
}


@dataclass(frozen=True)
class Api:
    """Where a service is mounted on the platform and how its microversion is named."""

    service: str
    prefix: str  # the platform's mount
    strip: str = ""  # a version segment the reference leaves out of its paths
    minimum: Version | None = None  # None: no microversions
    names: tuple[str, ...] = ()  # in OpenStack-API-Version
    legacy: str | None = None  # e.g. X-OpenStack-Nova-API-Version


APIS = (
    Api("compute", "/compute", "/v2.1", (2, 1), ("compute",), "x-openstack-nova-api-version"),
    Api("volume", "/volume", "", (3, 0), ("volume", "block-storage")),
    Api("network", "/network"),
    Api("image", "/image"),
    Api("identity", "/identity"),
)


@dataclass(frozen=True)
class Violation:
    service: str
    method: str
    template: str
    version: str
    field: str
    problem: str  # "missing required", "undocumented", "admin-only (caller is no admin)"

    def __str__(self) -> str:
        return (
            f"{self.service} {self.method} {self.template} at microversion {self.version}: "
            f"{self.problem} field '{self.field}'"
        )


@dataclass(frozen=True)
class Shape:
    """One documented response at one version, for one kind of caller."""

    allowed: frozenset[str]
    leaves: frozenset[str]  # documented, but nothing under them is checked
    required: Mapping[str, tuple[str, ...]]  # parent path ("" = the body) -> required keys
    admin_only: frozenset[str]
    open_paths: frozenset[str]  # objects that may carry keys of the caller's ("" = the body)
    roots: frozenset[str]  # the body's documented top-level keys
    opaque: bool  # the body is keyed by user data


def parse_version(text: str) -> Version | None:
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", text)
    return (int(match[1]), int(match[2])) if match else None


def _text(version: Version) -> str:
    return "-" if version == UNVERSIONED else f"{version[0]}.{version[1]}"


# -- loading the facts (once per service)


@dataclass(frozen=True, eq=False)  # hashed by identity: one object per route, cached
class Route:
    service: str
    method: str
    template: str
    segments: tuple[str, ...]
    variants: tuple[Mapping[str, Any], ...]
    source: str


def _segments(path: str) -> tuple[str, ...]:
    # Neutron's reference writes some paths with the old `.json` suffix, which stays optional
    return tuple(s for s in path.removesuffix(".json").split("/") if s)


@cache
def routes_of(service: str) -> tuple[Route, ...]:
    data = json.loads((APIREF / f"{service}.json").read_text())
    return tuple(
        Route(
            service,
            r["method"],
            r["path"],
            _segments(r["path"]),
            tuple(r["variants"]),
            f"{data['repository']} {r['variants'][0]['source']}",
        )
        for r in data["routes"]
    )


@cache
def known_gaps() -> frozenset[tuple[str, str, str, str]]:
    if not KNOWN_GAPS.exists():
        return frozenset()
    gaps = tomllib.loads(KNOWN_GAPS.read_text()).get("gap", [])
    return frozenset((g["service"], g["method"], g["path"], g["field"]) for g in gaps)


@lru_cache(maxsize=16384)
def find_route(service: str, method: str, path: str) -> Route | None:
    """The most literal template that matches (`/servers/detail` before `/servers/{id}`)."""
    concrete = _segments(path)
    best: tuple[int, Route] | None = None
    for route in routes_of(service):
        if route.method != method or len(route.segments) != len(concrete):
            continue
        score = 0
        for want, got in zip(route.segments, concrete, strict=True):
            if want.startswith("{") and want.endswith("}"):
                continue
            if want != got:
                break
            score += 1
        else:
            if best is None or score > best[0]:
                best = (score, route)
    return best[1] if best else None


def _valid_at(entry: Mapping[str, Any], version: Version) -> bool:
    if version == UNVERSIONED:
        return True
    low = parse_version(entry["min_version"] or "0.0")
    high = parse_version(entry["max_version"] or "999999.0")
    return low is not None and high is not None and low <= version <= high


@cache
def shape_of(route: Route, index: int, version: Version, is_admin: bool | None) -> Shape:
    variant = route.variants[index]
    fields = [f for f in variant["fields"] if _valid_at(f, version)]
    admin_only = frozenset(p for f in fields if f["admin_only"] for p in f["paths"])
    if is_admin is False:
        fields = [f for f in fields if not f["admin_only"]]
    allowed = frozenset(p for f in fields for p in f["paths"])
    # a path with no member documented by an unambiguous (single-path) field is a leaf
    parents = {
        f["paths"][0].rsplit(".", 1)[0]
        for f in fields
        if len(f["paths"]) == 1 and "." in f["paths"][0]
    }
    leaves = frozenset(p for f in fields for p in f["paths"] if f["opaque"] or p not in parents)
    required: dict[str, list[str]] = {}
    for f in fields:
        if f["required"] and not f["admin_only"] and len(f["paths"]) == 1:
            parent, _, key = f["paths"][0].rpartition(".")
            required.setdefault(parent, []).append(key)
    return Shape(
        allowed=allowed,
        leaves=leaves,
        required={k: tuple(dict.fromkeys(v)) for k, v in required.items()},
        admin_only=admin_only,
        open_paths=frozenset({""} if variant["open"] else ())
        | OPEN_MEMBERS.get(route.service, frozenset()),
        roots=frozenset(p.split(".", 1)[0] for p in allowed),
        opaque=bool(variant["opaque"]),
    )


# -- checking one body


def _walk(value: Any, path: str, shape: Shape, found: list[tuple[str, str]]) -> None:
    if isinstance(value, list):
        for item in value:
            _walk(item, path, shape, found)
        return
    if not isinstance(value, dict):
        return
    for key in shape.required.get(path, ()):
        if key not in value:
            found.append((f"{path}.{key}" if path else key, "missing required"))
    for key, inner in value.items():
        here = f"{path}.{key}" if path else key
        if here not in shape.allowed:
            if here in shape.admin_only:
                found.append((here, "admin-only (caller is no admin)"))
            elif path not in shape.open_paths:
                found.append((here, "undocumented"))
            continue
        if here not in shape.leaves:
            _walk(inner, here, shape, found)


def problems(shape: Shape, body: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if not shape.opaque:
        _walk(body, "", shape, found)
    return found


def check(
    service: str,
    method: str,
    path: str,
    version: Version,
    is_admin: bool | None,
    status: int,
    body: Any,
    gaps: frozenset[tuple[str, str, str, str]] | None = None,
    partial: bool = False,
) -> list[Violation]:
    """Violations of the reference by one response (`path` as the reference writes it),
    less the known gaps (those of known_gaps.toml unless given). `partial`: the caller
    asked for some fields only (`?fields=`), so none is required."""
    route = find_route(service, method, path)
    if route is None or not route.variants:
        return []
    indexes = [i for i, v in enumerate(route.variants) if status in v["status"]]
    indexes = indexes or list(range(len(route.variants)))
    best: tuple[int, int, list[tuple[str, str]]] | None = None
    tops = set(body) if isinstance(body, dict) else set()
    for index in indexes:
        shape = shape_of(route, index, version, is_admin)
        found = problems(shape, body)
        if partial:
            found = [f for f in found if f[1] != "missing required"]
        if not found:
            return []
        # the variant this body is meant to be: its top-level keys first, then the fewest faults
        rank = (len(tops - shape.roots), len(found))
        if best is None or rank < best[:2]:
            best = (*rank, found)
    gaps = known_gaps() if gaps is None else gaps
    return [
        Violation(service, method, route.template, _text(version), field, problem)
        for field, problem in (best[2] if best else [])
        if (service, method, route.template, field) not in gaps
    ]


# -- from an HTTP exchange to a check


def api_for(path: str) -> tuple[Api, str] | None:
    """The service a platform path belongs to, and the path as its reference writes it."""
    for api in APIS:
        if path == api.prefix or path.startswith(api.prefix + "/"):
            rest = path[len(api.prefix) :] or "/"
            if api.strip and (rest == api.strip or rest.startswith(api.strip + "/")):
                inner = rest[len(api.strip) :]
                rest = inner if inner.strip("/") else api.strip
            return api, rest
    return None


def negotiated(
    api: Api, request_headers: Mapping[str, str], answered: str | None
) -> Version | None:
    """The microversion the request asked for, as the servers negotiate it."""
    if api.minimum is None:
        return UNVERSIONED
    raw = None
    for item in request_headers.get("openstack-api-version", "").split(","):
        parts = item.strip().split()
        if len(parts) == 2 and parts[0].lower() in api.names:
            raw = parts[1]
    if raw is None and api.legacy:
        raw = request_headers.get(api.legacy)
    if raw is None:
        return api.minimum
    if raw.strip().lower() == "latest":
        # the response says which version "latest" was
        for item in (answered or "").split(","):
            parts = item.strip().split()
            if len(parts) == 2 and parts[0].lower() in api.names:
                return parse_version(parts[1])
        return None
    return parse_version(raw)


def check_exchange(
    method: str,
    path: str,
    request_headers: Mapping[str, str],
    status: int,
    response_headers: Mapping[str, str],
    body: Any,
    is_admin: bool | None,
    query: str = "",
    gaps: frozenset[tuple[str, str, str, str]] | None = None,
) -> list[Violation]:
    """Violations by one 2xx JSON response of an OpenStack API (others are not checked)."""
    found = api_for(path)
    if found is None or not 200 <= status < 300:
        return []
    api, ref_path = found
    version = negotiated(api, request_headers, response_headers.get("openstack-api-version"))
    if version is None:
        return []
    partial = any(p.split("=", 1)[0] == "fields" for p in query.split("&"))
    if api.service == "volume" and find_route("volume", method, ref_path) is None:
        ref_path = _with_project(ref_path)  # Cinder's project-less paths (3.67)
    return check(api.service, method, ref_path, version, is_admin, status, body, gaps, partial)


def _with_project(path: str) -> str:
    segments = _segments(path)
    if len(segments) >= 2 and segments[0] == "v3":
        return "/" + "/".join(("v3", "{project_id}", *segments[1:]))
    return path


def describe(violations: Iterable[Violation]) -> str:
    lines = [str(v) for v in violations]
    return (
        "the response breaks the API reference (tests/api/apiref):\n  "
        + "\n  ".join(lines)
        + "\nfix the response; only a gap Souverain cannot close yet goes in "
        "tests/api/apiref/known_gaps.toml (service, method, path, field, reason)"
    )


# -- the hook the API tests' client calls on every response

COLLECT_ENV = "APIREF_COLLECT"  # a file: violations are appended there instead of failing
ALL_ENV = "APIREF_ALL"  # set: known gaps are reported too (to see which still happen)
_ADMIN_TOKENS: dict[str, bool] = {}  # token -> holds the admin role, as seen when issued


def _remember_token(path: str, method: str, response: Any, body: Any) -> bool | None:
    """Note whether a token issued through the client is an admin's; None if none issued."""
    if method != "POST" or not path.rstrip("/").endswith("/identity/v3/auth/tokens"):
        return None
    token = response.headers.get("x-subject-token")
    roles = body.get("token", {}).get("roles", []) if isinstance(body, dict) else []
    is_admin = any(isinstance(r, dict) and r.get("name") == "admin" for r in roles)
    if token and response.status_code == 201:
        _ADMIN_TOKENS[token] = is_admin
    return is_admin


def hold_to_reference(response: Any) -> None:
    """Fail (or, with APIREF_COLLECT set, record) a response that breaks its API reference."""
    content_type = response.headers.get("content-type", "")
    if not response.content or "json" not in content_type:
        return
    request = response.request
    try:
        body = response.json()
    except ValueError:
        return
    path, method = request.url.path, request.method
    issued = _remember_token(path, method, response, body)
    token = request.headers.get("x-auth-token")
    is_admin = issued if issued is not None else _ADMIN_TOKENS.get(token) if token else None
    violations = check_exchange(
        method,
        path,
        request.headers,
        response.status_code,
        response.headers,
        body,
        is_admin,
        request.url.query.decode("ascii", "replace"),
        frozenset() if os.environ.get(ALL_ENV) else None,
    )
    if not violations:
        return
    collect = os.environ.get(COLLECT_ENV)
    if not collect:
        raise AssertionError(describe(violations))
    with open(collect, "a", encoding="utf-8") as out:
        for v in violations:
            out.write(json.dumps(dataclasses.asdict(v), sort_keys=True) + "\n")
