"""A change counter shared by every API process on this host, read without a syscall.

Eight bytes in a file under the data dir, mapped into memory. A writer bumps
it under a file lock after committing a change; a reader compares it with the
value it last saw before trusting its caches. Hosts that share only the
database follow the database's own counter instead (polled once a second).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

_FORMAT = "<Q"
_SIZE = struct.calcsize(_FORMAT)


class ChangeCounter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < _SIZE:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if os.fstat(self._fd).st_size < _SIZE:
                    os.ftruncate(self._fd, _SIZE)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._map = mmap.mmap(self._fd, _SIZE)

    def value(self) -> int:
        result: int = struct.unpack_from(_FORMAT, self._map, 0)[0]
        return result

    def bump(self) -> int:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            new = self.value() + 1
            struct.pack_into(_FORMAT, self._map, 0, new)
            return new
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
