"""The ceiling password authentication cannot pass: bcrypt.checkpw per second at one cost.

Run as a script under a python that has bcrypt (the bench uses Souverain's
venv, else Keystone's); prints one JSON line. Each worker is a process, so
the count is not limited by the GIL whatever bcrypt does with it; workers are
capped at the number of cores, as no server can verify more hashes at once.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time


def checks_per_second(hashed: bytes, password: bytes, duration_s: float) -> float:
    import bcrypt

    checks = 0
    start = time.perf_counter()
    deadline = start + duration_s
    while time.perf_counter() < deadline:
        if not bcrypt.checkpw(password, hashed):
            raise AssertionError("checkpw refused the right password")
        checks += 1
    return checks / (time.perf_counter() - start)


def measure(rounds: int, workers: int, duration_s: float) -> dict[str, object]:
    import bcrypt

    password = os.urandom(16).hex().encode()
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        rates = pool.starmap(checks_per_second, [(hashed, password, duration_s)] * workers)
    return {
        "rounds": rounds,
        "workers": workers,
        "checks_per_s": sum(rates),
        "bcrypt_version": getattr(bcrypt, "__version__", "?"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    print(json.dumps(measure(args.rounds, args.workers, args.duration)))


if __name__ == "__main__":
    main()
