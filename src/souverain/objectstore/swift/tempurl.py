"""Temporary URLs: an HMAC over method, expiry and path lets anyone holding the URL act.

Keys are the account's (X-Account-Meta-Temp-URL-Key, -Key-2) and the container's
(X-Container-Meta-Temp-URL-Key, -Key-2). Signatures are hex HMAC-SHA1, -SHA256 or
-SHA512, or `<alg>:<base64>`. Knows nothing of HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
_BY_HEX_LENGTH = {40: "sha1", 64: "sha256", 128: "sha512"}
METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")


@dataclass(frozen=True)
class TempUrl:
    signature: bytes
    algorithm: str
    expires: int
    prefix: str | None


def parse(sig: str, expires: str, prefix: str | None) -> TempUrl | None:
    """The signature asked for, or None when it is not one we can check."""
    try:
        expiry = int(expires)
    except ValueError:
        return None
    if ":" in sig:
        algorithm, _, encoded = sig.partition(":")
        if algorithm not in DIGESTS:
            return None
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            return None
        return TempUrl(raw, algorithm, expiry, prefix)
    found = _BY_HEX_LENGTH.get(len(sig))
    if found is None:
        return None
    try:
        return TempUrl(bytes.fromhex(sig), found, expiry, prefix)
    except ValueError:
        return None


def valid(
    url: TempUrl,
    method: str,
    containers: Iterable[str],
    name: str,
    keys: Iterable[str],
    now: float,
) -> bool:
    """Whether the URL is unexpired and signed by one of `keys` for object `name`.

    `containers` are the container's path as the client may have seen it (behind the
    mount's prefix or not); a prefix URL signs `prefix:<container path>/<prefix>` and
    admits every object whose name starts with the prefix.
    """
    if url.expires < now:
        return False
    if url.prefix is not None and not name.startswith(url.prefix):
        return False
    # a HEAD may use a URL signed for GET or PUT: it reads no more than those
    methods = ("HEAD", "GET", "PUT") if method == "HEAD" else (method,)
    digest = DIGESTS[url.algorithm]
    signs = f"/{name}" if url.prefix is None else f"/{url.prefix}"
    for container in containers:
        signed = container + signs if url.prefix is None else f"prefix:{container}{signs}"
        for verb in methods:
            body = f"{verb}\n{url.expires}\n{signed}".encode()
            for key in keys:
                mac = hmac.new(key.encode(), body, digest).digest()
                if hmac.compare_digest(mac, url.signature):
                    return True
    return False
