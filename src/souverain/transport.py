"""The listeners' guard: rate limits per client and per credential, and security headers.

`TransportGuard` wraps the whole application of a serving process (both listeners):
every request takes a token from its client IP's bucket; a login (Keystone password
or EC2/S3 token auth on the OpenStack listener, a SigV4 signature on S3's) is refused
while the client's or the credential's bucket of failures is empty, and each failed
one takes a token from both. Refusals are each API's own: an OpenStack fault with 429
and Retry-After, S3's `SlowDown` 503 (what AWS answers a client it throttles).

Buckets live in this process's memory: with N workers a client may get up to N times
a rate, as connections spread over them. This module must not keep a password, a
signature or a request body: a credential's bucket is keyed by the user name or access
key id only, and nothing here logs.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from souverain.common.ids import new_request_id
from souverain.common.middleware import ErrorRenderer
from souverain.config import LimitsSettings
from souverain.objectstore import xml as s3_xml

# Where a wrong credential is a 401 (or S3's 403 with one of these codes).
AUTH_PATHS = frozenset(
    {"/identity/v3/auth/tokens", "/identity/v3/ec2tokens", "/identity/v3/s3tokens"}
)
S3_AUTH_FAILURES = (b"<Code>SignatureDoesNotMatch</Code>", b"<Code>InvalidAccessKeyId</Code>")
AUTH_BODY_PEEK = 64 * 1024  # a login body larger than this is counted per client only
MAX_BUCKETS = 100_000  # per table; full buckets are forgotten first (they equal a new one)
SLOW_DOWN = "Please reduce your request rate."
TOO_MANY = "Too many requests from this client; retry after the seconds in Retry-After."
TOO_MANY_FAILURES = "Too many failed logins; retry after the seconds in Retry-After."

# Headers every response gets, and those the OpenStack APIs' own responses get (not the
# bytes of an object a customer serves from Swift or S3, which are the customer's page).
ALWAYS = ((b"x-content-type-options", b"nosniff"),)
API_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")
NO_STORE = (b"cache-control", b"no-store")
NO_STORE_PREFIXES = ("/identity/", "/key-manager/")  # tokens, credentials, secrets
CUSTOMER_CONTENT = ("/object-storage/",)


class TokenBuckets:
    """Token buckets by key: `capacity` tokens, refilled at `rate` per second."""

    def __init__(
        self, capacity: float, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.rate = rate
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def _level(self, key: str, now: float) -> float:
        tokens, when = self.buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - when) * self.rate)

    def wait(self, key: str) -> float:
        """Seconds until `key` may spend a token: 0 if it may now."""
        level = self._level(key, self.clock())
        return 0.0 if level >= 1 else (1 - level) / self.rate

    def take(self, key: str) -> float:
        """Spend a token if there is one; the seconds to wait when there is not."""
        now = self.clock()
        level = self._level(key, now)
        if level < 1:
            self.buckets[key] = (level, now)
            return (1 - level) / self.rate
        self.buckets[key] = (level - 1, now)
        if len(self.buckets) > MAX_BUCKETS:
            self._forget(now)
        return 0.0

    def _forget(self, now: float) -> None:
        """Drop the buckets that are full again; if that is not enough, the oldest half."""
        for key in [k for k in self.buckets if self._level(k, now) >= self.capacity]:
            del self.buckets[key]
        if len(self.buckets) > MAX_BUCKETS:
            for key in list(self.buckets)[: len(self.buckets) // 2]:
                del self.buckets[key]


@dataclass(frozen=True)
class Limits:
    """The buckets of one serving process, built from `[limits]` (None: that limit is off)."""

    clients: TokenBuckets | None
    failing_clients: TokenBuckets | None
    failing_credentials: TokenBuckets | None

    @classmethod
    def from_settings(
        cls, settings: LimitsSettings, clock: Callable[[], float] = time.monotonic
    ) -> Limits:
        def buckets(capacity: float, rate: float) -> TokenBuckets | None:
            return TokenBuckets(capacity, rate, clock) if capacity > 0 and rate > 0 else None

        return cls(
            buckets(settings.client_burst, settings.client_rate),
            buckets(settings.auth_failures_per_client, 1 / settings.client_failure_refill),
            buckets(settings.auth_failures_per_credential, 1 / settings.credential_failure_refill),
        )


def _dig(data: object, *keys: str) -> object:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def keystone_credential(body: bytes) -> str | None:
    """Whose login a Keystone/EC2 token request is: the user's name (with its domain) or id,
    or the access key; None when the body does not say (it is then the API's to refuse)."""
    try:
        auth = json.loads(body)
    except ValueError:
        return None
    access = _dig(auth, "credentials", "access") or _dig(auth, "credential", "access")
    if isinstance(access, str):
        return "access:" + access
    user = _dig(auth, "auth", "identity", "password", "user")
    user_id, name = _dig(user, "id"), _dig(user, "name")
    if isinstance(user_id, str):
        return "user-id:" + user_id
    domain = _dig(user, "domain", "id") or _dig(user, "domain", "name") or ""
    if isinstance(name, str):
        return f"user:{domain}/{name}"
    return None


def s3_credential(scope: Scope) -> str | None:
    """The access key id a SigV4 request names (header or presigned query)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and b"Credential=" in value:
            key = value.split(b"Credential=", 1)[1].split(b"/", 1)[0].strip()
            return "access:" + bytes(key).decode("latin-1")
    query = scope.get("query_string", b"")
    if b"X-Amz-Credential=" in query:
        key = query.split(b"X-Amz-Credential=", 1)[1].split(b"%2F", 1)[0].split(b"/", 1)[0]
        return "access:" + bytes(key).decode("latin-1")
    return None


class TransportGuard:
    """Rate limits and security headers around both listeners' applications."""

    def __init__(self, app: ASGIApp, limits: Limits, render: ErrorRenderer, s3_port: int) -> None:
        self.app = app
        self.limits = limits
        self.render = render
        self.s3_port = s3_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s3 = (scope.get("server") or ("", 0))[1] == self.s3_port
        client = (scope.get("client") or ("", 0))[0]
        send = self._with_headers(scope, send, s3)
        if self.limits.clients is not None:
            wait = self.limits.clients.take(client)
            if wait:
                await self._refuse(scope, send, s3, wait, TOO_MANY)
                return
        login = s3 or (scope["method"] == "POST" and scope["path"] in AUTH_PATHS)
        if not login or self.limits.failing_clients is None:
            await self.app(scope, receive, send)
            return
        await self._login(scope, receive, send, s3, client)

    async def _login(
        self, scope: Scope, receive: Receive, send: Send, s3: bool, client: str
    ) -> None:
        """A request that may carry credentials: refused while its buckets are empty; its
        failure, when it fails, spent from them."""
        failing, per_credential = self.limits.failing_clients, self.limits.failing_credentials
        assert failing is not None
        if s3:
            credential = s3_credential(scope)
        else:
            receive, body = await _peek(receive)
            credential = keystone_credential(body) if body is not None else None
        wait = failing.wait(client)
        if credential is not None and per_credential is not None:
            wait = max(wait, per_credential.wait(credential))
        if wait:
            await self._refuse(scope, send, s3, wait, TOO_MANY_FAILURES)
            return
        failed = False
        status = 0

        async def watch(message: Message) -> None:
            nonlocal failed, status
            if message["type"] == "http.response.start":
                status = message["status"]
                failed = status == 401 and not s3
            elif s3 and status == 403 and not failed and message["type"] == "http.response.body":
                body = message.get("body", b"")
                failed = any(code in body for code in S3_AUTH_FAILURES)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if failed:
                failing.take(client)
                if credential is not None and per_credential is not None:
                    per_credential.take(credential)

    async def _refuse(self, scope: Scope, send: Send, s3: bool, wait: float, message: str) -> None:
        retry = str(max(1, math.ceil(wait)))
        if s3:
            status, content_type = 503, "application/xml"
            body = s3_xml.error_document("SlowDown", SLOW_DOWN, scope["path"], new_request_id())
        else:
            status = 429
            body, content_type = self.render(scope["path"], 429, "Too Many Requests", message)
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", retry.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _with_headers(self, scope: Scope, send: Send, s3: bool) -> Send:
        path = scope["path"]
        extra = _extra_headers(
            scope.get("scheme") == "https",
            not s3 and not path.startswith(CUSTOMER_CONTENT),
            not s3 and path.startswith(NO_STORE_PREFIXES),
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in extra if n not in present]
                message["headers"] = headers
            await send(message)

        return send_with_headers


@functools.cache
def _extra_headers(https: bool, api: bool, no_store: bool) -> tuple[tuple[bytes, bytes], ...]:
    """The headers a response gets: over TLS, from an API (not a customer's bytes), and
    from identity or the key manager (never cached)."""
    return ALWAYS + (HSTS,) * https + API_HEADERS * api + (NO_STORE,) * no_store


async def _peek(receive: Receive) -> tuple[Receive, bytes | None]:
    """Read a small body ahead (None above AUTH_BODY_PEEK), and a `receive` replaying it."""
    held: list[Message] = []
    size = 0
    while True:
        message = await receive()
        held.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > AUTH_BODY_PEEK or not message.get("more_body", False):
            break
    complete = held[-1]["type"] == "http.request" and not held[-1].get("more_body", False)
    body = (
        b"".join(m.get("body", b"") for m in held) if complete and size <= AUTH_BODY_PEEK else None
    )

    async def replay() -> Message:
        if held:
            return held.pop(0)
        return await receive()

    return replay, body
