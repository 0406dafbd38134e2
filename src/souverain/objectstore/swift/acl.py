"""Container ACLs (X-Container-Read, X-Container-Write): who besides the owner may act.

Elements, comma separated: `.r:*` (anyone, any referrer), `.r:<host>` and `.r:-<host>`
(referrers), `.rlistings` (listing for those the referrers admit), `<project>:<user>`,
`<project>:*`, `*:<user>` and `<project>` grants. Knows nothing of HTTP.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

MAX_ACL_BYTES = 2048


class AclError(ValueError):
    """An ACL string Swift refuses; the message says which element."""


@dataclass(frozen=True)
class Grants:
    referrers: tuple[str, ...] = ()
    listings: bool = False
    accounts: tuple[tuple[str, str], ...] = ()  # (project, user), "*" for any


def parse_acl(text: str, write: bool = False) -> Grants:
    if len(text) > MAX_ACL_BYTES:
        raise AclError(f"ACLs are at most {MAX_ACL_BYTES} bytes.")
    referrers: list[str] = []
    listings = False
    accounts: list[tuple[str, str]] = []
    for element in (e.strip() for e in text.split(",")):
        if not element:
            continue
        if element.startswith("."):
            if write:
                raise AclError(f"Referrers are not allowed in write ACLs: {element!r}")
            if element == ".rlistings":
                listings = True
            elif element.startswith((".r:", ".ref:", ".referer:", ".referrer:")):
                value = element.split(":", 1)[1]
                if not value or value in ("-", "-*"):
                    raise AclError(f"No host given in ACL element {element!r}")
                referrers.append(value)
            else:
                raise AclError(f"Unknown designator {element!r} in ACL")
        else:
            project, _, user = element.partition(":")
            accounts.append((project, user or "*"))
    return Grants(tuple(referrers), listings, tuple(accounts))


def _host_matches(host: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("."):
        return host.endswith(pattern) or host == pattern[1:]
    return host == pattern


def referrer_allows(grants: Grants, referer: str) -> bool:
    """Whether the referrer rules admit a request carrying this Referer header."""
    host = urllib.parse.urlparse(referer).hostname or "" if referer else ""
    allowed = False
    for rule in grants.referrers:
        negative = rule.startswith("-")
        if _host_matches(host, rule[1:] if negative else rule):
            allowed = not negative
    return allowed


def grants_user(grants: Grants, project_id: str | None, user_id: str | None) -> bool:
    if project_id is None or user_id is None:
        return False
    for project, user in grants.accounts:
        if project in (project_id, "*") and user in (user_id, "*"):
            return True
    return False


def is_public_read(grants: Grants) -> bool:
    """Anyone may read objects and list: what S3 calls the canned ACL `public-read`."""
    return "*" in grants.referrers and grants.listings
