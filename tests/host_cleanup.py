"""What a test's cloud leaves on the host, taken away with it.

Guests and network plumbing outlive `souverain serve` by design (a restarted control
plane finds them again); a test leaves the host as it found it, so every cloud a test
starts goes with its QEMUs, its dnsmasqs, their namespaces, its bridges, taps and
veths and its nftables tables, all found from the cloud's data dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from souverain.server import host_network


def _processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process this one may read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        yield int(entry.name), argv


def qemu_processes(data_dir: Path) -> dict[int, str]:
    """Every QEMU process whose command line names this data dir: pid -> command line."""
    needle = str(data_dir.resolve())
    found = {}
    for pid, argv in _processes():
        cmdline = " ".join(argv)
        if "qemu-system" in cmdline and needle in cmdline:
            found[pid] = cmdline
    return found


def _serve_processes(data_dir: Path) -> list[int]:
    wanted = str(data_dir.resolve())
    found = []
    for pid, argv in _processes():
        if "serve" in argv and "--data-dir" in argv:
            at = argv.index("--data-dir") + 1
            if at < len(argv) and str(Path(argv[at]).resolve()) == wanted:
                found.append(pid)
    return found


def kill_guests(data_dir: Path) -> None:
    """Guests and network plumbing outlive the server by design; a test's cloud takes them
    with it: its QEMUs and any server a failed test restarted and lost, then all it made in
    the kernel and the run dir, by `souverain host decommission`'s own code."""
    for pid in qemu_processes(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in _serve_processes(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if os.geteuid() == 0:  # without root no cloud made anything in the kernel
        host_network(data_dir, make_run_dir=False).decommission()
