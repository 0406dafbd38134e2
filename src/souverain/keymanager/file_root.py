"""The embedded root of trust: root keys in a master key file (0600) under the data dir.
Not an HSM: whoever reads the file (or a backup of it) can open every project key, which
is why every start logs a warning saying so. It never logs or returns a root key.

The file is JSON: `{"current": "v2", "keys": {"v1": "<base64>", "v2": "<base64>"}}`.
It is created at first start (written aside, fsynced, hard-linked into place, so two
processes starting together agree) and replaced atomically on rotation and retirement. A
running server re-reads it when it changes, so `souverain kms rotate` in another process
needs no restart."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from pathlib import Path

from souverain.common.keys import KeyUnavailable
from souverain.keymanager import sealing

log = logging.getLogger("souverain.keymanager")

WARNING = (
    "key manager: the root of trust is a master key file (%s), not an HSM: anyone who "
    "reads it or a backup of it can decrypt every secret; set keymanager.root = 'pkcs11' "
    "in production"
)


def _associated(version: str) -> bytes:
    return b"souverain-root:" + version.encode()


class FileRoot:
    """`RootOfTrust` over a master key file."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._current = ""
        self._keys: dict[str, bytes] = {}
        self._create_once()
        self._reload(force=True)
        log.warning(WARNING, path)

    def _create_once(self) -> None:
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        self._write_file(tmp, "v1", {"v1": sealing.new_key()})
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            pass  # another process made it first: use its key
        finally:
            tmp.unlink()

    @staticmethod
    def _write_file(path: Path, current: str, keys: dict[str, bytes]) -> None:
        document = {
            "current": current,
            "keys": {v: base64.b64encode(k).decode() for v, k in keys.items()},
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(document))
            handle.flush()
            os.fsync(handle.fileno())

    def _replace(self, current: str, keys: dict[str, bytes]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        self._write_file(tmp, current, keys)
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        """Read the file again if it changed since the last read (another process rotated)."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino)
            if not force and stamp == self._stamp:
                return
            document = json.loads(self.path.read_text())
            keys = {v: base64.b64decode(k) for v, k in document["keys"].items()}
            current = str(document["current"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyUnavailable(
                f"The master key file cannot be read ({type(exc).__name__})."
            ) from None
        if current not in keys or any(len(k) != sealing.KEY_BYTES for k in keys.values()):
            raise KeyUnavailable("The master key file is damaged.")
        self._stamp, self._current, self._keys = stamp, current, keys

    def current_version(self) -> str:
        with self._lock:
            self._reload()
            return self._current

    def versions(self) -> list[str]:
        with self._lock:
            self._reload()
            return sorted(self._keys, key=lambda v: int(v[1:]))

    def wrap(self, key: bytes) -> tuple[str, bytes]:
        with self._lock:
            self._reload()
            version = self._current
            return version, sealing.seal(self._keys[version], key, _associated(version))

    def unwrap(self, version: str, wrapped: bytes) -> bytes:
        with self._lock:
            self._reload()
            root = self._keys.get(version)
        if root is None:
            raise KeyUnavailable(f"Root key version {version[:16]} is not in the key file.")
        return sealing.open_sealed(root, wrapped, _associated(version))

    def rotate(self) -> str:
        with self._lock:
            self._reload(force=True)
            number = max(int(v[1:]) for v in self._keys) + 1
            version = f"v{number}"
            self._replace(version, {**self._keys, version: sealing.new_key()})
            return version

    def retire(self, version: str) -> None:
        with self._lock:
            self._reload(force=True)
            if version == self._current:
                raise ValueError("the current root key cannot be retired")
            if version in self._keys:
                keys = {v: k for v, k in self._keys.items() if v != version}
                self._replace(self._current, keys)

    def close(self) -> None:
        return None
