"""The supervisor of a multi-process `souverain serve`, once the workers are started.

`serve` forks the first workers from a process that holds the whole application,
then replaces itself with this module: it imports nothing of the application, so
the process that only waits costs a few MiB instead of another copy of it. It
passes stop signals on, and replaces a worker that dies with a fresh one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A replacement worker: a new interpreter that loads the application and serves.
WORKER = "import sys; from souverain.serving import worker_main; sys.exit(worker_main(sys.argv[1]))"


def main(state_json: str) -> int:
    state = json.loads(state_json)
    children = {int(pid): int(slot) for pid, slot in state["workers"].items()}
    worker_state = json.dumps({"fds": state["fds"], "settings": state["settings"]})
    stopping = False

    def on_stop(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_stop)
    if state.get("stop"):  # asked to stop while starting
        on_stop(int(state["stop"]), None)

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            try:
                # Held, not lost, until the new worker can honour them (see worker_main).
                signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
                argv = [sys.executable, "-c", WORKER, worker_state]
                os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter, no shell
            finally:
                os._exit(127)
        children[pid] = slot

    failed = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        slot = children.pop(pid, -1)
        if slot < 0:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            failed = failed or code != 0
            continue
        print(
            f"worker {slot} (pid {pid}) exited with {code}; starting a new one",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(0.5)
        if not stopping:  # a stop may have come while we waited
            spawn(slot)
    print("Souverain stopped cleanly." if not failed else "Souverain stopped; a worker failed.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
