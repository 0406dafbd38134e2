"""Volume tables: volume types, volumes (with their one attachment), snapshots, quota rows.

Rows hold metadata only; a volume's or snapshot's bytes are a qcow2 file the
backend names after the row's id (ids are our own UUIDs, never a client's text).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from souverain.db.base import Base


class VolumeType(Base):
    __tablename__ = "volume_types"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    extra_specs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    qos_specs_id: Mapped[str | None] = mapped_column(
        ForeignKey("volume_qos_specs.id"), nullable=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class VolumeTypeEncryption(Base):
    """A volume type's encryption (Cinder's "encryption type"): volumes of the type are LUKS,
    each with its own key in the key manager. Never changed while volumes of the type exist."""

    __tablename__ = "volume_type_encryption"

    volume_type_id: Mapped[str] = mapped_column(
        ForeignKey("volume_types.id", ondelete="CASCADE"), primary_key=True
    )
    encryption_id: Mapped[str] = mapped_column(String(36), unique=True)
    provider: Mapped[str] = mapped_column(String(255))
    cipher: Mapped[str | None] = mapped_column(String(255), nullable=True)
    key_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    control_location: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class VolumeTypeAccess(Base):
    """A project that may use a private volume type."""

    __tablename__ = "volume_type_access"

    volume_type_id: Mapped[str] = mapped_column(
        ForeignKey("volume_types.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class QosSpecs(Base):
    """Quality-of-service limits an admin names and associates with volume types."""

    __tablename__ = "volume_qos_specs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    consumer: Mapped[str] = mapped_column(String(16))
    specs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class VolumeTransfer(Base):
    """An offer of a volume to another project: the key is shown once, only its hash kept."""

    __tablename__ = "volume_transfers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    salt: Mapped[str] = mapped_column(String(64))
    crypt_hash: Mapped[str] = mapped_column(String(128))
    source_project_id: Mapped[str] = mapped_column(String(64), index=True)
    destination_project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    accepted: Mapped[bool] = mapped_column(Boolean, default=False)
    no_snapshots: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Volume(Base):
    """A block device of a project; at most one attachment (no multiattach)."""

    __tablename__ = "volumes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    description: Mapped[str | None] = mapped_column(String(255), nullable=True)
    size: Mapped[int] = mapped_column(Integer)  # GiB
    status: Mapped[str] = mapped_column(String(32), index=True)
    volume_type_id: Mapped[str] = mapped_column(ForeignKey("volume_types.id"))
    availability_zone: Mapped[str] = mapped_column(String(64))
    bootable: Mapped[bool] = mapped_column(Boolean, default=False)
    readonly: Mapped[bool] = mapped_column(Boolean, default=False)
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    image_metadata: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    snapshot_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    source_volid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # why the last operation failed, in words a customer can act on (GET /messages)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the attachment, set while reserved/attaching/in-use/detaching
    server_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attachment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    attached_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    attach_seq: Mapped[int] = mapped_column(Integer, default=0)
    delete_on_termination: Mapped[bool] = mapped_column(Boolean, default=False)
    # the key-manager secret whose bytes (hex) unlock the volume's LUKS; None: plain bytes
    encryption_key_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Snapshot(Base):
    __tablename__ = "volume_snapshots"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    description: Mapped[str | None] = mapped_column(String(255), nullable=True)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # what os-update_snapshot_status last reported ("90%"); None: known from the status
    progress: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # an encrypted volume's snapshot is LUKS under the volume's own key (as in Cinder)
    encryption_key_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class VolumeQuota(Base):
    """A project's limits (None: the configured default), and the row a quota claim locks."""

    __tablename__ = "volume_quotas"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    volumes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gigabytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    snapshots: Mapped[int | None] = mapped_column(Integer, nullable=True)
    backups: Mapped[int | None] = mapped_column(Integer, nullable=True)
    backup_gigabytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the largest volume the project may make (-1: only the operator's cap applies)
    per_volume_gigabytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class VolumeBackup(Base):
    """A copy of a volume's bytes kept as objects in one of the project's buckets.

    `chunks` lists, in order, each fixed-size piece of the volume: its SHA-256 and the
    object holding it (an incremental backup names its parent's objects for the pieces
    that did not change); `stored_bytes` is what this backup itself added to the bucket.
    """

    __tablename__ = "volume_backups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    volume_id: Mapped[str] = mapped_column(String(36), index=True)
    snapshot_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    parent_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    description: Mapped[str | None] = mapped_column(String(255), nullable=True)
    container: Mapped[str] = mapped_column(String(63))
    size: Mapped[int] = mapped_column(Integer)  # GiB, the volume's
    status: Mapped[str] = mapped_column(String(16), index=True)
    availability_zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    chunks: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    # the volume's metadata and bootable flag when backed up, given back on restore
    volume_info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    object_count: Mapped[int] = mapped_column(Integer, default=0)
    stored_bytes: Mapped[int] = mapped_column(Integer, default=0)
    fail_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    data_timestamp: Mapped[dt.datetime] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)
