"""Long volume work off the request: backups and restores.

Cinder answers a backup or a restore at once (202) and does the copying in its backup
service; the rows' statuses (`creating`, `restoring`, `restoring-backup`) tell the rest.
Here a small pool of threads in the same process does it. A stop waits for the jobs
running; a process killed mid-job leaves its rows to `Backups.recover` at the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

# two copies at once per process: they are disk- and zlib-bound, and requests go on
WORKERS = 2


class Jobs:
    def __init__(self, workers: int = WORKERS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="volume-job")

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except Exception:  # the job records its own failure on its rows; this is a bug
                log.exception("volume job %s failed", getattr(fn, "__name__", fn))

        self._pool.submit(run)

    def close(self) -> None:
        """Let running jobs finish (their rows end in a final status)."""
        self._pool.shutdown(wait=True)
