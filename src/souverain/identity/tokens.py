"""Tokens: encrypted, authenticated, self-contained; validated from memory.

A token is sealed like a Fernet message, with a faster authenticated cipher:
version byte, key id (4 bytes), nonce (12 bytes), then the compact JSON
payload encrypted and authenticated with AES-256-GCM (the version and key id
are authenticated too), all in URL-safe base64 without padding. The payload
names the user, the scope, the auth methods, the audit ids and the expiry.
Nothing about a token is stored: validation opens it with the key its id
names and checks the in-memory revocation list.

The key repository is a directory of numbered key files (32 random bytes,
base64), rotated like Keystone's Fernet repository: `0` is the staged key,
the highest number is the primary that seals, and every key still in the
directory opens, so rotation never invalidates live tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from souverain.common.ids import random_bytes
from souverain.common.jsoncodec import encode


class KeyRepositoryError(Exception):
    """The key directory is missing, unreadable or holds a malformed key."""


class KeyRepository:
    """Numbered token keys in a directory; reloaded when the directory changes."""

    def __init__(self, path: Path, max_active_keys: int = 3) -> None:
        self.path = path
        self.max_active_keys = max_active_keys
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._checked = 0.0
        self._keyring: Keyring | None = None

    # -- on-disk management (used by bootstrap and `souverain keys rotate`)

    def _key_numbers(self) -> list[int]:
        if not self.path.is_dir():
            return []
        return sorted(int(p.name) for p in self.path.iterdir() if p.name.isdigit())

    def _write_key(self, number: int) -> None:
        tmp = self.path / f".{number}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path / str(number))

    def setup(self) -> bool:
        """Create the repository with a staged and a primary key if it has none."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._key_numbers():
            return False
        self._write_key(0)
        self._write_key(1)
        return True

    def rotate(self) -> int:
        """Promote the staged key to primary, stage a new one, retire the oldest extras."""
        numbers = self._key_numbers()
        if not numbers:
            raise KeyRepositoryError(f"no keys in {self.path}; start the server once first")
        new_primary = numbers[-1] + 1
        os.replace(self.path / "0", self.path / str(new_primary))
        self._write_key(0)
        numbers = [n for n in self._key_numbers() if n != 0]
        for old in numbers[: max(0, len(numbers) - (self.max_active_keys - 1))]:
            (self.path / str(old)).unlink()
        return new_primary

    # -- runtime

    def keyring(self) -> Keyring:
        """Keys, primary first; re-read at most once a second if the directory changed."""
        now = time.monotonic()
        if self._keyring is not None and now - self._checked < 1.0:
            return self._keyring
        with self._lock:
            self._checked = now
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                raise KeyRepositoryError(f"key repository {self.path} does not exist") from None
            if self._keyring is None or mtime != self._mtime:
                self._keyring = self._load()
                self._mtime = mtime
            return self._keyring

    def _load(self) -> Keyring:
        numbers = self._key_numbers()
        if not numbers:
            raise KeyRepositoryError(f"no keys in {self.path}")
        ordered = sorted(numbers, reverse=True)  # primary (highest) first, staged (0) last
        keys = []
        for number in ordered:
            try:
                keys.append(TokenKey((self.path / str(number)).read_bytes()))
            except (ValueError, OSError) as exc:
                raise KeyRepositoryError(
                    f"key {self.path / str(number)} is unusable: {exc}"
                ) from None
        return Keyring(keys)


VERSION = b"\x91"
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_HEADER = len(VERSION) + 4 + 12


class TokenKey:
    """One key file's key: seals and opens tokens, named by a 4-byte id."""

    def __init__(self, key_file: bytes) -> None:
        raw = base64.urlsafe_b64decode(key_file.strip())
        if len(raw) != 32:
            raise ValueError("a token key is 32 bytes, base64-encoded")
        self.id = hashlib.sha256(raw).digest()[:4]
        self._aead = AESGCM(raw)

    def seal(self, plaintext: bytes) -> str:
        header = VERSION + self.id
        nonce = os.urandom(12)
        sealed = header + nonce + self._aead.encrypt(nonce, plaintext, header)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, raw: bytes) -> bytes | None:
        try:
            return self._aead.decrypt(raw[5:_HEADER], raw[_HEADER:], raw[:5])
        except InvalidTag:
            return None


class Keyring:
    """The keys in use: the primary seals, any of them opens the tokens it sealed."""

    def __init__(self, keys: list[TokenKey]) -> None:
        self.primary = keys[0]
        self._by_id = {key.id: key for key in reversed(keys)}

    def seal(self, plaintext: bytes) -> str:
        return self.primary.seal(plaintext)

    def open(self, token: str) -> bytes | None:
        # base64 decoding skips what is not of its alphabet: without this check "\0" + a
        # token, or a token with spaces inside, would read as the token itself
        if not _TOKEN_TEXT.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            return None
        if len(raw) < _HEADER + 16 or raw[:1] != VERSION:
            return None
        key = self._by_id.get(raw[1:5])
        return key.open(raw) if key is not None else None


