"""AES-256-GCM sealing with associated data: what every layer of the envelope uses (root
key over KEKs, KEK over data keys, data key over a payload). It holds no key and logs
nothing; a failed open is a ValueError that names no byte of what it opened."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32


def new_key() -> bytes:
    """A fresh 256-bit key from the operating system's generator."""
    return os.urandom(KEY_BYTES)


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """nonce || ciphertext || tag of `plaintext` under `key`, bound to `associated`."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """What `seal` sealed; ValueError if it, or its associated data, was changed."""
    if len(sealed) < NONCE_BYTES + 16:
        raise ValueError("sealed value too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except InvalidTag:
        raise ValueError("sealed value failed authentication") from None
