"""The billing OpenAPI document (billing/openapi.json) against the API that serves it:
every route under /billing/v1 is described, every described operation is a route, and
the document served is the file, with the caller's server URL.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from souverain.billing.api import BillingApi
from souverain.openstack.routing import EdgeRoute

from .support import Cloud

OPERATIONS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _file() -> dict[str, Any]:
    text = resources.files("souverain.billing").joinpath("openapi.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _routes(cloud: Cloud) -> set[tuple[str, str]]:
    """(path under /v1, method) for each route of the billing API; the version documents
    at / and /v1 describe the API rather than belong to it."""
    api = BillingApi(cloud.platform.billing, cloud.platform.identity, "")
    out = set()
    for route in api.routes():
        assert isinstance(route, EdgeRoute)
        if route.path.startswith("/v1/"):
            out |= {(route.path.removeprefix("/v1"), m.lower()) for m in route.actions}
    return out


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in OPERATIONS
    }


def test_every_route_is_documented_and_every_operation_is_a_route(shared_cloud: Cloud) -> None:
    routes, documented = _routes(shared_cloud), _documented(_file())
    assert routes - documented == set(), "routes missing from billing/openapi.json"
    assert documented - routes == set(), "operations in billing/openapi.json with no route"


def test_documented_path_parameters_are_the_route_parameters(shared_cloud: Cloud) -> None:
    for path, item in _file()["paths"].items():
        in_path = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert in_path == {part[1:-1] for part in path.split("/") if part.startswith("{")}, path


def test_served_document_is_the_file_with_the_callers_server(shared_cloud: Cloud) -> None:
    response = shared_cloud.client.get("/billing/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    served = response.json()
    expected = {**_file(), "servers": [{"url": "http://testserver/billing/v1"}]}
    assert served == expected
    assert list(served) == list(expected)  # the file's order, too
