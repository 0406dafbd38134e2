"""Encrypted volumes: volume types' encryption (Cinder's encryption types, admin only) and
the keys of encrypted volumes in the key manager. No HTTP.

A volume of an encrypted type (or any new volume when `[encryption] mandatory` is set) gets
its own 256-bit secret in the key manager, owned by the volume's project as Cinder's keys
are in Barbican; its bytes are LUKS under the hex of that secret (`luks.Passphrase`). Its
snapshots share the key; a volume made from one gets a new key (in files the data is
re-encrypted on the copy; on RBD the clone's LUKS keyslot is re-wrapped, `luks_rbd.py`).
A type's encryption never changes while volumes of the type exist. Nothing here logs,
raises or returns a key's bytes; they go from the key manager to qemu-img or QEMU.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.keys import KeyConsumer, KeyNotFound, ProjectKeys
from souverain.volume import models as m
from souverain.volume.luks import LuksSpec, Passphrase
from souverain.volume.rules import Shared, require_admin
from souverain.volume.schemas import EncryptionSpec
from souverain.volume.sealed import SealedStore, sealed_store

# what a new volume gets when encryption is mandatory and its type says nothing
MANDATORY_SPEC = LuksSpec(key_size=256)


@dataclass(frozen=True)
class TypeEncryption:
    """A type's encryption as Cinder shows it."""

    volume_type_id: str
    encryption_id: str
    provider: str
    cipher: str | None
    key_size: int | None
    control_location: str
    row: m.VolumeTypeEncryption


