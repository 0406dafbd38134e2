"""Cinder v3 wire format (placeholder: replaced by the volume service's API)."""

from __future__ import annotations

import json

from starlette.routing import Router
from starlette.types import ASGIApp

from souverain.common.openstack import ErrorLayer
from souverain.volume.service import VolumeService


def render_error(_path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    names = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest"}
    body = {names.get(status, "computeFault"): {"code": status, "message": message}}
    return json.dumps(body).encode(), "application/json"


def build_app(service: VolumeService, public_url: str = "") -> ASGIApp:
    return ErrorLayer(Router(routes=[]), render_error)
