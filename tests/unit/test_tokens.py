"""Tokens: payload round trip, forgery and tampering, key rotation, revocation rules."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from souverain.identity.tokens import (
    KeyRepository,
    KeyRepositoryError,
    Keyring,
    RevocationList,
    RevocationRule,
    TokenFormatter,
    TokenKey,
    TokenPayload,
)

NOW = 1_800_000_000.0
USER = "u" * 32
PROJECT = "p" * 32


def payload(**fields: Any) -> TokenPayload:
    base: dict[str, Any] = {
        "user_id": USER,
        "methods": ("password",),
        "expires_at": NOW + 3600,
        "issued_at": NOW,
        "audit_ids": ("audit-one",),
        "project_id": PROJECT,
    }
    base.update(fields)
    return TokenPayload(**base)


def fresh_view(path: Path, max_active_keys: int = 3) -> TokenFormatter:
    """A formatter that reads the key directory now, as another process or a later second would."""
    return TokenFormatter(KeyRepository(path, max_active_keys))


@pytest.fixture
def keys(tmp_path: Path) -> KeyRepository:
    repo = KeyRepository(tmp_path / "fernet", max_active_keys=3)
    assert repo.setup() is True
    return repo


# ---------------------------------------------------------------- payload


IDS = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
TIMES = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False).map(lambda t: round(t, 6))


@given(
    user_id=IDS,
    methods=st.lists(
        st.sampled_from(["password", "token", "application_credential"]), min_size=1, max_size=2
    ),
    expires_at=TIMES,
    issued_at=TIMES,
    audit_ids=st.lists(st.text(min_size=1, max_size=22), min_size=1, max_size=2),
    project_id=st.none() | IDS,
    domain_id=st.none() | IDS,
    system=st.booleans(),
    app_cred_id=st.none() | IDS,
)
def test_payload_round_trips_through_bytes(
    user_id: str,
    methods: list[str],
    expires_at: float,
    issued_at: float,
    audit_ids: list[str],
    project_id: str | None,
    domain_id: str | None,
    system: bool,
    app_cred_id: str | None,
) -> None:
    original = TokenPayload(
        user_id=user_id,
        methods=tuple(methods),
        expires_at=expires_at,
        issued_at=issued_at,
        audit_ids=tuple(audit_ids),
        project_id=project_id,
        domain_id=domain_id,
        system=system,
        app_cred_id=app_cred_id,
    )
    assert TokenPayload.from_bytes(original.to_bytes()) == original


def test_payload_is_compact_and_leaves_out_empty_fields() -> None:
    raw = payload(project_id=None).to_bytes()
    assert b" " not in raw
    assert b'"p"' not in raw and b'"d"' not in raw and b'"s"' not in raw and b'"c"' not in raw


def test_token_round_trips_through_the_formatter(keys: KeyRepository) -> None:
    formatter = TokenFormatter(keys)
    original = payload(app_cred_id="a" * 32, system=False)
    token = formatter.issue(original)
    assert "=" not in token, "padding is stripped, as Keystone does"
    assert formatter.read(token) == original
    assert fresh_view(keys.path).read(token) == original


# ---------------------------------------------------------------- forgery


def test_token_from_another_key_is_refused(keys: KeyRepository, tmp_path: Path) -> None:
    other = KeyRepository(tmp_path / "elsewhere")
    other.setup()
    forged = TokenFormatter(other).issue(payload())
    assert TokenFormatter(keys).read(forged) is None


def test_tampered_token_is_refused(keys: KeyRepository) -> None:
    formatter = TokenFormatter(keys)
    token = formatter.issue(payload())
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for index in (0, 9, 30, len(raw) // 2, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[index] ^= 0x01
        tampered = base64.urlsafe_b64encode(bytes(flipped)).decode().rstrip("=")
        assert formatter.read(tampered) is None, index
    assert formatter.read(token[:-4]) is None
    assert formatter.read(token + "AAAA") is None


@pytest.mark.parametrize(
    "token", ["", "x", "not a token", "gAAAAA", "=" * 40, "\u00e9" * 10, "A" * 9000, "%%%%"]
)
def test_garbage_is_refused(keys: KeyRepository, token: str) -> None:
    assert TokenFormatter(keys).read(token) is None


@pytest.mark.parametrize(
    "plaintext",
    [b"not json", b"[]", b"{}", b'{"u": "x"}', b'{"u": "x", "m": 5, "e": 1, "i": 1, "a": []}',
     b'{"u": "x", "m": [], "e": "soon", "i": 1, "a": []}'],
)  # fmt: skip
def test_authentic_token_with_a_bad_payload_is_refused(
    keys: KeyRepository, plaintext: bytes
) -> None:
    """Encrypted with our own key, but not a payload we wrote: refused, not a crash."""
    token = primary_key(keys.path).seal(plaintext)
    assert TokenFormatter(keys).read(token) is None


# ---------------------------------------------------------------- rotation


def primary_key(path: Path) -> TokenKey:
    highest = max(int(p.name) for p in path.iterdir() if p.name.isdigit())
    return TokenKey((path / str(highest)).read_bytes())


def key_numbers(path: Path) -> list[int]:
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())


def test_setup_is_idempotent_and_keys_are_private(keys: KeyRepository) -> None:
    assert key_numbers(keys.path) == [0, 1]
    assert keys.setup() is False
    assert key_numbers(keys.path) == [0, 1]
    for number in (0, 1):
        assert (keys.path / str(number)).stat().st_mode & 0o077 == 0


def test_rotation_promotes_the_staged_key(keys: KeyRepository) -> None:
    staged = (keys.path / "0").read_bytes()
    assert keys.rotate() == 2
    assert (keys.path / "2").read_bytes() == staged
    assert (keys.path / "0").read_bytes() != staged
    token = fresh_view(keys.path).issue(payload())
    assert Keyring([primary_key(keys.path)]).open(token) == payload().to_bytes()


def test_token_from_the_previous_primary_still_validates_after_rotate(keys: KeyRepository) -> None:
    token = TokenFormatter(keys).issue(payload())
    keys.rotate()
    assert fresh_view(keys.path).read(token) == payload()


def test_token_from_the_staged_key_validates(keys: KeyRepository) -> None:
    """Another node that rotated first issues with our staged key: we must accept it."""
    staged = TokenKey((keys.path / "0").read_bytes())
    token = staged.seal(payload().to_bytes())
    assert fresh_view(keys.path).read(token) == payload()


def test_retired_key_no_longer_validates(keys: KeyRepository) -> None:
    token = TokenFormatter(keys).issue(payload())  # primary is key 1
    keys.rotate()  # keys 0, 1, 2: key 1 is still active
    assert fresh_view(keys.path).read(token) is not None
    keys.rotate()  # keys 0, 2, 3: key 1 retired
    assert key_numbers(keys.path) == [0, 2, 3]
    assert fresh_view(keys.path).read(token) is None


def test_more_active_keys_keep_tokens_longer(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "k", max_active_keys=5)
    repo.setup()
    token = TokenFormatter(repo).issue(payload())
    for _ in range(3):
        repo.rotate()
        assert fresh_view(repo.path, 5).read(token) is not None
    repo.rotate()
    assert len(key_numbers(repo.path)) == 5
    assert fresh_view(repo.path, 5).read(token) is None


def test_running_repository_picks_up_a_rotation(
    keys: KeyRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same repository object re-reads the directory once its one-second cache lapses."""
    formatter = TokenFormatter(keys)
    old = formatter.issue(payload())
    assert formatter.read(old) == payload()  # now remembered: the memo must not outlive its key
    keys.rotate()
    keys.rotate()
    later = time.monotonic() + 2.0  # past the one-second cache, without sleeping
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert formatter.read(old) is None
    fresh = formatter.issue(payload())
    assert formatter.read(fresh) == payload()


