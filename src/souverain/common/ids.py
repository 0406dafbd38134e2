"""The one id generator: 32 lowercase hex characters, as Keystone and most of OpenStack use."""

from __future__ import annotations

import os
import secrets
import threading
import uuid


class _RandomPool:
    """Bytes from the OS generator, fetched 4 KiB at a time instead of per id.

    For identifiers that must be unique and unguessable (request ids, audit ids),
    not for keys or nonces, which take `os.urandom` directly. The pool is emptied
    in a forked child, so two workers never hand out the same bytes.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._offset + n > len(self._buffer):
                self._buffer = os.urandom(max(self._size, n))
                self._offset = 0
            chunk = self._buffer[self._offset : self._offset + n]
            self._offset += n
            return chunk

    def reset(self) -> None:
        self._buffer = b""
        self._offset = 0


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.reset)


def random_bytes(n: int) -> bytes:
    """Unpredictable bytes for identifiers (not for keys or nonces)."""
    return _POOL.take(n)


def new_id() -> str:
    return uuid.uuid4().hex


def new_request_id() -> str:
    return f"req-{uuid.UUID(bytes=random_bytes(16), version=4)}"


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret for passwords, application credentials and keys.

    Never starting with `-`: command-line tools would read such a secret, passed
    as `--os-application-credential-secret -x...`, as an option of their own.
    """
    while True:
        secret = secrets.token_urlsafe(nbytes)
        if not secret.startswith("-"):
            return secret
