"""Browser form uploads (POST Object): the signed policy document and its conditions.

A form carries a base64 JSON policy (an expiration and a list of conditions) signed
with SigV4; every form field but the signature, the policy, the file and `x-ignore-*`
ones must be named by a condition, and every condition must hold: exact matches
(`{"acl": "public-read"}` or `["eq", "$key", "a"]`), prefixes (`["starts-with",
"$key", "uploads/"]`) and the file's size bounds (`["content-length-range", 0, N]`).
Field names compare without regard to case. Pure rules: no HTTP, no database.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from souverain.objectstore.errors import S3Error

MAX_POLICY_BYTES = 20 * 1024
# Form fields no condition needs to name.
UNCHECKED = frozenset({"x-amz-signature", "file", "policy"})


@dataclass(frozen=True)
class SizeRange:
    least: int
    most: int


def _invalid(detail: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {detail}")


def _denied(detail: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {detail}")


def decode(policy: str) -> dict[str, Any]:
    """The policy document a form carries (base64 of JSON)."""
    if len(policy) > MAX_POLICY_BYTES:
        raise _invalid(f"the policy is over {MAX_POLICY_BYTES} bytes.")
    try:
        document = json.loads(base64.b64decode(policy, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise _invalid("Invalid JSON.") from None
    if not isinstance(document, dict) or not isinstance(document.get("conditions"), list):
        raise _invalid("Policy missing conditions.")
    if not isinstance(document.get("expiration"), str):
        raise _invalid("Policy missing expiration.")
    return document


def _expiration(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _invalid("Invalid 'expiration' value: '" + text + "'") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def check(
    document: dict[str, Any], fields: dict[str, str], bucket: str, now: dt.datetime
) -> SizeRange | None:
    """Refuse a form its policy does not allow; the file's size bounds, if any.

    `fields` are the form's fields by lower-case name (`key` with ${filename} already
    put in), `now` timezone-aware."""
    if _expiration(document["expiration"]) <= now:
        raise _denied("Policy expired.")
    values = {**fields, "bucket": bucket}
    named: set[str] = set()
    size: SizeRange | None = None
    for condition in document["conditions"]:
        if isinstance(condition, dict):
            if len(condition) != 1:
                raise _invalid("each condition object names one field.")
            ((name, wanted),) = condition.items()
            _require(str(wanted) == values.get(name.lower(), ""), condition)
            named.add(name.lower())
        elif isinstance(condition, list) and condition and condition[0] == "content-length-range":
            size = _size_range(condition)
        elif isinstance(condition, list) and len(condition) == 3:
            operator, field, wanted = condition
            if not (isinstance(field, str) and field.startswith("$") and isinstance(wanted, str)):
                raise _invalid(f"Invalid condition: {json.dumps(condition)}")
            name = field[1:].lower()
            given = values.get(name, "")
            if str(operator).lower() == "eq":
                _require(given == wanted, condition)
            elif str(operator).lower() == "starts-with":
                _require(given.startswith(wanted), condition)
            else:
                raise _invalid(f"Invalid condition operator: {operator}")
            named.add(name)
        else:
            raise _invalid(f"Invalid condition: {json.dumps(condition)}")
    extra = sorted(
        name
        for name in fields
        if name not in named | UNCHECKED and not name.startswith("x-ignore-")
    )
    if extra:
        raise _denied(f"Extra input fields: {', '.join(extra)}")
    return size


def _require(held: bool, condition: Any) -> None:
    if not held:
        raise _denied(f"Policy Condition failed: {json.dumps(condition)}")


def _size_range(condition: list[Any]) -> SizeRange:
    if len(condition) != 3 or not all(isinstance(v, int) and v >= 0 for v in condition[1:]):
        raise _invalid(f"Invalid content-length-range: {json.dumps(condition)}")
    return SizeRange(condition[1], condition[2])
