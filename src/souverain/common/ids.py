"""The one id generator: 32 lowercase hex characters, as Keystone and most of OpenStack use."""

from __future__ import annotations

import re
import secrets
import uuid

_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    return uuid.uuid4().hex


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret for passwords, application credentials and keys."""
    return secrets.token_urlsafe(nbytes)


def looks_like_id(value: str) -> bool:
    return bool(_HEX32.match(value))
