"""Microversion negotiation, one function for every API that has them.

A client names the version it wants in `OpenStack-API-Version: <type> X.Y`
(several comma-separated or repeated headers may name several services), or in
the service's legacy header; no header means the minimum, `latest` the
maximum. A malformed version is a 400, one out of range a 406.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from souverain.common.errors import ApiError, BadRequest

Version = tuple[int, int]

_VERSION = re.compile(r"\s*(\d+)\.(\d+)\s*")
SCOPE_KEY = "souverain.microversion"


class NotAcceptable(ApiError):
    status = 406
    title = "Not Acceptable"


def version_text(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


@dataclass(frozen=True)
class Microversions:
    """One API's range and the names clients use for it."""

    service_types: tuple[str, ...]  # accepted in OpenStack-API-Version, first is canonical
    minimum: Version
    maximum: Version
    legacy_header: str | None = None  # e.g. X-OpenStack-Nova-API-Version

    def negotiate(self, request: Request) -> Version:
        raw = self.requested(request)
        if raw is None:
            return self.minimum
        if raw.strip().lower() == "latest":
            return self.maximum
        match = _VERSION.fullmatch(raw)
        if not match:
            raise BadRequest(
                f"API Version String {raw[:32]} is of invalid format. Must be of format "
                "MajorNum.MinorNum."
            )
        version = (int(match[1]), int(match[2]))
        if not self.minimum <= version <= self.maximum:
            raise NotAcceptable(
                f"Version {raw[:32]} is not supported by the API. Minimum is "
                f"{version_text(self.minimum)} and maximum is {version_text(self.maximum)}."
            )
        return version

    def requested(self, request: Request) -> str | None:
        """The version string the client sent for this API, or None."""
        raw = None
        for header in request.headers.getlist("openstack-api-version"):
            for item in header.split(","):
                parts = item.strip().split()
                if len(parts) == 2 and parts[0].lower() in self.service_types:
                    raw = parts[1]
        if raw is None and self.legacy_header:
            raw = request.headers.get(self.legacy_header)
        return raw

    def headers(self, version: Version) -> dict[str, str]:
        """What a response (or fault) says about the version it was made at."""
        text = version_text(version)
        out = {"OpenStack-API-Version": f"{self.service_types[0]} {text}"}
        vary = "OpenStack-API-Version"
        if self.legacy_header:
            out[_header_case(self.legacy_header)] = text
            vary += f", {_header_case(self.legacy_header)}"
        out["Vary"] = vary
        return out


def _header_case(name: str) -> str:
    words = name.split("-")
    return "-".join(
        "OpenStack"
        if w.lower() == "openstack"
        else w.upper()
        if w.lower() == "api"
        else w.capitalize()
        for w in words
    )


def microversion_of(request: Request) -> Version:
    """The version the edge negotiated for this request."""
    version: Version = request.scope[SCOPE_KEY]
    return version
