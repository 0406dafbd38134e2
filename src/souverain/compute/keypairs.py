"""Key pairs: a user's SSH public keys, one of which a server's config drive carries.

A key pair belongs to a user, not a project (as Nova's do); the project's quota still
bounds how many its members hold.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound
from souverain.compute.core import ComputeCore, require_admin
from souverain.compute.models import Keypair
from souverain.compute.quotas import Quotas


def _fingerprint(public_key: str) -> str:
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _x509_fingerprint(certificate: str) -> str:
    """SHA-1 of the certificate's DER bytes, in colon-separated hex (as Nova shows it)."""
    cert = x509.load_pem_x509_certificate(certificate.encode())
    digest = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - a name, not a signature
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _check_public_key(public_key: str, key_type: str) -> str:
    key = public_key.strip()
    if key_type == "x509":
        try:
            x509.load_pem_x509_certificate(key.encode())
        except ValueError:
            raise BadRequest(
                "Keypair data is invalid: an x509 key pair's public_key is a PEM certificate."
            ) from None
        return key
    try:
        serialization.load_ssh_public_key(key.encode())
    except (ValueError, UnsupportedAlgorithm, IndexError):
        raise BadRequest("Keypair data is invalid: not an OpenSSH public key.") from None
    return key


def _fingerprint_of(public_key: str, key_type: str) -> str:
    return _x509_fingerprint(public_key) if key_type == "x509" else _fingerprint(public_key)


def _generated_x509(name: str) -> tuple[str, str]:
    """A new RSA key and a self-signed certificate naming the key pair, valid ten years:
    (PEM certificate, PEM private key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    start = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    private_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), private_key


def _generated(name: str) -> tuple[str, str]:
    """A new Ed25519 key pair: (OpenSSH public key, PEM private key)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public_key = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
        + f" {name}"
    )
    return public_key, private_key


def _view(k: Keypair) -> dict[str, Any]:
    return {
        "name": k.name,
        "type": k.type,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
        "user_id": k.user_id,
        "id": k.id,
        "created_at": k.created_at,
        "deleted": False,
        "deleted_at": None,
        "updated_at": None,
    }


def keypair_of(s: Session, user_id: str, name: str) -> Keypair | None:
    return s.scalar(select(Keypair).where(Keypair.user_id == user_id, Keypair.name == name))


class Keypairs:
    def __init__(self, core: ComputeCore, quotas: Quotas) -> None:
        self.core = core
        self.db = core.db
        self.quotas = quotas

    @staticmethod
    def _owner(ctx: RequestContext, user_id: str | None) -> str:
        if user_id and user_id != ctx.user_id:
            require_admin(ctx, "manage another user's keypairs")
            return user_id
        return ctx.user_id

    def list_keypairs(
        self, ctx: RequestContext, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        owner = self._owner(ctx, user_id)
        with self.db.session() as s:
            rows = s.scalars(
                select(Keypair).where(Keypair.user_id == owner).order_by(Keypair.name)
            ).all()
            return [_view(k) for k in rows]

    def get_keypair(
        self, ctx: RequestContext, name: str, user_id: str | None = None
    ) -> dict[str, Any]:
        owner = self._owner(ctx, user_id)
        with self.db.session() as s:
            row = keypair_of(s, owner, name)
            if row is None:
                raise NotFound(f"Keypair {name} not found for user {owner}.")
            return _view(row)

    def create_keypair(
        self,
        ctx: RequestContext,
        name: str,
        public_key: str | None,
        key_type: str = "ssh",
        user_id: str | None = None,
    ) -> dict[str, Any]:
        owner = self._owner(ctx, user_id)
        private_key = None
        if public_key is None:
            make = _generated_x509 if key_type == "x509" else _generated
            public_key, private_key = make(name)
        else:
            public_key = _check_public_key(public_key, key_type)
        with self.db.session() as s:
            if ctx.project_id:
                self.quotas.lock(s, ctx.project_id)
                limit = self.quotas.limits_of(s, ctx.project_id)["key_pairs"]
                held = s.scalar(select(func.count()).where(Keypair.user_id == owner)) or 0
                if 0 <= limit <= held:
                    raise Forbidden("Quota exceeded, too many key pairs.")
            if keypair_of(s, owner, name):
                raise Conflict(f"Key pair '{name}' already exists.")
            row = Keypair(
                user_id=owner,
                name=name,
                type=key_type,
                public_key=public_key,
                fingerprint=_fingerprint_of(public_key, key_type),
                created_at=self.core.now(),
            )
            s.add(row)
            s.flush()
            view = _view(row)
        if private_key is not None:
            view["private_key"] = private_key
        return view

    def delete_keypair(self, ctx: RequestContext, name: str, user_id: str | None = None) -> None:
        owner = self._owner(ctx, user_id)
        with self.db.session() as s:
            row = keypair_of(s, owner, name)
            if row is None:
                raise NotFound(f"Keypair {name} not found for user {owner}.")
            s.delete(row)
