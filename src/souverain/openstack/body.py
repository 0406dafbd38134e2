"""Request bodies: JSON read strictly, members found, pydantic models applied.

Every OpenStack-style API reads its bodies here, so a malformed body, a
duplicate key, a lone UTF-16 surrogate, a NUL character or a body nested too deeply is refused
the same way everywhere, before any service sees it.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from souverain.common.errors import BadRequest, UnsupportedMediaType
from souverain.common.jsoncodec import STRICT_JSON

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object; 415 for another media type, 400 for anything malformed."""
    content_type = request.headers.get("content-type", "application/json")
    if content_type and "json" not in content_type.lower():
        raise UnsupportedMediaType(
            "The request body must be JSON (Content-Type: application/json)."
        )
    raw = await request.body()
    if not raw:
        raise BadRequest("The request body is empty; a JSON object is expected.")
    return decode_object(raw)


def decode_object(raw: bytes) -> dict[str, Any]:
    """`raw` as a JSON object, or a 400 saying what is wrong with it."""
    try:
        data = STRICT_JSON.decode(raw.decode(json.detect_encoding(raw)))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Malformed request body: it is not valid JSON.") from None
    except RecursionError:
        raise BadRequest("Malformed request body: it is nested too deeply.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    if _SURROGATE_ESCAPE.search(raw):
        # Python's json accepts a lone UTF-16 surrogate (`"\ud800"`); such a string can be
        # neither stored nor sent back as UTF-8, so it is refused here, at the edge.
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(
                "Malformed request body: a string holds an unpaired UTF-16 surrogate."
            ) from None
    if b"\\u0000" in raw and holds_nul(data):
        # No text column stores a NUL (PostgreSQL refuses one, SQLite would keep it):
        # refused the same way on every backend, before any service sees it.
        raise BadRequest("Malformed request body: a string holds a NUL character (\\u0000).")
    return data


def holds_nul(value: Any) -> bool:
    """A NUL character in any string of a decoded JSON value, keys included."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    return False


def member(data: Any, key: str) -> dict[str, Any]:
    """`data[key]` as an object, or a 400 naming the key."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, dict):
        raise BadRequest(f"Expecting to find {key} in request body.")
    return value


def parse_model(model: type[M], data: Any, key: str) -> M:
    """`data` checked by `model`; the first error becomes a 400 naming the field under `key`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in (key, *first["loc"]))
        raise BadRequest(f"Invalid input for field '{field}': {first['msg']}.") from None


def validated(model: type[BaseModel], data: Any, key: str) -> dict[str, Any]:
    """The fields of `data` that `model` accepts and the caller set, as a dict."""
    return parse_model(model, data, key).model_dump(exclude_unset=True)