def test_rotate_without_keys_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyRepositoryError, match="no keys"):
        KeyRepository(tmp_path / "empty").rotate()


def test_malformed_key_file_is_a_clear_error(keys: KeyRepository) -> None:
    (keys.path / "1").write_bytes(os.urandom(10))
    with pytest.raises(KeyRepositoryError, match="unusable"):
        fresh_view(keys.path).issue(payload())


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyRepositoryError, match="does not exist"):
        KeyRepository(tmp_path / "absent").keyring()


# ---------------------------------------------------------------- revocation


def rule(**fields: Any) -> RevocationRule:
    base: dict[str, Any] = {"issued_before": NOW + 10, "expires_at": NOW + 3600}
    base.update(fields)
    return RevocationRule(**base)


@pytest.mark.parametrize(
    ("revocation", "token", "revoked"),
    [
        # by user: every token of the user issued up to the event
        (rule(user_id=USER), payload(), True),
        (rule(user_id="x" * 32), payload(), False),
        (rule(user_id=USER), payload(issued_at=NOW + 10), True),  # the same instant counts
        (rule(user_id=USER), payload(issued_at=NOW + 10.000001), False),  # issued after
        # by project: every token scoped to it; user and project together narrow it
        (rule(project_id=PROJECT), payload(), True),
        (rule(project_id=PROJECT), payload(project_id=None), False),
        (rule(user_id=USER, project_id=PROJECT), payload(), True),
        (rule(user_id=USER, project_id="q" * 32), payload(), False),
        (rule(user_id="x" * 32, project_id=PROJECT), payload(), False),
        # by domain: tokens scoped to the domain, or of users who belong to it
        (rule(domain_id="d1"), payload(project_id=None, domain_id="d1"), True),
        (rule(domain_id="d1"), payload(), True),  # the user is in d1 (see below)
        (rule(domain_id="d2"), payload(), False),
        # by audit id: that token and the ones rescoped from it
        (rule(audit_id="audit-one"), payload(), True),
        (rule(audit_id="audit-one"), payload(audit_ids=("child", "audit-one")), True),
        (rule(audit_id="audit-two"), payload(), False),
        # by application credential
        (rule(user_id=USER, app_cred_id="a" * 32), payload(app_cred_id="a" * 32), True),
        (rule(user_id=USER, app_cred_id="a" * 32), payload(), False),
        (rule(user_id=USER, app_cred_id="a" * 32), payload(app_cred_id="b" * 32), False),
    ],
)
def test_revocation_rule_matching(
    revocation: RevocationRule, token: TokenPayload, revoked: bool
) -> None:
    assert revocation.matches(token, user_domain_id="d1") is revoked
    events = RevocationList()
    events.add(revocation)
    assert events.is_revoked(token, "d1") is revoked


