"""Secrets: their records, their payloads sealed in an envelope (a fresh data key per
secret, wrapped by the project's KEK, the payload AES-256-GCM bound to the secret's id and
project), metadata, listing and deletion. Payloads cross this module in memory only:
nothing here logs one or puts one in an error."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from souverain.common.clock import naive_utc
from souverain.common.context import RequestContext
from souverain.common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from souverain.common.keys import KeyNotFound
from souverain.keymanager import sealing
from souverain.keymanager.consumers import SECRET as SECRET_KIND
from souverain.keymanager.consumers import ConsumerRecord, Consumers
from souverain.keymanager.core import (
    MAX_PAYLOAD_BYTES,
    Core,
    Owner,
    check_read,
    check_write,
    drop_acl,
    owner_of,
    project_of,
    readable_page,
)
from souverain.keymanager.keks import ACTIVE, ProjectKeks
from souverain.keymanager.models import ContainerSecret, ProjectKek, Secret, SecretMetadatum
from souverain.keymanager.quotas import Quotas

SECRET_TYPES = ("symmetric", "passphrase", "certificate", "opaque", "private", "public")
SYMMETRIC = "symmetric"
CONTENT_TYPES = ("text/plain", "application/octet-stream")


@dataclass(frozen=True)
class SecretSpec:
    """A new secret as asked (payload already decoded to bytes by the API)."""

    name: str | None = None
    secret_type: str = "opaque"  # noqa: S105 - a type name, not a secret
    algorithm: str | None = None
    bit_length: int | None = None
    mode: str | None = None
    expiration: dt.datetime | None = None
    payload: bytes | None = field(default=None, repr=False)
    content_type: str | None = None


@dataclass(frozen=True)
class SecretRecord:
    """A secret as the API shows it: never its payload."""

    id: str
    project_id: str
    creator_id: str
    name: str | None
    secret_type: str
    algorithm: str | None
    bit_length: int | None
    mode: str | None
    expiration: dt.datetime | None
    content_type: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    consumers: tuple[dict[str, str], ...] = ()


def record_of(row: Secret, consumers: Sequence[ConsumerRecord] = ()) -> SecretRecord:
    return SecretRecord(
        row.id,
        row.project_id,
        row.creator_id,
        row.name,
        row.secret_type,
        row.algorithm,
        row.bit_length,
        row.mode,
        row.expiration,
        row.content_type,
        row.created_at,
        row.updated_at,
        tuple(c.fields for c in consumers),
    )


def payload_associated(project_id: str, secret_id: str) -> bytes:
    return f"souverain-secret:{project_id}:{secret_id}".encode()


def check_payload(payload: bytes) -> None:
    if not payload:
        raise BadRequest("If 'payload' is specified, it must be non-empty.")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise too_large()


def too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Could not add secret data as it was too large: at most {MAX_PAYLOAD_BYTES} bytes."
    )


class _KekRetired(Exception):
    """The KEK a data key was just sealed under stopped being active before the commit."""


# a rotation retires a project's KEK once; a third attempt finds the new one settled
SEAL_ATTEMPTS = 3
T = TypeVar("T")


def _commit_under_active_kek(s: Session, row: Secret) -> None:
    """Write the row, then make sure the KEK its data key is sealed under is still active
    (and stays so until the commit); if a rotation retired it meanwhile, roll back."""
    s.flush()
    if row.kek_id is not None and not ProjectKeks.still_active(s, row.kek_id):
        raise _KekRetired


def _sealing_retried(attempt: Callable[[], T]) -> T:
    """Run a seal-and-commit again (under the new active KEK) when a rotation raced it."""
    for _ in range(SEAL_ATTEMPTS):
        try:
            return attempt()
        except _KekRetired:
            continue
    raise ServiceUnavailable("The project's key is being rotated; try again.")


class Secrets:
    def __init__(self, core: Core, quotas: Quotas, consumers: Consumers) -> None:
        self.core = core
        self.quotas = quotas
        self.consumers = consumers

    # -- the envelope

    def _seal_into(self, row: Secret, payload: bytes, content_type: str) -> None:
        data_key = sealing.new_key()
        purpose = f"secret:{row.id}"
        row.kek_id, row.wrapped_key = self.core.keks.wrap_data_key(
            row.project_id, data_key, purpose
        )
        row.ciphertext = sealing.seal(data_key, payload, payload_associated(row.project_id, row.id))
        row.content_type = content_type

    def _open(self, row: Secret) -> bytes:
        if row.kek_id is None or row.wrapped_key is None or row.ciphertext is None:
            raise NotFound("No payload has been stored for this secret.")
        data_key = self.core.keks.unwrap_data_key(
            row.project_id, row.kek_id, row.wrapped_key, f"secret:{row.id}"
        )
        return sealing.open_sealed(
            data_key, row.ciphertext, payload_associated(row.project_id, row.id)
        )

    def rewrap(self, secret_id: str) -> bool:
        """Wrap the secret's data key under its project's active KEK (KEK rotation); the
        payload's ciphertext does not change."""

        def rewrap_once() -> bool:
            with self.core.db.session() as s:
                row = s.get(Secret, secret_id, with_for_update=True)
                if row is None or row.kek_id is None or row.wrapped_key is None:
                    return False
                purpose = f"secret:{row.id}"
                keks = self.core.keks
                key = keks.unwrap_data_key(row.project_id, row.kek_id, row.wrapped_key, purpose)
                row.kek_id, row.wrapped_key = keks.wrap_data_key(row.project_id, key, purpose)
                _commit_under_active_kek(s, row)
                return True

        return _sealing_retried(rewrap_once)

    # -- records

    def create(self, ctx: RequestContext, spec: SecretSpec) -> SecretRecord:
        project_id = project_of(ctx)
        return self.store(project_id, ctx.user_id, spec)

    def store(self, project_id: str, creator_id: str, spec: SecretSpec) -> SecretRecord:
        now = self.core.now()
        if spec.expiration is not None and naive_utc(spec.expiration) <= now:
            raise BadRequest("Invalid date for 'expiration': it is before the current time.")
        if spec.payload is not None:
            check_payload(spec.payload)
        secret_id = str(uuid.uuid4())

        def insert() -> Secret:
            row = Secret(
                id=secret_id,
                project_id=project_id,
                creator_id=creator_id,
                name=spec.name,
                secret_type=spec.secret_type,
                algorithm=spec.algorithm,
                bit_length=spec.bit_length,
                mode=spec.mode,
                expiration=naive_utc(spec.expiration) if spec.expiration else None,
                created_at=now,
                updated_at=now,
            )
            if spec.payload is not None:
                self._seal_into(row, spec.payload, spec.content_type or CONTENT_TYPES[1])
            with self.core.db.session() as s:
                self.quotas.reserve(s, project_id, "secrets")
                s.add(row)
                _commit_under_active_kek(s, row)
            return row

        return record_of(_sealing_retried(insert))

    def _live(self, s: Session, secret_id: str) -> Secret:
        row = s.get(Secret, secret_id)
        if row is None or self._expired(row):
            raise NotFound("No such secret.")
        return row

    def _expired(self, row: Secret) -> bool:
        return row.expiration is not None and row.expiration <= self.core.now()

    def _owner(self, s: Session, row: Secret) -> Owner:
        return owner_of(s, row.id, row.project_id, row.creator_id)

    def get(self, ctx: RequestContext, secret_id: str) -> SecretRecord:
        with self.core.db.session() as s:
            row = self._live(s, secret_id)
            check_read(ctx, self._owner(s, row), "secret")
            return record_of(row, self.consumers.of(s, SECRET_KIND, row.id))

    def payload(self, ctx: RequestContext, secret_id: str) -> tuple[SecretRecord, bytes]:
        with self.core.db.session() as s:
            row = self._live(s, secret_id)
            check_read(ctx, self._owner(s, row), "secret")
        return record_of(row), self._open(row)

    def put_payload(
        self, ctx: RequestContext, secret_id: str, payload: bytes, content_type: str
    ) -> None:
        """The second step of a two-step create: a payload for a secret that has none."""
        check_payload(payload)

        def seal_once() -> None:
            with self.core.db.session() as s:
                row = self._live(s, secret_id)
                check_write(ctx, self._owner(s, row), "secret")
                if row.ciphertext is not None:
                    raise Conflict("The secret already has a payload; a payload is never replaced.")
                self._seal_into(row, payload, content_type)
                row.updated_at = self.core.now()
                _commit_under_active_kek(s, row)

        _sealing_retried(seal_once)

    def delete(self, ctx: RequestContext, secret_id: str, force: bool = True) -> None:
        """Delete the secret; unless `force`, not while it has consumers (Barbican 1.2)."""
        with self.core.db.session() as s:
            row = s.get(Secret, secret_id)
            if row is None:
                raise NotFound("No such secret.")
            check_write(ctx, self._owner(s, row), "secret")
            if not force and self.consumers.count(s, SECRET_KIND, row.id):
                raise BadRequest(
                    "Secret cannot be deleted as it has consumers. Remove them first, or "
                    "delete with force=true."
                )
            self.remove(s, row)

    def remove(self, s: Session, row: Secret) -> None:
        self.consumers.drop_all(s, SECRET_KIND, row.id)
        s.query(SecretMetadatum).filter(SecretMetadatum.secret_id == row.id).delete()
        s.query(ContainerSecret).filter(ContainerSecret.secret_id == row.id).delete()
        drop_acl(s, row.id)
        s.delete(row)

    def find(
        self,
        ctx: RequestContext,
        limit: int,
        offset: int,
        name: str | None = None,
        secret_type: str | None = None,
    ) -> tuple[list[SecretRecord], int]:
        """The caller's project's live secrets it may read, oldest first, and their total."""
        project_id = project_of(ctx)
        now = self.core.now()
        query = select(Secret).where(
            Secret.project_id == project_id,
            (Secret.expiration.is_(None)) | (Secret.expiration > now),
        )
        if name is not None:
            query = query.where(Secret.name == name)
        if secret_type is not None:
            query = query.where(Secret.secret_type == secret_type)
        with self.core.db.session() as s:
            rows = s.scalars(query.order_by(Secret.created_at, Secret.id)).all()
            page, total = readable_page(s, ctx, rows, offset, limit)
            used = self.consumers.of_many(s, SECRET_KIND, [r.id for r in page])
            return [record_of(r, used.get(r.id, ())) for r in page], total

    # -- metadata (Barbican's user metadata: lower-case keys)

    def metadata(self, ctx: RequestContext, secret_id: str) -> dict[str, str]:
        with self.core.db.session() as s:
            row = self._live(s, secret_id)
            check_read(ctx, self._owner(s, row), "secret")
            items = s.scalars(
                select(SecretMetadatum).where(SecretMetadatum.secret_id == secret_id)
            ).all()
            return {m.key: m.value for m in items}

    def replace_metadata(self, ctx: RequestContext, secret_id: str, items: dict[str, str]) -> None:
        with self.core.db.session() as s:
            row = self._live(s, secret_id)
            check_write(ctx, self._owner(s, row), "secret")
            s.query(SecretMetadatum).filter(SecretMetadatum.secret_id == secret_id).delete()
            for key, value in items.items():
                s.add(SecretMetadatum(secret_id=secret_id, key=key, value=value))

    def metadatum(self, ctx: RequestContext, secret_id: str, key: str) -> str:
        with self.core.db.session() as s:
            row = self._live(s, secret_id)
            check_read(ctx, self._owner(s, row), "secret")
            item = s.get(SecretMetadatum, (secret_id, key))
            if item is None:
                raise NotFound("Secret metadata not found.")
            return item.value

    def set_metadatum(
        self, ctx: RequestContext, secret_id: str, key: str, value: str, create: bool
    ) -> None:
        """POST adds a new key (409 if present); PUT on a key changes it (404 if absent)."""
        with self.core.db.session() as s:
            row = self._live(s, secret_id)
            check_write(ctx, self._owner(s, row), "secret")
            item = s.get(SecretMetadatum, (secret_id, key))
            if create and item is not None:
                raise Conflict("The secret already has metadata under this key.")
            if not create and item is None:
                raise NotFound("Secret metadata not found.")
            if item is None:
                s.add(SecretMetadatum(secret_id=secret_id, key=key, value=value))
            else:
                item.value = value

    def delete_metadatum(self, ctx: RequestContext, secret_id: str, key: str) -> None:
        with self.core.db.session() as s:
            row = self._live(s, secret_id)
            check_write(ctx, self._owner(s, row), "secret")
            if s.get(SecretMetadatum, (secret_id, key)) is None:
                raise NotFound("Secret metadata not found.")
            s.query(SecretMetadatum).filter(
                SecretMetadatum.secret_id == secret_id, SecretMetadatum.key == key
            ).delete()

    # -- what ProjectKeys and orders use (no request context: the project is named)

    def own_key(self, project_id: str, secret_id: str) -> bytes:
        """A live symmetric secret of the project whose payload is an AES key."""
        with self.core.db.session() as s:
            row = s.get(Secret, secret_id)
            if row is None or row.project_id != project_id or self._expired(row):
                raise KeyNotFound(f"Key {secret_id[:64]} does not exist in this project.")
            if row.secret_type != SYMMETRIC or row.ciphertext is None:
                raise KeyNotFound(f"Key {secret_id[:64]} is not a symmetric key with a payload.")
        key = self._open(row)
        if len(key) not in (16, 24, 32):
            raise KeyNotFound(f"Key {secret_id[:64]} is not 128, 192 or 256 bits long.")
        return key

    def forget(self, project_id: str, secret_id: str) -> None:
        with self.core.db.session() as s:
            row = s.get(Secret, secret_id)
            if row is not None and row.project_id == project_id:
                self.remove(s, row)

    def count(self, project_id: str | None = None) -> int:
        query = select(func.count()).select_from(Secret)
        if project_id is not None:
            query = query.where(Secret.project_id == project_id)
        with self.core.db.session() as s:
            return int(s.scalar(query) or 0)

    def named_keks(self) -> set[str]:
        """The KEKs some secret's data key is wrapped under."""
        with self.core.db.session() as s:
            query = select(Secret.kek_id).where(Secret.kek_id.is_not(None)).distinct()
            return {k for k in s.scalars(query).all() if k is not None}

    def ids_under_previous_keks(self) -> list[str]:
        with self.core.db.session() as s:
            query = (
                select(Secret.id)
                .join(ProjectKek, ProjectKek.id == Secret.kek_id)
                .where(ProjectKek.state != ACTIVE)
            )
            return list(s.scalars(query).all())
