"""The seam between the key manager and the services that encrypt at rest (object storage,
volumes): data keys wrapped under a project's key-encryption key, and keys a customer
stored as secrets, read on a project's behalf. It names no service; `server.py` passes the
key manager's implementation to whoever encrypts. Plaintext keys cross it in memory only:
nothing on this side writes one to disk, a log or an error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from souverain.common.errors import BadRequest, ServiceUnavailable

# Cinder's image properties for an image uploaded from an encrypted volume: the key the
# image's LUKS data opens with, and when that key goes (Glance deletes it with the image)
IMAGE_KEY_PROPERTY = "cinder_encryption_key_id"
IMAGE_KEY_DELETION_POLICY = "cinder_encryption_key_deletion_policy"
DELETE_WITH_IMAGE = "on_image_deletion"


class KeyNotFound(BadRequest):
    """The key named does not exist, is not the project's to use, is not a symmetric key
    of a usable length, or has expired. Each API words it its own way (S3's KMS.NotFound,
    Cinder's 400)."""


class KeyUnavailable(ServiceUnavailable):
    """The root of trust (the HSM, the master key file) cannot answer now."""


@dataclass(frozen=True, repr=False)
class DataKey:
    """A fresh 256-bit data key: `plaintext` encrypts, `wrapped` is what is stored beside the
    ciphertext (opaque; it names the key that wrapped it and that key's version)."""

    plaintext: bytes
    wrapped: bytes


@dataclass(frozen=True)
class KeyConsumer:
    """A resource that uses a key-manager secret (Barbican's secret consumer): shown with
    the secret, and a reason its owner's plain delete is refused."""

    service: str  # the service type, e.g. "volume"
    resource_type: str
    resource_id: str


class ProjectKeys(Protocol):
    """What the key manager offers the services that encrypt."""

    def new_data_key(self, project_id: str, key_id: str | None = None) -> DataKey:
        """A data key wrapped under the project's own key-encryption key (`key_id` None: the
        "SSE-S3" case), or under the symmetric secret `key_id` of the key manager that the
        project owns (the "SSE-KMS" case). KeyNotFound if that secret is not usable."""
        ...

    def open_data_key(self, project_id: str, wrapped: bytes) -> bytes:
        """The plaintext of a data key `new_data_key` gave for this project. KeyNotFound when
        the key that wrapped it is gone (a deleted secret) or belongs to another project."""
        ...

    def create_secret_key(self, project_id: str, user_id: str | None, name: str) -> str:
        """A new 256-bit symmetric secret owned by the project (visible to it through the
        key-manager API, as Cinder's volume keys are in Barbican); its id."""
        ...

    def clone_secret_key(
        self, project_id: str, key_id: str, to_project_id: str, user_id: str | None, name: str
    ) -> str:
        """A new secret of `to_project_id` holding the same bytes as the project's symmetric
        secret `key_id` (Cinder's key clone: a backup's key, a restored volume's); its id.
        KeyNotFound when `key_id` is not the project's usable key."""
        ...

    def secret_key(self, project_id: str, key_id: str) -> bytes:
        """The bytes of the project's symmetric secret `key_id` (KeyNotFound otherwise)."""
        ...

    def delete_secret_key(self, project_id: str, key_id: str) -> None:
        """Forget the project's secret `key_id`; already gone is not an error."""
        ...

    def add_consumer(self, project_id: str, key_id: str, consumer: KeyConsumer) -> None:
        """Register `consumer` as using the project's secret `key_id` (once)."""
        ...

    def remove_consumer(self, project_id: str, key_id: str, consumer: KeyConsumer) -> None:
        """Unregister it; not registered, or the secret gone, is not an error."""
        ...

    def remove_consumer_everywhere(self, project_id: str, consumer: KeyConsumer) -> None:
        """Unregister `consumer` from every secret of the project it was registered on (the
        resource is gone, and which keys it used is not known here)."""
        ...


class DataKeyHolder(Protocol):
    """A service that keeps data keys `ProjectKeys.new_data_key` wrapped beside its
    ciphertext (object storage). Before a project key-encryption key is destroyed, the key
    manager asks which wrapped keys are still kept; their heads name what wrapped them."""

    def wrapped_key_heads(self, size: int) -> set[bytes]:
        """The distinct first `size` bytes of every wrapped data key it keeps."""
        ...