@dataclass(frozen=True)
class TokenPayload:
    """What a token says. Roles are not in it: they are looked up when it is used."""

    user_id: str
    methods: tuple[str, ...]
    expires_at: float
    issued_at: float
    audit_ids: tuple[str, ...]
    project_id: str | None = None
    domain_id: str | None = None
    system: bool = False
    app_cred_id: str | None = None
    trust_id: str | None = None

    def to_bytes(self) -> bytes:
        data: dict[str, object] = {
            "u": self.user_id,
            "m": list(self.methods),
            "e": round(self.expires_at, 6),
            "i": round(self.issued_at, 6),
            "a": list(self.audit_ids),
        }
        if self.project_id:
            data["p"] = self.project_id
        if self.domain_id:
            data["d"] = self.domain_id
        if self.system:
            data["s"] = 1
        if self.app_cred_id:
            data["c"] = self.app_cred_id
        if self.trust_id:
            data["t"] = self.trust_id
        return encode(data)

    @classmethod
    def from_bytes(cls, raw: bytes) -> TokenPayload:
        """The payload; ValueError unless every field has the type `to_bytes` writes."""
        try:
            data = json.loads(raw)
        except RecursionError:
            raise ValueError("token payload nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("token payload is not an object")
        return cls(
            user_id=_text(data["u"]),
            methods=_texts(data["m"]),
            expires_at=_time(data["e"]),
            issued_at=_time(data["i"]),
            audit_ids=_texts(data["a"]),
            project_id=_optional_text(data.get("p")),
            domain_id=_optional_text(data.get("d")),
            system=data.get("s") == 1,
            app_cred_id=_optional_text(data.get("c")),
            trust_id=_optional_text(data.get("t")),
        )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("token payload field is not a string")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError("token payload field is not a list")
    return tuple(_text(item) for item in value)


def _time(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("token payload time is not a number")
    return float(value)


def new_audit_id() -> str:
    return base64.urlsafe_b64encode(random_bytes(16)).rstrip(b"=").decode()


class TokenFormatter:
    """Turns payloads into token strings and back; says nothing about revocation.

    Decrypted payloads of recent tokens are kept (a token is presented many
    times in its life); the memo is dropped whenever the key set changes, so a
    retired key stops validating at once. Expiry and revocation are checked by
    the caller on every use, memo or not.
    """

    MEMO_SIZE = 20_000

    def __init__(self, keys: KeyRepository) -> None:
        self.keys = keys
        self._memo: dict[str, TokenPayload] = {}
        self._memo_keys: Keyring | None = None

    def issue(self, payload: TokenPayload) -> str:
        return self.keys.keyring().seal(payload.to_bytes())

    def read(self, token: str) -> TokenPayload | None:
        """The payload, or None if the token is malformed, forged or from a retired key."""
        if not token or len(token) > 8192:
            return None
        keyring = self.keys.keyring()
        if keyring is not self._memo_keys:
            self._memo = {}
            self._memo_keys = keyring
        payload = self._memo.get(token)
        if payload is not None:
            return payload
        raw = keyring.open(token)
        if raw is None:
            return None
        try:
            payload = TokenPayload.from_bytes(raw)
        except (ValueError, KeyError, TypeError):
            return None
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        self._memo[token] = payload
        return payload


@dataclass
class RevocationRule:
    issued_before: float
    expires_at: float
    user_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    audit_id: str | None = None
    app_cred_id: str | None = None

    def matches(self, token: TokenPayload, user_domain_id: str | None) -> bool:
        if token.issued_at > self.issued_before:
            return False
        if self.user_id is not None and self.user_id != token.user_id:
            return False
        if self.project_id is not None and self.project_id != token.project_id:
            return False
        if self.domain_id is not None and self.domain_id not in (token.domain_id, user_domain_id):
            return False
        if self.audit_id is not None and self.audit_id not in token.audit_ids:
            return False
        return not (self.app_cred_id is not None and self.app_cred_id != token.app_cred_id)


@dataclass
class RevocationList:
    """Revocation events held in memory, indexed by the field most events carry."""

    by_user: dict[str, list[RevocationRule]] = field(default_factory=dict)
    by_audit: dict[str, list[RevocationRule]] = field(default_factory=dict)
    other: list[RevocationRule] = field(default_factory=list)

    def add(self, rule: RevocationRule) -> None:
        if rule.audit_id is not None:
            self.by_audit.setdefault(rule.audit_id, []).append(rule)
        elif rule.user_id is not None:
            self.by_user.setdefault(rule.user_id, []).append(rule)
        else:
            self.other.append(rule)

    def extend(self, rules: Iterable[RevocationRule]) -> None:
        for rule in rules:
            self.add(rule)

    def is_revoked(self, token: TokenPayload, user_domain_id: str | None) -> bool:
        candidates: list[RevocationRule] = list(self.by_user.get(token.user_id, ()))
        for audit_id in token.audit_ids:
            candidates.extend(self.by_audit.get(audit_id, ()))
        candidates.extend(self.other)
        return any(rule.matches(token, user_domain_id) for rule in candidates)

    def prune(self, now: float) -> None:
        """Forget events about tokens that have all expired anyway."""
        for index in (self.by_user, self.by_audit):
            for key in list(index):
                kept = [r for r in index[key] if r.expires_at > now]
                if kept:
                    index[key] = kept
                else:
                    del index[key]
        self.other = [r for r in self.other if r.expires_at > now]


def to_timestamp(value: dt.datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()
