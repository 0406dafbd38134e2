"""A log handler for the access log: lines go out in batches, not one write per request.

A batch is written when it holds 64 KiB, when a line arrives a quarter second
after the last write, when `flush()` is called (the server does once a second)
and at shutdown. Errors do not use it: they go out at once.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self, stream: TextIO, max_bytes: int = 65536, max_delay: float = 0.25) -> None:
        super().__init__(stream)
        self.max_bytes = max_bytes
        self.max_delay = max_delay
        self._lines: list[str] = []
        self._size = 0
        self._last = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._add(line)

    def write_line(self, line: str) -> None:
        """The fast way in for a line already formatted: no log record is built."""
        if self.lock is None:
            self._add(line)
            return
        with self.lock:
            self._add(line)

    def _add(self, line: str) -> None:
        self._lines.append(line + "\n")
        self._size += len(line) + 1
        if self._size >= self.max_bytes or time.monotonic() - self._last >= self.max_delay:
            self._write()

    def _write(self) -> None:
        if self._lines:
            self.stream.write("".join(self._lines))
            self._lines.clear()
            self._size = 0
        self.stream.flush()
        self._last = time.monotonic()

    def flush(self) -> None:
        with self.lock if self.lock is not None else _NoLock():
            self._write()


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None
