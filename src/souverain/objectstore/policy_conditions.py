"""Bucket policy Condition blocks: parsed once with the policy, evaluated per request.

Operators: String(Not)Equals(IgnoreCase), String(Not)Like, (Not)IpAddress, Date*,
Numeric*, Bool and Null, each also as ...IfExists. Keys are matched without regard to
case against the request's context (aws:SourceIp, aws:SecureTransport, aws:CurrentTime,
aws:UserAgent, aws:Referer, s3:prefix, s3:delimiter, s3:max-keys, s3:x-amz-acl,
s3:VersionId, ...). As in IAM: the keys of one block must all hold, any value of a
key may match, a negated operator holds when no value matches, and a key missing from
the request makes a condition false, except for negated operators, `...IfExists` and
Null. Pure rules: no HTTP.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Context = Mapping[str, str]


class ConditionError(ValueError):
    """A Condition block we cannot evaluate; the message says why."""


def _like(pattern: str, value: str) -> bool:
    from souverain.objectstore.policy import Glob

    return Glob(pattern).match(value)


def _in_network(network: Any, value: str) -> bool:
    try:
        return ipaddress.ip_address(value) in network
    except ValueError:
        return False


def _date(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            value = dt.datetime.fromtimestamp(float(text), dt.UTC)
        except (ValueError, OverflowError):
            raise ConditionError(f"{text!r} is not a date") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConditionError(f"{text!r} is not a number") from None


_ORDER = {
    "Equals": operator.eq,
    "NotEquals": operator.ne,
    "LessThan": operator.lt,
    "LessThanEquals": operator.le,
    "GreaterThan": operator.gt,
    "GreaterThanEquals": operator.ge,
}


def _comparison(kind: str, parse: Callable[[str], Any]) -> dict[str, Any]:
    """Date* or Numeric* operators: (parse the policy's value, compare with the request's)."""
    return {
        f"{kind}{name}": (
            parse,
            lambda wanted, given, cmp=cmp, parse=parse: _ordered(cmp, parse, wanted, given),
        )
        for name, cmp in _ORDER.items()
    }


def _ordered(
    cmp: Callable[[Any, Any], bool], parse: Callable[[str], Any], wanted: Any, given: str
) -> bool:
    try:
        return bool(cmp(parse(given), wanted))
    except ConditionError:
        return False


# operator -> (how to read the policy's values, test(policy value, request value))
_MATCHERS: dict[str, tuple[Callable[[str], Any], Callable[[Any, str], bool]]] = {
    "StringEquals": (str, lambda w, g: w == g),
    "StringEqualsIgnoreCase": (str.lower, lambda w, g: w == g.lower()),
    "StringLike": (str, _like),
    "IpAddress": (
        lambda v: ipaddress.ip_network(v, strict=False),
        _in_network,
    ),
    "Bool": (str.lower, lambda w, g: w == g.lower()),
    **_comparison("Date", _date),
    **_comparison("Numeric", _number),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "NotIpAddress": "IpAddress",
}


@dataclass(frozen=True)
class Condition:
    """One key of one operator block: `operator` applied to `key` against `values`."""

    operator: str
    key: str  # lower case
    values: tuple[Any, ...]
    negated: bool = False
    if_exists: bool = False

    def holds(self, context: Context) -> bool:
        given = context.get(self.key)
        if self.operator == "Null":
            return bool((given is None) == (self.values[0] == "true"))
        if given is None:
            return self.negated or self.if_exists
        _, test = _MATCHERS[self.operator]
        matched = any(test(wanted, given) for wanted in self.values)
        return not matched if self.negated else matched


def parse_conditions(block: Any) -> tuple[Condition, ...]:
    """A statement's Condition object, checked; ConditionError says what is wrong."""
    if not isinstance(block, dict):
        raise ConditionError("Condition must be an object of operators")
    found: list[Condition] = []
    for name, keys in block.items():
        if not isinstance(keys, dict) or not keys:
            raise ConditionError(f"Condition operator {name} must map keys to values")
        base = name.removesuffix("IfExists")
        negated = base in _NEGATED
        core = _NEGATED.get(base, base)
        if core not in _MATCHERS and core != "Null":
            raise ConditionError(f"Condition operator {name} is not supported here")
        for key, raw in keys.items():
            items = raw if isinstance(raw, list) else [raw]
            if not items or not all(isinstance(v, str | int | float | bool) for v in items):
                raise ConditionError(f"Condition values of {key} must be strings")
            texts = [str(v).lower() if isinstance(v, bool) else str(v) for v in items]
            if core == "Null":
                values: tuple[Any, ...] = (texts[0].lower(),)
            else:
                parse = _MATCHERS[core][0]
                try:
                    values = tuple(parse(t) for t in texts)
                except ValueError as exc:
                    raise ConditionError(f"Condition {name} {key}: {exc}") from None
            found.append(Condition(core, key.lower(), values, negated, name.endswith("IfExists")))
    return tuple(found)


# Condition keys that pin a statement to known callers: a statement with one of these
# is not "public" (for BlockPublicPolicy and RestrictPublicBuckets).
PINNING_KEYS = frozenset(
    {"aws:sourceip", "aws:sourcevpc", "aws:sourcevpce", "aws:principalaccount", "aws:userid"}
)


def pins_callers(conditions: tuple[Condition, ...]) -> bool:
    return any(c.key in PINNING_KEYS and not c.negated and not c.if_exists for c in conditions)
