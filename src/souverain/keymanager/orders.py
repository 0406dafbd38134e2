"""Orders: the key manager generates a key for the caller. `key` makes a symmetric key
(AES, from the operating system's generator) as a secret; `asymmetric` an RSA key pair as
two secrets (PEM) in an rsa container. Generation is quick, so an order is ACTIVE when the
202 answers; one that cannot be filled is refused (400) and leaves nothing behind. Generated
keys go straight into the envelope: never into a log or an error."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.tenancy import may_act_on
from souverain.keymanager.containers import Containers
from souverain.keymanager.core import Core, check_write, owner_of, project_of
from souverain.keymanager.models import Order
from souverain.keymanager.quotas import Quotas
from souverain.keymanager.secrets import Secrets, SecretSpec

KEY_ALGORITHMS = {"aes": (128, 192, 256)}
RSA_BITS = (2048, 3072, 4096)
TYPES = ("key", "asymmetric")


@dataclass(frozen=True)
class OrderRecord:
    id: str
    project_id: str
    creator_id: str
    type: str
    meta: dict[str, Any]
    status: str
    secret_id: str | None
    container_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


def _record(row: Order) -> OrderRecord:
    return OrderRecord(
        row.id,
        row.project_id,
        row.creator_id,
        row.type,
        dict(row.meta),
        row.status,
        row.secret_id,
        row.container_id,
        row.created_at,
        row.updated_at,
    )


def _symmetric(meta: dict[str, Any]) -> SecretSpec:
    algorithm = str(meta.get("algorithm") or "").lower()
    bits = meta.get("bit_length")
    if algorithm not in KEY_ALGORITHMS:
        raise BadRequest("Invalid algorithm for a key order: aes.")
    if bits not in KEY_ALGORITHMS[algorithm]:
        raise BadRequest("Invalid bit_length for an aes key order: 128, 192 or 256.")
    return SecretSpec(
        name=meta.get("name"),
        secret_type="symmetric",  # noqa: S106 - a type name, not a secret
        algorithm=algorithm,
        bit_length=bits,
        mode=meta.get("mode"),
        expiration=meta.get("expiration"),
        payload=os.urandom(bits // 8),
        content_type="application/octet-stream",
    )


def _key_pair(meta: dict[str, Any]) -> tuple[SecretSpec, SecretSpec]:
    if str(meta.get("algorithm") or "").lower() != "rsa":
        raise BadRequest("Invalid algorithm for an asymmetric order: rsa.")
    bits = meta.get("bit_length")
    if bits not in RSA_BITS:
        raise BadRequest("Invalid bit_length for an rsa order: 2048, 3072 or 4096.")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    common: dict[str, Any] = {
        "name": meta.get("name"),
        "algorithm": "rsa",
        "bit_length": bits,
        "expiration": meta.get("expiration"),
        "content_type": "application/octet-stream",
    }
    return (
        SecretSpec(secret_type="private", payload=private, **common),  # noqa: S106
        SecretSpec(secret_type="public", payload=public, **common),  # noqa: S106
    )


class Orders:
    def __init__(
        self, core: Core, quotas: Quotas, secrets: Secrets, containers: Containers
    ) -> None:
        self.core = core
        self.quotas = quotas
        self.secrets = secrets
        self.containers = containers

    def create(self, ctx: RequestContext, kind: str, meta: dict[str, Any]) -> OrderRecord:
        """Fill the order now; `meta` as checked by the API (expiration a datetime)."""
        project_id = project_of(ctx)
        with self.core.db.session() as s:
            self.quotas.reserve(s, project_id, "orders")
        made: list[str] = []
        try:
            secret_id, container_id = self._fill(ctx, project_id, kind, meta, made)
        except BaseException:  # nothing of a refused order stays behind
            for secret in made:
                self.secrets.forget(project_id, secret)
            raise
        now = self.core.now()
        stored = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in meta.items()}
        row = Order(
            id=str(uuid.uuid4()),
            project_id=project_id,
            creator_id=ctx.user_id,
            type=kind,
            meta=stored,
            status="ACTIVE",
            secret_id=secret_id,
            container_id=container_id,
            created_at=now,
            updated_at=now,
        )
        with self.core.db.session() as s:
            s.add(row)
        return _record(row)

    def _fill(
        self, ctx: RequestContext, project_id: str, kind: str, meta: dict[str, Any], made: list[str]
    ) -> tuple[str | None, str | None]:
        """(secret id, container id) of what the order made; `made` collects secrets."""
        if kind == "key":
            secret = self.secrets.store(project_id, ctx.user_id, _symmetric(meta))
            made.append(secret.id)
            return secret.id, None
        private_spec, public_spec = _key_pair(meta)
        for spec in (private_spec, public_spec):
            made.append(self.secrets.store(project_id, ctx.user_id, spec).id)
        refs = [("private_key", made[0]), ("public_key", made[1])]
        with self.core.db.session() as s:
            container = self.containers.store(
                s, project_id, ctx.user_id, meta.get("name"), "rsa", refs
            )
        return None, container

    def _row(self, ctx: RequestContext, order_id: str) -> Order:
        with self.core.db.session() as s:
            row = s.get(Order, order_id)
        if row is None or not may_act_on(ctx, row.project_id):
            raise NotFound("No such order.")
        return row

    def get(self, ctx: RequestContext, order_id: str) -> OrderRecord:
        return _record(self._row(ctx, order_id))

    def delete(self, ctx: RequestContext, order_id: str) -> None:
        row = self._row(ctx, order_id)
        with self.core.db.session() as s:
            check_write(ctx, owner_of(s, row.id, row.project_id, row.creator_id), "order")
            s.query(Order).filter(Order.id == row.id).delete()

    def find(self, ctx: RequestContext, limit: int, offset: int) -> tuple[list[OrderRecord], int]:
        project_id = project_of(ctx)
        with self.core.db.session() as s:
            rows = s.scalars(
                select(Order)
                .where(Order.project_id == project_id)
                .order_by(Order.created_at, Order.id)
            ).all()
        return [_record(r) for r in rows[offset : offset + limit]], len(rows)
