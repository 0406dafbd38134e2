"""Property: the token decoder answers a payload or None, for any string whatever.

Arbitrary strings, real tokens with a bit flipped, truncated or extended, and payloads
sealed with the real key but holding odd JSON (what a bug in an older writer could leave)
all go through `TokenFormatter.read`: it never raises, never reads a tampered token as
another payload, and every payload it returns has the field types the platform relies on.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from souverain.identity.tokens import KeyRepository, TokenFormatter, TokenPayload

FUZZ = settings(max_examples=50, deadline=timedelta(seconds=1), derandomize=True)
REAL = TokenPayload(
    user_id="u" * 32,
    methods=("password",),
    expires_at=4_000_000_000.0,
    issued_at=1_800_000_000.0,
    audit_ids=("audit-one",),
    project_id="p" * 32,
)


@dataclass(frozen=True)
class Sealer:
    """A real key repository, its formatter, and a token it issued for REAL."""

    keys: KeyRepository
    formatter: TokenFormatter
    token: str


@pytest.fixture(scope="module")
def sealer() -> Iterator[Sealer]:
    root = Path(tempfile.mkdtemp(prefix="souverain-fuzz-tokens-"))
    try:
        keys = KeyRepository(root / "keys")
        keys.setup()
        formatter = TokenFormatter(keys)
        yield Sealer(keys, formatter, formatter.issue(REAL))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=("sqlite",), autouse=True)
def database_backend() -> str:
    """No database here: one run, not one per backend."""
    return "sqlite"


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _well_typed(payload: TokenPayload) -> None:
    assert isinstance(payload.user_id, str)
    assert all(isinstance(m, str) for m in payload.methods)
    assert all(isinstance(a, str) for a in payload.audit_ids)
    assert isinstance(payload.expires_at, float) and isinstance(payload.issued_at, float)
    for optional in (payload.project_id, payload.domain_id, payload.app_cred_id, payload.trust_id):
        assert optional is None or isinstance(optional, str)


@FUZZ
@given(text=st.one_of(st.text(max_size=300), st.text(alphabet="-_=AZaz09", max_size=300)))
@example(text="")
@example(text="\x00" * 100)
@example(text="kQ" + "A" * 8190)
@example(text="A" * 9000)
@example(text="é" * 40)
def test_any_string_is_not_a_token(sealer: Sealer, text: str) -> None:
    assert sealer.formatter.read(text) is None


@FUZZ
@given(bit=st.integers(min_value=0), cut=st.integers(min_value=0), tail=st.text(max_size=8))
def test_a_tampered_real_token_reads_as_nothing(
    sealer: Sealer, bit: int, cut: int, tail: str
) -> None:
    raw = bytearray(_raw(sealer.token))
    bit %= len(raw) * 8
    raw[bit // 8] ^= 1 << (bit % 8)
    flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert sealer.formatter.read(flipped) is None
    truncated = sealer.token[: cut % len(sealer.token)]
    assert sealer.formatter.read(truncated) is None
    extended = sealer.formatter.read(sealer.token + tail)
    # base64 ignores what is not of its alphabet: the same bytes are the same token
    assert extended is None or (
        extended == REAL and _raw(sealer.token + tail) == _raw(sealer.token)
    )


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={key: JSON for key in ("u", "m", "e", "i", "a", "p", "d", "s", "c", "t")},
)


def _sealed(sealer: Sealer, data: Any) -> str:
    text = data if isinstance(data, bytes) else json.dumps(data).encode()
    return sealer.keys.keyring().seal(text)


@FUZZ
@given(data=st.one_of(FIELDS, JSON, st.binary(max_size=40)))
@example(data={"u": 5, "m": ["password"], "e": 1.0, "i": 1.0, "a": ["x"]})
@example(data={"u": "u", "m": "pw", "e": "1e999", "i": 1.0, "a": [None]})
@example(data={"u": "u", "m": ["pw"], "e": 1.0, "i": 1.0, "a": ["x"], "p": {"id": 1}})
@example(data=b"[" * 5000)
def test_a_sealed_odd_payload_reads_as_nothing_or_as_a_well_typed_payload(
    sealer: Sealer, data: Any
) -> None:
    payload = sealer.formatter.read(_sealed(sealer, data))
    if payload is not None:
        _well_typed(payload)


@FUZZ
@given(junk=st.text(alphabet="\x00 \t\n!.*+/~é", min_size=1, max_size=3), at=st.integers(0))
@example(junk="\x00", at=0)  # read as the token itself when base64 skipped it
@example(junk="  ", at=100)
def test_a_real_token_with_anything_inserted_reads_as_nothing(
    sealer: Sealer, junk: str, at: int
) -> None:
    at %= len(sealer.token) + 1
    assert sealer.formatter.read(sealer.token[:at] + junk + sealer.token[at:]) is None
