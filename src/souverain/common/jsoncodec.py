"""The one JSON encoder for responses, the audit log and the access log.

orjson where it can (several times faster than the standard library, which
shows on every API call); the standard library for what orjson refuses
(integers beyond 64 bits a client may have stored). Parsing untrusted input
stays with the standard library's stricter, well-known behaviour.
"""

from __future__ import annotations

import json
import math
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


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, though Python's parser takes them."""
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


# The decoder for untrusted request bodies: the standard library's, minus what is not JSON.
STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
