"""Presigned S3 URLs (AWS Signature Version 4, query-string form), standard library only.

The load generator sends plain HTTP requests to URLs signed here, so the cost of
signing is paid once per URL, before the clock runs, and the same request
bytes go to every server. Not a general S3 client: path-style addressing, the
`host` header as the only signed header, and an unsigned payload.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def _encode(text: str, safe: str = "") -> str:
    """RFC 3986 encoding as SigV4 wants it: only A-Z a-z 0-9 - _ . ~ stay as they are."""
    return quote(text, safe=safe + "-_.~")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str


@dataclass
class Presigner:
    """Signs URLs for one server (`host` as the client will send it: "127.0.0.1:PORT").

    The signing time is fixed when the presigner is made, so every URL of a
    batch shares one derived key; `expires_s` must cover the whole run.
    """

    credentials: Credentials
    host: str
    expires_s: int = 6 * 3600
    now: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        stamp = time.gmtime(self.now)
        self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", stamp)
        day = self._amz_date[:8]
        self._scope = f"{day}/{self.credentials.region}/s3/aws4_request"
        key = _hmac(f"AWS4{self.credentials.secret_key}".encode(), day)
        for part in (self.credentials.region, "s3", "aws4_request"):
            key = _hmac(key, part)
        self._signing_key = key

    def url_path(self, method: str, path: str, query: dict[str, str] | None = None) -> str:
        """Path and query string (no scheme, no host) of a presigned request."""
        params = {
            **(query or {}),
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Credential": f"{self.credentials.access_key}/{self._scope}",
            "X-Amz-Date": self._amz_date,
            "X-Amz-Expires": str(self.expires_s),
            "X-Amz-SignedHeaders": "host",
        }
        canonical_query = "&".join(
            f"{name}={value}"
            for name, value in sorted((_encode(k), _encode(v)) for k, v in params.items())
        )
        canonical_path = _encode(path, safe="/")
        canonical_request = "\n".join(
            (method, canonical_path, canonical_query, f"host:{self.host}", "", "host",
             UNSIGNED_PAYLOAD)
        )  # fmt: skip
        string_to_sign = "\n".join(
            (ALGORITHM, self._amz_date, self._scope,
             hashlib.sha256(canonical_request.encode()).hexdigest())
        )  # fmt: skip
        signature = hmac.new(self._signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{canonical_path}?{canonical_query}&X-Amz-Signature={signature}"

    def url(self, method: str, path: str, query: dict[str, str] | None = None) -> str:
        return f"http://{self.host}{self.url_path(method, path, query)}"
