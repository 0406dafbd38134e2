"""The one JSON encoder for responses, the audit log and the access log.

orjson where it can (several times faster than the standard library, which
shows on every API call); the standard library for what orjson refuses
(integers beyond 64 bits a client may have stored). Parsing untrusted input
stays with the standard library's stricter, well-known behaviour.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response


def encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_canonical(value: Any) -> bytes:
    """Sorted keys, no spaces: the same bytes for the same value, for MACs."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode(content)
