"""`ProjectKeys` (common/keys.py) over the key manager: data keys for the services that
encrypt at rest, wrapped under the project's KEK ("SSE-S3") or under one of its symmetric
secrets ("SSE-KMS"). A wrapped data key names what wrapped it:

    b"SVK1" | kind (b"P" project KEK, b"S" secret) | id length (1 byte) | id | sealed key

The sealed key is AES-256-GCM bound to the project and the wrapping key's id, so a wrap
moved to another project, or its id edited, fails to open (KeyNotFound). Plaintext keys
leave only as return values; nothing here logs one."""

from __future__ import annotations

from collections.abc import Iterable

from souverain.common.keys import DataKey, KeyConsumer, KeyNotFound
from souverain.keymanager import sealing
from souverain.keymanager.consumers import Consumers
from souverain.keymanager.keks import ProjectKeks
from souverain.keymanager.secrets import SYMMETRIC, Secrets, SecretSpec

MAGIC = b"SVK1"
KEK = b"P"
SECRET = b"S"
PURPOSE = "data-key"
# what names the KEK of a wrapped data key: magic, kind, id length and the id (32 hex digits)
KEK_HEAD_BYTES = len(MAGIC) + 2 + 32


def named_keks(heads: Iterable[bytes]) -> set[str]:
    """The project KEKs that the heads (`KEK_HEAD_BYTES` long) of wrapped data keys name."""
    named: set[str] = set()
    for head in heads:
        try:
            kind, key_id, _ = _unpack(head)
        except KeyNotFound:
            continue
        if kind == KEK:
            named.add(key_id)
    return named


def _pack(kind: bytes, key_id: str, sealed: bytes) -> bytes:
    ident = key_id.encode()
    return MAGIC + kind + bytes([len(ident)]) + ident + sealed


def _unpack(wrapped: bytes) -> tuple[bytes, str, bytes]:
    if len(wrapped) < 6 or not wrapped.startswith(MAGIC):
        raise KeyNotFound("The data key is not one this key manager wrapped.")
    kind, size = wrapped[4:5], wrapped[5]
    ident, sealed = wrapped[6 : 6 + size], wrapped[6 + size :]
    if kind not in (KEK, SECRET) or len(ident) != size:
        raise KeyNotFound("The data key is not one this key manager wrapped.")
    try:
        return kind, ident.decode("ascii"), sealed
    except UnicodeDecodeError:
        raise KeyNotFound("The data key is not one this key manager wrapped.") from None


def _secret_associated(project_id: str, secret_id: str) -> bytes:
    return f"souverain-kms-key:{project_id}:{secret_id}".encode()


class KeyManagerKeys:
    """The key manager's `ProjectKeys`."""

    def __init__(self, keks: ProjectKeks, secrets: Secrets, consumers: Consumers) -> None:
        self.keks = keks
        self.secrets = secrets
        self.consumers = consumers

    def new_data_key(self, project_id: str, key_id: str | None = None) -> DataKey:
        plaintext = sealing.new_key()
        if key_id is None:
            kek_id, sealed = self.keks.wrap_data_key(project_id, plaintext, PURPOSE)
            return DataKey(plaintext, _pack(KEK, kek_id, sealed))
        secret = self.secrets.own_key(project_id, key_id)
        sealed = sealing.seal(secret, plaintext, _secret_associated(project_id, key_id))
        return DataKey(plaintext, _pack(SECRET, key_id, sealed))

    def open_data_key(self, project_id: str, wrapped: bytes) -> bytes:
        kind, key_id, sealed = _unpack(wrapped)
        try:
            if kind == KEK:
                return self.keks.unwrap_data_key(project_id, key_id, sealed, PURPOSE)
            secret = self.secrets.own_key(project_id, key_id)
            return sealing.open_sealed(secret, sealed, _secret_associated(project_id, key_id))
        except ValueError:  # tampered with, or another project's
            raise KeyNotFound("The data key does not open with this project's keys.") from None

    def create_secret_key(self, project_id: str, user_id: str | None, name: str) -> str:
        return self._store_key(project_id, user_id, name, sealing.new_key())

    def clone_secret_key(
        self, project_id: str, key_id: str, to_project_id: str, user_id: str | None, name: str
    ) -> str:
        key = self.secrets.own_key(project_id, key_id)
        return self._store_key(to_project_id, user_id, name, key)

    def _store_key(self, project_id: str, user_id: str | None, name: str, key: bytes) -> str:
        spec = SecretSpec(
            name=name,
            secret_type=SYMMETRIC,
            algorithm="aes",
            bit_length=len(key) * 8,
            payload=key,
            content_type="application/octet-stream",
        )
        return self.secrets.store(project_id, user_id or "souverain", spec).id

    def secret_key(self, project_id: str, key_id: str) -> bytes:
        return self.secrets.own_key(project_id, key_id)

    def delete_secret_key(self, project_id: str, key_id: str) -> None:
        self.secrets.forget(project_id, key_id)

    def add_consumer(self, project_id: str, key_id: str, consumer: KeyConsumer) -> None:
        self.consumers.register(project_id, key_id, _fields(consumer))

    def remove_consumer(self, project_id: str, key_id: str, consumer: KeyConsumer) -> None:
        self.consumers.unregister(project_id, key_id, _fields(consumer))

    def remove_consumer_everywhere(self, project_id: str, consumer: KeyConsumer) -> None:
        self.consumers.unregister_everywhere(project_id, _fields(consumer))


def _fields(consumer: KeyConsumer) -> dict[str, str]:
    return {
        "service": consumer.service,
        "resource_type": consumer.resource_type,
        "resource_id": consumer.resource_id,
    }
