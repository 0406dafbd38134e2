"""The root of trust: what wraps the project key-encryption keys. One protocol, two
implementations: a PKCS#11 token (an HSM; SoftHSM2 in tests) and, as the embedded default,
a master key file. Nothing above this module sees a root key's bytes; an HSM's never leave it."""

from __future__ import annotations

from typing import Protocol


class RootOfTrust(Protocol):
    """Wraps and unwraps 32-byte keys under the current (or a named older) root key."""

    name: str  # "file" or "pkcs11": shown by `souverain kms status` and the start-up log

    def current_version(self) -> str:
        """The version new wraps use (a short id, stored beside each wrapped key)."""
        ...

    def wrap(self, key: bytes) -> tuple[str, bytes]:
        """(version, wrapped) of `key` under the current root key; AES-GCM or AES key wrap,
        authenticated, so a tampered wrap fails to open."""
        ...

    def unwrap(self, version: str, wrapped: bytes) -> bytes:
        """The key `wrap` wrapped under root key `version`. KeyUnavailable if that version
        is gone or the token cannot answer; ValueError if `wrapped` was tampered with."""
        ...

    def versions(self) -> list[str]:
        """Every root key version it still holds, oldest first (the current one last)."""
        ...

    def rotate(self) -> str:
        """Make a new root key current and return its version; older ones stay able to
        unwrap until `retire` (rotation without downtime: rewrap, then retire)."""
        ...

    def retire(self, version: str) -> None:
        """Destroy an older root key once nothing is wrapped under it any more."""
        ...

    def close(self) -> None: ...
