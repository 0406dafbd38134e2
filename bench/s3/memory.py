"""Peak memory of each server's process tree, sampled over the whole run.

RSS: every 0.2 s, the resident memory of all processes in a target's process
groups is summed; the peak of that sum is the target's figure. Pages shared
between a parent and its forked workers count once per process, as `ps`
shows them, so for a pre-fork server it is an upper bound. PSS (shared pages
split between the processes sharing them) is summed the same way once a
second: reading it costs the kernel more, and it moves more slowly.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from target import Target

_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _group_pids(groups: set[int]) -> dict[int, list[tuple[int, int]]]:
    """pgid -> [(pid, rss KiB)] for the processes of the given groups."""
    found: dict[int, list[tuple[int, int]]] = {group: [] for group in groups}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        group = int(fields[2])
        if group in found:
            found[group].append((int(entry.name), int(fields[21]) * _PAGE_KIB))
    return found


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakMemory:
    """A thread that samples until stopped; `peak_rss_mib[name]`, `peak_pss_mib[name]`."""

    def __init__(self, interval_s: float = 0.2, pss_every: int = 5) -> None:
        self.interval_s = interval_s
        self.pss_every = pss_every
        self.targets: list[Target] = []
        self.peak_rss_mib: dict[str, float] = {}
        self.peak_pss_mib: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="peak-memory", daemon=True)
        self._lock = threading.Lock()

    def watch(self, target: Target) -> None:
        with self._lock:
            self.targets.append(target)
        self.sample(with_pss=True)
        if not self._thread.is_alive():
            self._thread.start()

    def sample(self, with_pss: bool) -> None:
        with self._lock:
            targets = list(self.targets)
        groups = {
            target.name: {s.process.pid for s in target.servers if s.process is not None}
            for target in targets
        }
        found = _group_pids(set().union(*groups.values()) if groups else set())
        for name, pgids in groups.items():
            processes = [p for g in pgids for p in found.get(g, [])]
            rss = sum(kib for _, kib in processes) / 1024
            self.peak_rss_mib[name] = max(self.peak_rss_mib.get(name, 0.0), rss)
            if with_pss:
                pss = sum(_pss_kib(pid) for pid, _ in processes) / 1024
                self.peak_pss_mib[name] = max(self.peak_pss_mib.get(name, 0.0), pss)

    def _loop(self) -> None:
        n = 0
        while not self._stop.wait(self.interval_s):
            n += 1
            self.sample(with_pss=n % self.pss_every == 0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
