"""What a test's cloud leaves on the host, taken away with it.

Guests and network plumbing outlive `souverain serve` by design (a restarted control
plane finds them again); a test leaves the host as it found it, so every cloud a test
starts goes with its QEMUs, its dnsmasqs, their namespaces, its bridges, taps and
veths and its nftables tables, all found from the cloud's data dir.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from souverain.server import _dataplane_prefix


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
    with it: its QEMUs, its dnsmasqs, their namespaces and its bridges, taps and veths."""
    for pid in qemu_processes(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in _serve_processes(data_dir):  # a server a failed test restarted and lost
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()
    run_dir = f"/run/souverain-net/{digest[:8]}/"
    prefix = _dataplane_prefix(digest)
    prefixes = {prefix}
    for pid, argv in _processes():
        if not argv[0].endswith("dnsmasq"):
            continue
        for arg in argv:
            match = re.search(re.escape(run_dir) + r"([a-z0-9]{1,4})dhcp/([0-9a-f-]+)/", arg)
            if match:
                prefixes.add(match[1])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                subprocess.run(
                    ["ip", "netns", "delete", f"{match[1]}dhcp-{match[2]}"],
                    capture_output=True,
                    check=False,
                )
                break
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in spaces.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith((f"{prefix}dhcp-", f"{prefix}r-")):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False)
    for line in links.stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if any(re.fullmatch(p + r"[btdqg][0-9a-f]+", name) for p in prefixes):
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    for line in tables.stdout.splitlines():
        words = line.split()  # "table <family> <name>"
        if len(words) == 3 and words[2].startswith(f"souverain-{prefix}"):
            subprocess.run(["nft", "delete", "table", words[1], words[2]], check=False)
