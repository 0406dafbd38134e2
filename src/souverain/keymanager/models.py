"""The key manager's tables: project key-encryption keys (wrapped by the root of trust),
secrets (payloads encrypted under a data key wrapped by the project's KEK), their metadata,
containers, their consumers, orders, ACLs and quotas. No column ever holds a plaintext key
or payload."""

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
    ones still open what they wrapped (rotation without downtime) until nothing names them
    and `souverain kms rotate` deletes them (`retired_at`: when it stopped being active)."""

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
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


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


class SecretConsumer(Base):
    """A resource of some service that uses a secret (Barbican's secret consumers): shown
    with the secret, and a reason to refuse deleting it unless forced."""

    __tablename__ = "kms_secret_consumers"
    __table_args__ = (UniqueConstraint("secret_id", "service", "resource_type", "resource_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    secret_id: Mapped[str] = mapped_column(String(36), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)  # who registered it
    service: Mapped[str] = mapped_column(String(255))
    resource_type: Mapped[str] = mapped_column(String(255))
    resource_id: Mapped[str] = mapped_column(String(256))  # a UUID, or a bucket's name
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


class ContainerConsumer(Base):
    """A user of a container (Barbican's container consumers: a name and a URL)."""

    __tablename__ = "kms_container_consumers"
    __table_args__ = (UniqueConstraint("container_id", "name", "url"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    container_id: Mapped[str] = mapped_column(String(36), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)  # who registered it
    name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


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
