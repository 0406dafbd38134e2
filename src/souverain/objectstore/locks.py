"""Object Lock (WORM): the rules on a version's retention and legal hold, as pure functions.

A version under retention (until its date) or under legal hold cannot be deleted
by anyone: versioning is on and cannot be suspended in a bucket with Object Lock,
so a write never replaces a version in place. GOVERNANCE retention gives way to a
caller who may bypass it (`policy.may_bypass_governance`) and asks to with
`x-amz-bypass-governance-retention: true`; COMPLIANCE retention gives way to no
one, cloud administrators included, and can only be extended until it ends.
Knows nothing of HTTP, XML or the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from souverain.objectstore.errors import S3Error

MODES = ("GOVERNANCE", "COMPLIANCE")
MAX_DAYS = 36_500
MAX_YEARS = 100
NO_CONFIGURATION = "Bucket is missing Object Lock Configuration"
PROTECTED = "Access Denied because object protected by object lock."


@dataclass(frozen=True)
class Retention:
    """A version's retention: a mode and the (naive UTC) time it holds until."""

    mode: str
    until: dt.datetime


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise S3Error("InvalidArgument", "Unknown wormMode directive.")
    return mode


def parse_date(text: str) -> dt.datetime:
    """An ISO 8601 time as S3 takes it (`2030-01-01T00:00:00Z`), as naive UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise S3Error(
            "InvalidArgument",
            "The retain until date must be an ISO 8601 date and time, such as "
            "2030-01-01T00:00:00Z.",
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def future_retention(mode: str, until: dt.datetime, now: dt.datetime) -> Retention:
    """A retention asked for now: a known mode, a date still to come."""
    if until <= now:
        raise S3Error("InvalidArgument", "The retain until date must be in the future!")
    return Retention(check_mode(mode), until)


def check_rule(mode: str, days: str, years: str) -> dict[str, Any]:
    """A bucket's default retention (`Mode` with `Days` or `Years`), checked."""
    if mode not in MODES:
        raise S3Error("MalformedXML", "DefaultRetention Mode must be GOVERNANCE or COMPLIANCE.")
    if bool(days) == bool(years):
        raise S3Error("MalformedXML", "DefaultRetention takes either Days or Years, not both.")
    unit, text, limit = ("Days", days, MAX_DAYS) if days else ("Years", years, MAX_YEARS)
    try:
        amount = int(text)
    except ValueError:
        amount = 0
    if not 0 < amount <= limit:
        raise S3Error(
            "InvalidArgument",
            f"Default retention period must be a positive integer value of at most {limit} "
            f"{unit.lower()}.",
        )
    return {"Mode": mode, unit: amount}


def default_retention(rule: dict[str, Any] | None, now: dt.datetime) -> Retention | None:
    """What a bucket's default rule gives a new version made now (None: no rule)."""
    if not rule or "Mode" not in rule:
        return None
    if "Days" in rule:
        return Retention(rule["Mode"], now + dt.timedelta(days=int(rule["Days"])))
    years = int(rule["Years"])
    try:
        until = now.replace(year=now.year + years)
    except ValueError:  # 29 February into a year without one
        until = now.replace(year=now.year + years, day=28)
    return Retention(rule["Mode"], until)


def held(
    mode: str | None, until: dt.datetime | None, legal_hold: bool | None, now: dt.datetime
) -> str | None:
    """What keeps a version from deletion now: "legal-hold", the retention mode, or None."""
    if legal_hold:
        return "legal-hold"
    if mode and until is not None and until > now:
        return mode
    return None


def check_delete(
    mode: str | None,
    until: dt.datetime | None,
    legal_hold: bool | None,
    now: dt.datetime,
    bypass: bool,
    resource: str,
) -> None:
    """Refuse to delete a version that retention or a legal hold protects."""
    holder = held(mode, until, legal_hold, now)
    if holder is None or (holder == "GOVERNANCE" and bypass):
        return
    raise S3Error("AccessDenied", PROTECTED, resource)


def check_retention_change(
    current: Retention | None, wanted: Retention | None, now: dt.datetime, bypass: bool
) -> None:
    """May a version's retention become `wanted` (None: removed)?

    Retention in force may always be lengthened, and GOVERNANCE made COMPLIANCE;
    shortening or removing it, or making COMPLIANCE GOVERNANCE, needs a GOVERNANCE
    retention and the bypass; COMPLIANCE cannot be weakened at all."""
    if current is None or current.until <= now:
        return
    stronger = (
        wanted is not None
        and wanted.until >= current.until
        and (wanted.mode == current.mode or wanted.mode == "COMPLIANCE")
    )
    if stronger:
        return
    if current.mode == "GOVERNANCE" and bypass:
        return
    raise S3Error("AccessDenied", "Access Denied")
