"""Multi-factor login: TOTP passcodes, users' multi-factor rules, auth receipts.

Knows nothing of HTTP. A TOTP secret (a credential's blob) and a passcode never leave
this module in a message, a log line or an audit record; a failed factor is reported
as the same 401 as any failed login, never naming which factor failed. A passcode
works once per user: the time step it matched is recorded and an older or equal step
is refused afterwards. Receipts are sealed with the token keys, like tokens, and can
never be read as a token (their plaintext is not a token payload).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.clock import isotime
from souverain.common.errors import BadRequest, NotFound, Unauthorized
from souverain.common.ids import new_id
from souverain.identity import models as m
from souverain.identity.core import INVALID_CREDENTIALS, IdentityCore

TOTP_STEP = 30
TOTP_DIGITS = 6
# Methods a rule may name; a rule naming another is ignored, as Keystone ignores rules
# naming methods it does not offer.
RULE_METHODS = frozenset({"password", "totp", "token", "application_credential"})
PRIVILEGED_RULE = ("password", "totp")
RECEIPT_MARK = b"R"
ENROLL_HINT = (
    "This account holds administrator or account owner rights and the operator requires "
    "a second factor (password + totp) for it, but it has no TOTP credential yet: ask the "
    "operator to run `souverain identity totp enroll {user}` and add the printed "
    "otpauth:// URI to an authenticator app."
)


class AuthMethodsRequired(Unauthorized):
    """Some factors passed, not enough: a receipt for them and the rules still open."""

    def __init__(self, receipt: str, body: dict[str, Any]) -> None:
        super().__init__(
            "Insufficient auth methods received for the user: continue with the auth receipt "
            "and one of the required method lists.",
            headers={"Openstack-Auth-Receipt": receipt},
        )
        self.receipt = receipt
        self.body = body


def totp_key(blob: str) -> bytes:
    """A base32 TOTP secret as bytes (padding optional, as authenticator apps write it)."""
    text = blob.strip().replace(" ", "").upper()
    try:
        key = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise BadRequest("A totp credential's blob must be a base32 secret.") from None
    if not 10 <= len(key) <= 128:
        raise BadRequest("A totp credential's secret must be 10 to 128 bytes (base32).")
    return key


def passcode_at(key: bytes, when: float) -> str:
    """The passcode of `key` at time `when` (RFC 6238: 30 s, 6 digits, SHA-1)."""
    # SHA-1 is what RFC 6238 authenticator apps and Keystone use; HMAC-SHA-1 stays sound.
    totp = TOTP(key, TOTP_DIGITS, SHA1(), TOTP_STEP, enforce_key_length=False)  # noqa: S303
    return totp.generate(int(when)).decode()


def matching_step(keys: Iterable[bytes], passcode: str, now: float) -> int | None:
    """The time step (previous, current or next) at which one of `keys` gives `passcode`."""
    current = int(now) // TOTP_STEP
    found: int | None = None
    for key in keys:
        for step in (current - 1, current, current + 1):
            if hmac.compare_digest(passcode_at(key, step * TOTP_STEP), passcode):
                found = step if found is None else max(found, step)
    return found


def check_options(options: Any) -> dict[str, Any]:
    """User options as Keystone validates them; None values ask for the option's removal."""
    if not isinstance(options, dict):
        raise BadRequest("options must be an object.")
    for key, value in options.items():
        if key == "multi_factor_auth_enabled":
            if value is not None and not isinstance(value, bool):
                raise BadRequest("options.multi_factor_auth_enabled must be a boolean or null.")
        elif key == "multi_factor_auth_rules":
            if value is not None:
                _check_rules(value)
        elif key in ("ignore_password_expiry", "ignore_lockout_failure_attempts",
                     "ignore_change_password_upon_first_use", "lock_password"):  # fmt: skip
            if value is not None and not isinstance(value, bool):
                raise BadRequest(f"options.{key} must be a boolean or null.")
        else:
            raise BadRequest(f"Unknown user option {str(key)[:64]!r}.")
    return options


