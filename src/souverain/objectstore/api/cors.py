"""CORS on the S3 port: preflight answers and the headers an allowed cross-origin request gets.

Evaluates the bucket's stored CORS rules (set through `?cors`, see `buckets`); a
request to a bucket without a matching rule gets no CORS headers at all.
"""

from __future__ import annotations

from typing import Any

from souverain.objectstore.api.wire import Call, Reply
from souverain.objectstore.errors import S3Error
from souverain.objectstore.service import ObjectStoreService


class Cors:
    """A bucket's CORS rules applied to a preflight or to an actual request."""

    def __init__(self, service: ObjectStoreService) -> None:
        self.service = service

    def _rule(
        self, call: Call, origin: str, method: str, wanted_headers: list[str]
    ) -> dict[str, Any] | None:
        if not call.bucket:
            return None
        try:
            bucket = self.service.bucket(call.bucket)
        except S3Error:
            return None
        for rule in bucket.cors or []:
            if not any(_wildcard(o, origin) for o in rule.get("AllowedOrigin", [])):
                continue
            if method not in rule.get("AllowedMethod", []):
                continue
            allowed_headers = [h.lower() for h in rule.get("AllowedHeader", [])]
            if all(any(_wildcard(a, h.lower()) for a in allowed_headers) for h in wanted_headers):
                return rule
        return None

    def preflight(self, call: Call) -> Reply:
        origin = call.header("origin")
        method = call.header("access-control-request-method")
        if not origin or not method:
            raise S3Error(
                "InvalidRequest",
                "A preflight needs the Origin and Access-Control-Request-Method headers.",
                call.resource,
            )
        wanted = [h.strip() for h in call.header("access-control-request-headers").split(",")]
        wanted = [h for h in wanted if h]
        rule = self._rule(call, origin, method, wanted)
        if rule is None:
            raise S3Error(
                "AccessDenied",
                "CORSResponse: This CORS request is not allowed. This is usually because the "
                "evaluation of Origin, request method / Access-Control-Request-Method or "
                "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
                call.resource,
            )
        headers = _allow(rule, origin)
        headers["vary"] = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
        if wanted:
            headers["access-control-allow-headers"] = ", ".join(wanted)
        if rule.get("MaxAgeSeconds"):
            headers["access-control-max-age"] = str(rule["MaxAgeSeconds"])
        return Reply(200, headers=headers)

    def headers(self, call: Call) -> dict[str, str]:
        origin = call.header("origin")
        if not origin or call.method == "OPTIONS":
            return {}
        rule = self._rule(call, origin, call.method, [])
        if rule is None:
            return {}
        return {**_allow(rule, origin), "vary": "Origin"}


def _allow(rule: dict[str, Any], origin: str) -> dict[str, str]:
    """The headers a matching CORS rule grants, on a preflight and on the actual request."""
    headers = {
        "access-control-allow-origin": "*" if "*" in rule["AllowedOrigin"] else origin,
        "access-control-allow-methods": ", ".join(rule["AllowedMethod"]),
    }
    if rule.get("ExposeHeader"):
        headers["access-control-expose-headers"] = ", ".join(rule["ExposeHeader"])
    return headers


def _wildcard(pattern: str, value: str) -> bool:
    if "*" not in pattern:
        return pattern == value
    head, _, tail = pattern.partition("*")
    return value.startswith(head) and value.endswith(tail) and len(value) >= len(head + tail)
