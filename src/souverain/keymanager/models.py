"""The key manager's tables: project key-encryption keys (wrapped by the root of trust),
secrets (payloads encrypted under a data key wrapped by the project's KEK), their metadata,
containers, orders, ACLs and quotas. No column ever holds a plaintext key or payload."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from souverain.db.base import Base


class ProjectKek(Base):
    """One of a project's key-encryption keys: `active` wraps new data keys, `previous`
    ones still open what they wrapped (rotation without downtime)."""

    __tablename__ = "kms_project_keys"
    __table_args__ = (UniqueConstraint("active_for"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))  # active | previous
    # the project id while active, else NULL: one active KEK a project, by the database
    active_for: Mapped[str | None] = mapped_column(String(64), nullable=True)
    root_version: Mapped[str] = mapped_column(String(64), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Secret(Base):
    __tablename__ = "kms_secrets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    creator_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    secret_type: Mapped[str] = mapped_column(String(32))
    algorithm: Mapped[str | None] = mapped_column(String(255), nullable=True)
    bit_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mode: Mapped[str | None] = mapped_column(String(255), nullable=True)
    expiration: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # the envelope: payload sealed under a data key, the data key sealed under a KEK
    kek_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class SecretMetadatum(Base):
    __tablename__ = "kms_secret_metadata"

    secret_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Container(Base):
    __tablename__ = "kms_containers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    creator_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ContainerSecret(Base):
    __tablename__ = "kms_container_secrets"

    container_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    secret_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)


class Order(Base):
    __tablename__ = "kms_orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    creator_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    secret_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    container_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    error_status_code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    error_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Acl(Base):
    """The `read` ACL of a secret or container (Barbican's only operation)."""

    __tablename__ = "kms_acls"

    entity_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_access: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class AclUser(Base):
    __tablename__ = "kms_acl_users"

    entity_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Quota(Base):
    """A project's quotas; None: the default (-1 unlimited)."""

    __tablename__ = "kms_quotas"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secrets: Mapped[int | None] = mapped_column(Integer, nullable=True)
    orders: Mapped[int | None] = mapped_column(Integer, nullable=True)
    containers: Mapped[int | None] = mapped_column(Integer, nullable=True)
    consumers: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)