def _check_rules(rules: Any) -> None:
    bad = BadRequest(
        "options.multi_factor_auth_rules must be a list of lists of distinct method names, "
        'e.g. [["password", "totp"]].'
    )
    if not isinstance(rules, list) or len(rules) > 16:
        raise bad
    for rule in rules:
        if not isinstance(rule, list) or not rule or len(rule) > 8:
            raise bad
        if not all(isinstance(x, str) and 0 < len(x) <= 64 for x in rule):
            raise bad
        if len(set(rule)) != len(rule):
            raise bad


def merged_options(current: dict[str, Any] | None, update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current or {})
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Receipt:
    user_id: str
    methods: tuple[str, ...]
    expires_at: float
    issued_at: float


class MultiFactor:
    """The second factor and the rules saying when it is needed."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core
        # Further "is this user privileged?" answers (billing's account owners), wired
        # by the server so that identity imports no other service.
        self.privileged_checks: list[Callable[[str], bool]] = []

    # ------------------------------------------------------------------ totp

    def check_totp(self, body: Any, user_id_of: Callable[[dict[str, Any]], str | None]) -> str:
        """The user whose passcode this is, or 401; the step is then used up."""
        user_ref = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user_ref, dict):
            raise BadRequest("auth.identity.totp.user is required")
        passcode = user_ref.get("passcode")
        if not isinstance(passcode, str) or len(passcode) > 16:
            raise BadRequest("auth.identity.totp.user.passcode must be a string")
        user_id = user_id_of(user_ref)
        now = self.core.clock.timestamp()
        with self.core.db.session() as s:
            user = s.get(m.User, user_id) if user_id else None
            if user is None:
                raise Unauthorized(INVALID_CREDENTIALS)
            self.core.refuse_if_locked(user)
            keys = self._keys(s, user.id)
            step = matching_step(keys, passcode, now) if passcode.isdigit() else None
            used = s.scalar(select(func.max(m.TotpUsed.step)).where(m.TotpUsed.user_id == user.id))
            if step is None or (used is not None and step <= used):
                self.core.count_failed_login(s, user)
                raise Unauthorized(INVALID_CREDENTIALS)
            stamp = self.core.now().replace(tzinfo=None)
            s.execute(
                delete(m.TotpUsed).where(m.TotpUsed.user_id == user.id, m.TotpUsed.step < step - 4)
            )
            s.add(m.TotpUsed(user_id=user.id, step=step, used_at=stamp))
            try:
                s.flush()
            except IntegrityError:  # the same passcode in a parallel login won the step
                s.rollback()
                raise Unauthorized(INVALID_CREDENTIALS) from None
            self.core.check_user_enabled(s, user)
            return user.id

    def _keys(self, s: Session, user_id: str) -> list[bytes]:
        keys = []
        for c in s.scalars(
            select(m.Credential).where(m.Credential.user_id == user_id, m.Credential.type == "totp")
        ):
            try:
                keys.append(totp_key(self.core.decrypt_blob(c.blob)))
            except BadRequest:
                continue  # an unreadable secret matches nothing
        return keys

    def enroll(self, user: str, domain: str) -> tuple[str, str]:
        """The operator's enrolment: a new TOTP credential for the user (by id, or by name
        in the domain, by id or name); returns the user's name and the base32 secret."""
        secret = base64.b32encode(os.urandom(20)).decode().rstrip("=")
        with self.core.db.session() as s:
            found = s.get(m.User, user)
            if found is None:
                domain_row = s.get(m.Domain, domain) or s.scalar(
                    select(m.Domain).where(m.Domain.name == domain)
                )
                if domain_row is not None:
                    found = s.scalar(
                        select(m.User).where(m.User.domain_id == domain_row.id, m.User.name == user)
                    )
            if found is None:
                raise NotFound(f"Could not find user: {user[:255]} (domain {domain[:64]}).")
            s.add(
                m.Credential(
                    id=new_id(),
                    user_id=found.id,
                    project_id=None,
                    type="totp",
                    blob=self.core.encrypt_blob(secret),
                    created_at=self.core.now().replace(tzinfo=None),
                )
            )
            name = found.name
        self.core.changed()
        return name, secret

    # ------------------------------------------------------------------ rules

    def require(self, user_id: str, proven: set[str]) -> None:
        """Refuse with a receipt unless the methods proven satisfy the user's rules."""
        with self.core.db.session() as s:
            user = s.get(m.User, user_id)
            if user is None:
                raise Unauthorized(INVALID_CREDENTIALS)
            options = user.options or {}
            rules: list[tuple[str, ...]] = []
            if options.get("multi_factor_auth_enabled") is True:
                rules = [
                    tuple(r)
                    for r in options.get("multi_factor_auth_rules") or []
                    if set(r) <= RULE_METHODS
                ]
            privileged = self.core.settings.mfa_required_for_privileged and self.privileged(
                s, user_id
            )
            if privileged:
                rules = [tuple(dict.fromkeys((*r, *PRIVILEGED_RULE))) for r in rules] or [
                    PRIVILEGED_RULE
                ]
                if not self._keys(s, user_id):
                    raise Unauthorized(ENROLL_HINT.format(user=user.name))
            if not rules or any(set(r) <= proven for r in rules):
                return
            user_ref = self._user_ref(s, user)
        now = self.core.clock.timestamp()
        expires = now + self.core.settings.mfa_receipt_expiration
        methods = tuple(sorted(proven))
        receipt = self.seal(Receipt(user_id, methods, expires, now))
        body = {
            "receipt": {
                "methods": list(methods),
                "user": user_ref,
                "expires_at": _iso(expires),
                "issued_at": _iso(now),
            },
            "required_auth_methods": [list(r) for r in rules],
        }
        raise AuthMethodsRequired(receipt, body)

    def privileged(self, s: Session, user_id: str) -> bool:
        """`admin` on any scope (directly or through a group), or another privileged role."""
        groups = self.core.group_ids_of(s, user_id)
        admin = s.scalar(
            select(m.Assignment.role_id)
            .join(m.Role, m.Role.id == m.Assignment.role_id)
            .where(
                m.Role.name == "admin",
                or_(
                    (m.Assignment.actor_type == "user") & (m.Assignment.actor_id == user_id),
                    (m.Assignment.actor_type == "group") & m.Assignment.actor_id.in_(groups),
                ),
            )
            .limit(1)
        )
        return admin is not None or any(check(user_id) for check in self.privileged_checks)

    @staticmethod
    def _user_ref(s: Session, user: m.User) -> dict[str, Any]:
        domain = s.get(m.Domain, user.domain_id)
        return {
            "id": user.id,
            "name": user.name,
            "domain": {"id": user.domain_id, "name": domain.name if domain else ""},
        }

    # ------------------------------------------------------------------ receipts

    def seal(self, receipt: Receipt) -> str:
        data = {
            "u": receipt.user_id,
            "m": list(receipt.methods),
            "e": receipt.expires_at,
            "i": receipt.issued_at,
        }
        return self.core.tokens.keys.keyring().seal(RECEIPT_MARK + json.dumps(data).encode())

    def open(self, text: str) -> Receipt:
        """The receipt's content; 401 if it is forged, malformed or expired."""
        raw = self.core.tokens.keys.keyring().open(text) if len(text) <= 4096 else None
        try:
            if raw is None or not raw.startswith(RECEIPT_MARK):
                raise ValueError
            data = json.loads(raw[1:])
            receipt = Receipt(
                str(data["u"]), tuple(str(x) for x in data["m"]), float(data["e"]), float(data["i"])
            )
        except (ValueError, KeyError, TypeError):
            raise Unauthorized("The auth receipt is not valid.") from None
        if receipt.expires_at <= self.core.clock.timestamp():
            raise Unauthorized("The auth receipt has expired; log in again.")
        return receipt


def _iso(when: float) -> str:
    return isotime(dt.datetime.fromtimestamp(when, dt.UTC)) or ""


def otpauth_uri(issuer: str, account: str, secret: str) -> str:
    """The otpauth:// URI authenticator apps read (Key Uri Format), carrying the secret."""
    label = quote(f"{issuer}:{account}", safe=":@")
    fields = {"secret": secret, "issuer": issuer, "algorithm": "SHA1"}
    query = urlencode({**fields, "digits": TOTP_DIGITS, "period": TOTP_STEP})
    return f"otpauth://totp/{label}?{query}"