class EncryptionTypes:
    """Encryption of volume types: Cinder's `/types/{id}/encryption`. Admins only."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def get(self, ctx: RequestContext, type_id: str) -> m.VolumeTypeEncryption | None:
        with self.shared.db.session() as s:
            self._type(s, type_id)
            return s.get(m.VolumeTypeEncryption, type_id)

    def create(
        self, ctx: RequestContext, type_id: str, spec: EncryptionSpec
    ) -> m.VolumeTypeEncryption:
        require_admin(ctx)
        now = self.shared.clock.now()
        with self.shared.db.session() as s:
            vtype = self._type(s, type_id)
            if s.get(m.VolumeTypeEncryption, vtype.id) is not None:
                raise BadRequest(f"Volume type encryption for type {type_id} already exists.")
            self._unused(s, vtype.id, "create")
            row = m.VolumeTypeEncryption(
                volume_type_id=vtype.id,
                encryption_id=str(uuid.uuid4()),
                provider=spec.provider or "luks",
                cipher=spec.cipher,
                key_size=spec.key_size,
                control_location=spec.control_location or "front-end",
                created_at=now,
                updated_at=None,
            )
            s.add(row)
            s.flush()
            return row

    def update(
        self, ctx: RequestContext, type_id: str, encryption_id: str, spec: EncryptionSpec
    ) -> m.VolumeTypeEncryption:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self._encryption(s, type_id, encryption_id)
            self._unused(s, row.volume_type_id, "update")
            if spec.provider is not None:
                row.provider = spec.provider
            if spec.cipher is not None:
                row.cipher = spec.cipher
            if spec.key_size is not None:
                row.key_size = spec.key_size
            if spec.control_location is not None:
                row.control_location = spec.control_location
            row.updated_at = self.shared.clock.now()
            s.flush()
            return row

    def delete(self, ctx: RequestContext, type_id: str, encryption_id: str) -> None:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self._encryption(s, type_id, encryption_id)
            self._unused(s, row.volume_type_id, "delete")
            s.delete(row)

    def _type(self, s: Session, type_id: str) -> m.VolumeType:
        row = s.get(m.VolumeType, type_id)
        if row is None:
            raise NotFound(f"Volume type {type_id[:64]} could not be found.")
        return row

    def _encryption(self, s: Session, type_id: str, encryption_id: str) -> m.VolumeTypeEncryption:
        self._type(s, type_id)
        row = s.get(m.VolumeTypeEncryption, type_id)
        if row is None or row.encryption_id != encryption_id:
            raise NotFound(f"Volume type encryption for type {type_id[:64]} does not exist.")
        return row

    def _unused(self, s: Session, type_id: str, verb: str) -> None:
        used = s.scalar(
            select(func.count()).select_from(m.Volume).where(m.Volume.volume_type_id == type_id)
        )
        if used:
            raise BadRequest(f"Cannot {verb} encryption specs. Volume type in use.")


def volume_consumer(volume_id: str) -> KeyConsumer:
    return KeyConsumer("volume", "volume", volume_id)


class VolumeKeys:
    """The keys of encrypted volumes, and the LUKS volumes they unlock."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    @property
    def keys(self) -> ProjectKeys | None:
        return self.shared.project_keys

    def spec_for(self, s: Session, volume_type_id: str) -> LuksSpec | None:
        """How a new volume of the type is encrypted; None: plain (never when mandatory)."""
        row = s.get(m.VolumeTypeEncryption, volume_type_id)
        if row is not None:
            return LuksSpec(key_size=row.key_size or 256)
        return MANDATORY_SPEC if self.shared.encryption_mandatory else None

    def sealed(self) -> SealedStore:
        """The backend's LUKS volumes (files or RBD images); others refuse encryption."""
        backend = self.shared.backend
        store = sealed_store(backend)
        if store is None:
            raise BadRequest(
                "Invalid volume type: encrypted volumes are not available on the "
                f"{backend.kind} volume backend of this cloud."
            )
        return store

    def _manager(self) -> ProjectKeys:
        if self.keys is None:
            raise BadRequest(
                "Invalid volume type: encrypted volumes need the key manager, which this "
                "cloud does not run."
            )
        return self.keys

    def new_key(self, project_id: str, user_id: str | None, volume_id: str) -> str:
        """A new key owned by the project, made from the volume; its id."""
        return self._manager().create_secret_key(project_id, user_id, f"volume-{volume_id}")

    def new_volume_key(self, project_id: str, user_id: str | None, volume_id: str) -> str:
        """A new volume's key, with the volume registered as its consumer (so the key
        manager shows who uses it and refuses a plain delete of it)."""
        key_id = self.new_key(project_id, user_id, volume_id)
        self.adopt(project_id, key_id, volume_id)
        return key_id

    def adopt(self, project_id: str, key_id: str, volume_id: str) -> None:
        """Register the volume as the consumer of its key (a new one, or a restored one's)."""
        self._manager().add_consumer(project_id, key_id, volume_consumer(volume_id))

    def clone_key(
        self, project_id: str, key_id: str, to_project_id: str, user_id: str | None, name: str
    ) -> str:
        """A new secret of `to_project_id` with the bytes of the project's key `key_id` (a
        backup's key, a restored volume's: the same LUKS header opens with either)."""
        try:
            return self._manager().clone_secret_key(
                project_id, key_id, to_project_id, user_id, name
            )
        except KeyNotFound:
            raise BadRequest(
                f"The encryption key {key_id} is gone from the key manager: the data it "
                "encrypts cannot be read."
            ) from None

    def passphrase(self, project_id: str, key_id: str) -> Passphrase:
        try:
            return Passphrase.of_key(self._manager().secret_key(project_id, key_id))
        except KeyNotFound:
            raise BadRequest(
                f"The encryption key {key_id} of this volume is gone from the key manager: "
                "its data cannot be read."
            ) from None

    def drop(self, project_id: str, key_id: str | None) -> None:
        """Delete a key only its one owner named (a backup's)."""
        if key_id is not None and self.keys is not None:
            self.keys.delete_secret_key(project_id, key_id)

    def forget(self, project_id: str, key_id: str | None, volume_id: str | None = None) -> None:
        """The volume `volume_id` (if named) no longer uses the key; delete a key no volume
        or snapshot names any more."""
        if key_id is None or self.keys is None:
            return
        if volume_id is not None:
            self.keys.remove_consumer(project_id, key_id, volume_consumer(volume_id))
        with self.shared.db.session() as s:
            volumes = s.scalar(
                select(func.count())
                .select_from(m.Volume)
                .where(m.Volume.encryption_key_id == key_id)
            )
            snaps = s.scalar(
                select(func.count())
                .select_from(m.Snapshot)
                .where(m.Snapshot.encryption_key_id == key_id)
            )
        if not volumes and not snaps:
            self.keys.delete_secret_key(project_id, key_id)

    def ready(self) -> None:
        """Refuse early what cannot be encrypted here (another backend, no key manager)."""
        self.sealed()
        self._manager()
