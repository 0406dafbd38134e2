"""The `name` filter of a server list: Nova's regular expression, refused when matching
it could take more than a few milliseconds a row. No HTTP, no database.

Python's `re` backtracks, so a pattern such as `(a+)+$` or `(.*a){20}` takes
exponential time on a name that almost matches, and a list request would hold a
worker for minutes. Before compiling, the pattern's parse tree gives an upper bound
on the ways it can match a name of at most `NAME_MAX` characters: a sequence
multiplies its parts, an alternation adds them, a repeat sums the powers of its body,
and `re.search` tries every start unless the pattern begins with `^`. Patterns over
`MAX_WAYS` are refused, as are back-references (they defeat any such bound).
Ordinary filters (`^web-`, `db[0-9]+`, `^(alpha|beta)$`, `a.*b`, `^web-.*-db.*$`)
pass; the costliest patterns the bound lets through take under 10 ms on a
255-character name (measured on a busy shared 2-core VM).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from souverain.common.errors import BadRequest

NAME_MAX = 255  # server names are 1 to 255 characters (schemas.NAME_RE)
PATTERN_MAX = 255
# One unbounded single-character repeat at every start, or two after a `^`.
MAX_WAYS = 256 * 256

# The stdlib's own parser: the tree `re.compile` builds from, so the bound is computed
# on exactly what will run. Reached by name: it has no public import path nor stubs.
_parser: Any = importlib.import_module("re._parser")

_SINGLE = {"LITERAL", "NOT_LITERAL", "ANY", "IN", "AT", "CATEGORY", "RANGE", "NEGATE"}
_BEGINNINGS = {"AT_BEGINNING", "AT_BEGINNING_STRING"}
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}


class _TooCostly(Exception):
    pass


def bounded_pattern(raw: str | None) -> re.Pattern[str] | None:
    """The compiled `name` filter, or BadRequest when it is not a regular expression or
    its matching cost has no small bound."""
    if not raw:
        return None
    if len(raw) > PATTERN_MAX:
        raise BadRequest(
            f"Invalid name filter: the pattern is longer than {PATTERN_MAX} characters."
        )
    try:
        compiled = re.compile(raw)
        _matching_cost(_parser.parse(raw))
    except re.error:
        raise BadRequest(f"Invalid name filter: {raw!r} is not a regular expression.") from None
    except _TooCostly as exc:
        raise BadRequest(
            f"Invalid name filter: {raw!r} could take too long to match ({exc}); "
            "use a simpler regular expression."
        ) from None
    return compiled


def _matching_cost(tree: Any) -> int:
    """Ways to match from one start, times the starts `re.search` tries: one when the
    pattern is anchored at the beginning (`^`, `\\A`), every position of a name otherwise."""
    items = list(tree)
    anchored = bool(items) and str(items[0][0]) == "AT" and str(items[0][1]) in _BEGINNINGS
    return _capped(_sequence_ways(items) * (1 if anchored else NAME_MAX))


def _capped(ways: int) -> int:
    if ways > MAX_WAYS:
        raise _TooCostly("too many ways to match")
    return ways


def _sequence_ways(items: Any) -> int:
    ways = 1
    for op, arg in items:
        ways = _capped(ways * _node_ways(str(op), arg))
    return ways


def _node_ways(op: str, arg: Any) -> int:
    if op in _SINGLE:
        return 1
    if op == "SUBPATTERN":
        return _sequence_ways(arg[-1])
    if op == "ATOMIC_GROUP":
        return _sequence_ways(arg)
    if op in ("ASSERT", "ASSERT_NOT"):
        return _sequence_ways(arg[1])
    if op == "BRANCH":
        return _capped(sum(_sequence_ways(branch) for branch in arg[1]))
    if op in _REPEATS:
        low, high, body = arg
        return _repeat_ways(low, min(high, NAME_MAX), _sequence_ways(body))
    if op in ("GROUPREF", "GROUPREF_EXISTS"):
        raise _TooCostly("back-references are not allowed")
    raise _TooCostly(f"{op} is not allowed")


def _repeat_ways(low: int, high: int, body: int) -> int:
    """Sum of body**k for k in low..high: the ways `body{low,high}` can split a name."""
    if body == 1:
        return _capped(max(high - low + 1, 1))
    total, power = 0, 1
    for k in range(high + 1):
        if k >= low:
            total = _capped(total + power)
        if k < high:
            power = _capped(power * body)
    return total
