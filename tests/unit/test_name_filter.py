"""The `name` filter of a server list: regular expressions whose matching cost has no
small bound are refused before they run; the rest keep Nova's `re.search` meaning."""

from __future__ import annotations

import time

import pytest

from souverain.common.errors import BadRequest
from souverain.compute.name_filter import PATTERN_MAX, bounded_pattern

# names built to make a backtracking matcher try every split: almost matching, 255 chars
HOSTILE_NAMES = ["a" * 254 + "b", "a" * 255, "1" * 255, "ab" * 127, "a-" * 127, "x" * 255]
ROW_BUDGET = 0.05  # seconds; the bound aims at a few ms, this leaves room for a busy host


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a+)+$",
        r"(a+)+b",
        r"(.*a){20}",
        r"(a|a)*$",
        r"(aa|a)+$",
        r"(a|aa)+c",
        r"(\w+\s?)*$",
        r".*.*.*x",
        r"\w*\w*\w*\d",
        r"(.*){1,32000}",
        r"(?=(a+)+$)",
        r"^(a?){40}a{40}$",
        r"(a)\1",
        r"(?P<x>a)(?P=x)",
        r"(a)?(?(1)b|c)",
    ],
)
def test_catastrophic_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(BadRequest, match="Invalid name filter"):
        bounded_pattern(pattern)


def test_a_pattern_too_long_is_refused() -> None:
    with pytest.raises(BadRequest, match=f"longer than {PATTERN_MAX}"):
        bounded_pattern("a" * (PATTERN_MAX + 1))


def test_a_pattern_that_does_not_compile_is_refused() -> None:
    with pytest.raises(BadRequest, match="is not a regular expression"):
        bounded_pattern("[")


@pytest.mark.parametrize(
    "pattern, name, found",
    [
        (r"^web-", "web-1", True),
        (r"^web-", "db-web-1", False),
        (r"db[0-9]+", "prod-db12", True),
        (r"db[0-9]+", "dbx", False),
        (r"^(alpha|beta)$", "beta", True),
        (r"a.*b", "xaxxbx", True),
        (r"^web-.*-db.*$", "web-eu-db-2", True),
        (r"^web-\d+-db\d+$", "web-1-db2", True),
        (r"(?i)WEB", "my-web", True),
    ],
)
def test_ordinary_patterns_keep_re_search_meaning(pattern: str, name: str, found: bool) -> None:
    compiled = bounded_pattern(pattern)
    assert compiled is not None
    assert (compiled.search(name) is not None) is found


@pytest.mark.parametrize(
    "pattern",
    [
        r"a.*b",
        r"\w*\d",
        r"^\w*\w*\d",
        r"^[\w-]*[\w-]*\d$",
        r"(a|a)(a|a)(a|a)(a|a)(a|a)(a|a)(a|a)(a|a)c",
        "^" + "(a|a)" * 16 + "c",
        "^" + "a?" * 16 + "a" * 16 + "$",
    ],
)
def test_the_costliest_accepted_patterns_take_milliseconds_a_row(pattern: str) -> None:
    compiled = bounded_pattern(pattern)
    assert compiled is not None
    for name in HOSTILE_NAMES:
        started = time.perf_counter()
        compiled.search(name)
        assert time.perf_counter() - started < ROW_BUDGET, (pattern, name)


def test_no_pattern_means_no_filter() -> None:
    assert bounded_pattern(None) is None
    assert bounded_pattern("") is None
