"""One run of a bench at a time: the benches keep their state in fixed directories under
bench/.peers/ and start each run by deleting it, so a second run would pull the first's
servers' data from under them (and the two would share the cores anyway).

Not a lock on the machine: other work still runs, and the benches mark what it disturbs.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


def wait_for_turn(lock_path: Path) -> IO[str]:
    """Take the lock at `lock_path`, waiting for the run that holds it to finish.

    Keep the returned file open for the whole run: closing it (or exiting) lets the
    next run go.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        print(f"waiting for another run of this bench to finish (pid {holder}; "
              f"lock {lock_path}) ...", flush=True)  # fmt: skip
        fcntl.flock(handle, fcntl.LOCK_EX)
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
