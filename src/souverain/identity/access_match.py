"""Matching a request against an application credential's access rules.

A rule names a service type, a path relative to that service's root on this cloud
(`/v2.1/servers` for compute, `/v3/<project>/volumes` for block-storage, `/v1/AUTH_x/c`
for object-store) and a method. In a path, `*` (or `{name}`) stands for one path segment
and `**` for any rest of the path, slashes included. Pure: no database, no HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# Where each service answers on the OpenStack listener (the first segment of its
# catalog path, `app.SERVICES`), with its catalog type.
MOUNTS: dict[str, str] = {
    "identity": "identity",
    "compute": "compute",
    "image": "image",
    "volume": "block-storage",
    "network": "network",
    "object-storage": "object-store",
    "key-manager": "key-manager",
}
# Other names clients use for the same service type (the service-types authority's aliases).
ALIASES: dict[str, frozenset[str]] = {
    "block-storage": frozenset({"volume", "volumev2", "volumev3", "block-store"}),
    "compute": frozenset(),
    "identity": frozenset(),
    "image": frozenset(),
    "network": frozenset(),
    "object-store": frozenset(),
    "key-manager": frozenset(),
}


@lru_cache(maxsize=4096)
def _pattern(path: str) -> re.Pattern[str]:
    """A rule's path as a regular expression over a request's path."""
    parts: list[str] = []
    for token in re.finditer(r"\{[^}]*\}|\*\*|\*|[^{*]+|.", path):
        text = token.group()
        if text == "**":
            parts.append(".*")
        elif text == "*" or text.startswith("{"):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(text))
    return re.compile("".join(parts))


@dataclass(frozen=True)
class AllowedCall:
    """One access rule, ready to match requests."""

    service: str
    path: str
    method: str

    def matches(self, service_type: str, path: str, method: str) -> bool:
        if method != self.method:
            return False
        if self.service != service_type and self.service not in ALIASES.get(
            service_type, frozenset()
        ):
            return False
        return _pattern(self.path).fullmatch(path) is not None


def service_type_at(root_path: str) -> str | None:
    """The catalog type of the service mounted at `root_path` (`/compute` -> compute)."""
    mount = root_path.rstrip("/").rsplit("/", 1)[-1]
    return MOUNTS.get(mount)


def permits(rules: Sequence[AllowedCall] | None, root_path: str, path: str, method: str) -> bool:
    """Whether a token limited to `rules` (None: not limited) may make this call."""
    if rules is None:
        return True
    service_type = service_type_at(root_path)
    if service_type is None:
        return False
    return any(rule.matches(service_type, path or "/", method) for rule in rules)
