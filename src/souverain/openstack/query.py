"""Query parameters: one parser per type, all called `(name, raw)`.

The spellings are oslo's (what every OpenStack service accepts): a boolean is
one of 1/t/true/on/y/yes or 0/f/false/off/n/no, any case. A bad value is a 400
naming the parameter, cut short so that a hostile value is never echoed whole.
"""

from __future__ import annotations

from souverain.common.errors import BadRequest

MAX_LIMIT = 1000
TRUE = frozenset({"1", "t", "true", "on", "y", "yes"})
FALSE = frozenset({"0", "f", "false", "off", "n", "no"})


def parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise BadRequest(f"Invalid value for '{name[:32]}': {raw[:32]!r} is not a boolean.")


def parse_int(name: str, raw: str, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            f"Invalid value for '{name[:32]}': {raw[:32]!r} is not an integer."
        ) from None
    if minimum is not None and value < minimum:
        raise BadRequest(f"Invalid value for '{name[:32]}': must be at least {minimum}.")
    if maximum is not None and value > maximum:
        raise BadRequest(f"Invalid value for '{name[:32]}': must be at most {maximum}.")
    return value


def parse_limit(raw: str | None, default: int | None = None) -> int | None:
    """A page size: a positive integer, at most `MAX_LIMIT`; `default` when absent."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be a positive integer, not {raw[:32]!r}") from None
    if value < 1:
        raise BadRequest("limit must be a positive integer")
    return min(value, MAX_LIMIT)


def parse_flag(name: str, raw: str | None) -> bool:
    """A Keystone-style flag: true when present with any value but a false spelling
    (`?effective`, `?include_names=1`), as Keystone reads its list filters."""
    del name  # named for symmetry with the other parsers; a flag has no bad value
    return raw is not None and raw.strip().lower() not in FALSE
