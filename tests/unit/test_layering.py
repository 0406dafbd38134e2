"""The house rules of the source tree, checked on the source itself.

- A service's rules know nothing of HTTP: only its API modules import Starlette or
  the OpenStack edge (`souverain.openstack`).
- `common/` and the edge import no service; no service imports another's tables.
- Every route of every OpenStack-style API names its policy action, and the policy
  table knows it.
- No source file over 800 lines, no function over 80 (migrations aside).
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import BaseRoute, Mount, Route

from souverain import server
from souverain.common import policy
from souverain.openstack.routing import EdgeRoute

from ..api.support import ADMIN_PASSWORD, settings_for

SRC = Path(__file__).resolve().parents[2] / "src" / "souverain"
SERVICES = ("identity", "compute", "image", "volume", "network", "objectstore", "billing")
HTTP_PACKAGES = ("starlette", "souverain.openstack")


def _modules(folder: Path) -> Iterator[Path]:
    yield from (p for p in sorted(folder.rglob("*.py")) if "migrations" not in p.parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _is_api_module(path: Path, service: str) -> bool:
    """A service's HTTP layer: `api.py`, `api_*.py`, or anything under an `api/` package."""
    inside = path.relative_to(SRC / service).parts
    return inside[0] == "api" or path.stem == "api" or path.stem.startswith("api_")


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("service", SERVICES)
def test_only_a_services_api_modules_speak_http(service: str) -> None:
    offenders = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in _modules(SRC / service)
        if not _is_api_module(path, service)
        for name in sorted(_imports(path))
        if _under(name, HTTP_PACKAGES)
    ]
    assert offenders == []


@pytest.mark.parametrize("folder", ["common", "openstack", "db"])
def test_shared_code_imports_no_service(folder: str) -> None:
    services = tuple(f"souverain.{s}" for s in SERVICES)
    offenders = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in _modules(SRC / folder)
        for name in sorted(_imports(path))
        if _under(name, services)
    ]
    assert offenders == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_never_reads_another_services_tables(service: str) -> None:
    others = tuple(f"souverain.{s}.models" for s in SERVICES if s != service)
    offenders = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in _modules(SRC / service)
        for name in sorted(_imports(path))
        if _under(name, others)
    ]
    assert offenders == []


def test_no_source_file_is_over_800_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in _modules(SRC)
        if (n := len(p.read_text().splitlines())) > 800
    }
    assert long == {}


def test_no_function_is_over_80_lines() -> None:
    long: dict[str, int] = {}
    for path in _modules(SRC):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    long[f"{path.relative_to(SRC)}:{node.lineno} {node.name}"] = length
    assert long == {}


# ----------------------------------------------------------------------- routes


@pytest.fixture(scope="module")
def platform() -> Iterator[server.Platform]:
    root = Path(tempfile.mkdtemp(prefix="souverain-layering-"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings_for(root / "data"))
        try:
            yield built
        finally:
            built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _service_routes(app: Any, seen: set[int] | None = None) -> Iterator[tuple[str, BaseRoute]]:
    """Every route mounted under a service prefix, found by walking the ASGI wrappers."""
    seen = set() if seen is None else seen
    if id(app) in seen:
        return
    seen.add(id(app))
    routes = getattr(app, "routes", None)
    if routes is not None:
        for route in routes:
            if isinstance(route, Mount):
                for path, inner in _service_routes(route.app, seen):
                    yield route.path + path, inner
            elif isinstance(route, Route) and not callable(getattr(route.endpoint, "sub_app", 0)):
                yield route.path, route
        return
    for attribute in ("app", "router", "inner"):
        inner = getattr(app, attribute, None)
        if inner is not None:
            yield from _service_routes(inner, seen)


def test_every_route_names_a_policy_action_the_table_knows(platform: server.Platform) -> None:
    routes = [(path, r) for path, r in _service_routes(platform.app) if path.count("/") > 1]
    prefixes = {path.split("/")[1] for path, _ in routes}
    assert {"identity", "compute", "image", "volume", "network", "billing"} <= prefixes
    unnamed = [path for path, r in routes if not isinstance(r, EdgeRoute)]
    assert unnamed == []
    for path, route in routes:
        assert isinstance(route, EdgeRoute)
        for method in route.methods or ():
            action = route.action_for(method)
            assert action in policy.RULES, f"{method} {path}: {action}"
