"""Bucket lifecycle rules: their checks, which objects a rule's filter takes, and when an
action falls due. Pure functions over the stored rules; the sweep that acts is `sweep`.

Rules are stored as S3's document has them (element names as keys), so GET gives back
what PUT was sent. As on S3, a period of N days ends at the first midnight UTC at or
after the start plus N days. Knows nothing of HTTP, XML or the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from souverain.objectstore.errors import S3Error

MAX_RULES = 1000
MAX_ID = 255
ACTIONS = ("Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")


@dataclass(frozen=True)
class Scope:
    """What a rule's filter takes: a key prefix, tags all present, a size window."""

    prefix: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    larger_than: int | None = None
    smaller_than: int | None = None

    def takes(self, key: str, tags: dict[str, str], size: int) -> bool:
        if not key.startswith(self.prefix):
            return False
        if any(tags.get(k) != v for k, v in self.tags.items()):
            return False
        if self.larger_than is not None and size <= self.larger_than:
            return False
        return self.smaller_than is None or size < self.smaller_than


def scope_of(rule: dict[str, Any]) -> Scope:
    """The objects a stored rule applies to."""
    if "Filter" not in rule:
        return Scope(prefix=rule.get("Prefix", ""))
    found = rule["Filter"]
    found = found.get("And", found)
    tags = found.get("Tag", [])
    tags = tags if isinstance(tags, list) else [tags]
    return Scope(
        prefix=found.get("Prefix", ""),
        tags={t["Key"]: t["Value"] for t in tags},
        larger_than=found.get("ObjectSizeGreaterThan"),
        smaller_than=found.get("ObjectSizeLessThan"),
    )


def midnight_before(now: dt.datetime) -> dt.datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def started_before(days: int, now: dt.datetime) -> dt.datetime:
    """The latest start whose `days`-day period (to the next midnight UTC) has ended."""
    return midnight_before(now) - dt.timedelta(days=days)


def _positive(value: Any, what: str) -> int:
    if not isinstance(value, int) or value <= 0:
        raise S3Error("InvalidArgument", f"'{what}' must be a positive integer")
    return value


def check_rules(rules: list[dict[str, Any]]) -> None:
    """A whole configuration, as S3 checks it; the first problem raises."""
    if not 1 <= len(rules) <= MAX_RULES:
        raise S3Error("MalformedXML", f"A lifecycle configuration holds 1 to {MAX_RULES} rules.")
    ids = [r["ID"] for r in rules if r.get("ID")]
    if len(ids) != len(set(ids)):
        raise S3Error(
            "InvalidArgument", "Rule ID must be unique. Found same ID for more than one rule"
        )
    for rule in rules:
        check_rule(rule)


def check_rule(rule: dict[str, Any]) -> None:
    if len(rule.get("ID", "")) > MAX_ID:
        raise S3Error("InvalidArgument", f"ID length should not exceed allowed limit of {MAX_ID}")
    if rule.get("Status") not in ("Enabled", "Disabled"):
        raise S3Error("MalformedXML", "A rule's Status must be Enabled or Disabled.")
    if not any(action in rule for action in ACTIONS):
        raise S3Error("InvalidRequest", "At least one action needs to be specified in a rule")
    tagged = bool(scope_of(rule).tags)
    expiration = rule.get("Expiration")
    if expiration is not None:
        _check_expiration(expiration, tagged)
    noncurrent = rule.get("NoncurrentVersionExpiration")
    if noncurrent is not None:
        _positive(noncurrent.get("NoncurrentDays"), "NoncurrentDays")
        if "NewerNoncurrentVersions" in noncurrent:
            _positive(noncurrent["NewerNoncurrentVersions"], "NewerNoncurrentVersions")
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort is not None:
        _positive(abort.get("DaysAfterInitiation"), "DaysAfterInitiation")
        if tagged:
            raise S3Error(
                "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags."
            )


def _check_expiration(expiration: dict[str, Any], tagged: bool) -> None:
    given = [k for k in ("Days", "Date", "ExpiredObjectDeleteMarker") if k in expiration]
    if len(given) != 1:
        raise S3Error(
            "MalformedXML",
            "An Expiration takes exactly one of Days, Date or ExpiredObjectDeleteMarker.",
        )
    if "Days" in expiration:
        _positive(expiration["Days"], "Days' for Expiration action")
    elif "Date" in expiration:
        parse_date(expiration["Date"])
    elif tagged:
        raise S3Error(
            "InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with object tags."
        )


def parse_date(text: str) -> dt.datetime:
    """An Expiration Date: ISO 8601, at midnight UTC (naive UTC returned)."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise S3Error(
            "InvalidArgument", "'Date' must be an ISO 8601 date at midnight GMT."
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if value != midnight_before(value):
        raise S3Error("InvalidArgument", "'Date' must be at midnight GMT")
    return value


def expiry(
    rules: list[dict[str, Any]] | None,
    key: str,
    tags: dict[str, str],
    size: int,
    created: dt.datetime,
) -> tuple[dt.datetime, str] | None:
    """When the current version of `key` expires and by which rule (the earliest), if any:
    what S3 tells in `x-amz-expiration`."""
    found: list[tuple[dt.datetime, str]] = []
    for rule in enabled(rules):
        expiration = rule.get("Expiration", {})
        if not ("Days" in expiration or "Date" in expiration):
            continue
        if not scope_of(rule).takes(key, tags, size):
            continue
        if "Date" in expiration:
            found.append((parse_date(expiration["Date"]), rule.get("ID", "")))
            continue
        end = created + dt.timedelta(days=int(expiration["Days"]))
        midnight = midnight_before(end)
        found.append(
            (midnight if midnight == end else midnight + dt.timedelta(days=1), rule.get("ID", ""))
        )
    return min(found) if found else None


def enabled(rules: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [r for r in rules or [] if r.get("Status") == "Enabled"]