def test_revocation_list_finds_rules_through_every_index() -> None:
    events = RevocationList()
    events.extend([rule(audit_id="a1"), rule(user_id=USER), rule(project_id=PROJECT)])
    assert set(events.by_audit) == {"a1"}
    assert set(events.by_user) == {USER}
    assert len(events.other) == 1
    assert events.is_revoked(payload(user_id="x" * 32, audit_ids=("a1",), project_id=None), None)
    assert events.is_revoked(payload(project_id=None), None)
    assert events.is_revoked(payload(user_id="x" * 32), None)
    assert not events.is_revoked(payload(user_id="x" * 32, project_id=None), None)


def test_prune_forgets_events_whose_tokens_have_all_expired() -> None:
    events = RevocationList()
    events.extend(
        [
            rule(user_id=USER, expires_at=NOW + 5),
            rule(user_id=USER, expires_at=NOW + 50),
            rule(audit_id="a1", expires_at=NOW + 5),
            rule(project_id=PROJECT, expires_at=NOW + 5),
        ]
    )
    events.prune(NOW + 10)
    assert len(events.by_user[USER]) == 1
    assert events.by_audit == {}
    assert events.other == []
    events.prune(NOW + 100)
    assert events.by_user == {}


def test_token_names_its_key_and_a_changed_header_is_refused(keys: KeyRepository) -> None:
    import base64

    token = TokenFormatter(keys).issue(payload())
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert raw[1:5] == primary_key(keys.path).id
    for index in (0, 1):  # the version byte and the key id are authenticated too
        forged = bytearray(raw)
        forged[index] ^= 0x01
        text = base64.urlsafe_b64encode(bytes(forged)).rstrip(b"=").decode()
        assert TokenFormatter(keys).read(text) is None
