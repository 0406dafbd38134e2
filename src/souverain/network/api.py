"""Neutron v2.0 wire format (placeholder: replaced by the network service's API)."""

from __future__ import annotations

import json

from starlette.routing import Router
from starlette.types import ASGIApp

from souverain.common.openstack import ErrorLayer
from souverain.network.service import NetworkService


def render_error(_path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    body = {"NeutronError": {"type": title.replace(" ", ""), "message": message, "detail": ""}}
    return json.dumps(body).encode(), "application/json"


def build_app(service: NetworkService, public_url: str = "") -> ASGIApp:
    return ErrorLayer(Router(routes=[]), render_error)
