"""What a test run must leave as it found it: Souverain's nftables tables, links and
namespaces, and the processes the run started (dnsmasq, QEMU, `souverain serve` and
agents, PostgreSQL, HAProxy, Ceph's daemons). `snapshot` reads the host; `left_behind`
compares the state after the run with the state before and names what stayed.

A shared developer machine runs other people's clouds and test runs at the same time,
so a process counts only if this run started it: it carries RUN_ENV with this run's id in
its environment (every child of the run inherits it, through servers down to dnsmasq
and QEMU) or names this run's temporary base directory on its command line. A kernel
object counts only if no live process of someone else's cloud uses its prefix. On CI,
where nothing else runs, that is exactly the before/after difference.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

RUN_ENV = "SVTEST_RUN_ID"  # not SOUVERAIN_*: test helpers strip those from servers' env

# `<prefix><kind letter><hex>`, exactly 15 characters (network/dataplane.py, routing.py):
# b bridge, t tap, d DHCP veth, q router interface veth, g router gateway veth. The prefix
# is read greedily: every cloud `souverain serve` runs (and every test lab) has 4 letters.
LINK_RE = re.compile(r"^(?P<prefix>[a-z][a-z0-9]{0,3})[btdqg][0-9a-f]+$")
LINK_LENGTH = 15
# `<prefix>dhcp-<network id>` (DHCP), `<prefix>r-<router id>` (routers)
NAMESPACE_RE = re.compile(r"^(?P<prefix>[a-z][a-z0-9]{0,3})(?:dhcp|r)-[0-9a-f-]+$")
# `souverain-<prefix>` and `souverain-<prefix>-public-<network id>` (firewall.py, routing.py)
TABLE_RE = re.compile(r" souverain-(?P<prefix>[a-z][a-z0-9]*)(?:-|$)")
# a DHCP dir `<run dir>/<prefix>dhcp/...` (dnsmasq), a tap `ifname=<prefix>t<hex>` (QEMU)
ARGV_PREFIX_RE = re.compile(
    r"/(?P<prefix>[a-z][a-z0-9]{0,3})dhcp/|ifname=(?P<tap>[a-z][a-z0-9]{0,3})t[0-9a-f]{6,}"
)
AUDIT_LOG = "audit.log"  # what a running cloud holds open in its data dir
WATCHED_PROGRAMS = ("dnsmasq", "haproxy", "postgres", "qemu-system-", "ceph-")
DECOMMISSION_HINT = (
    "remove a cloud's leftovers with `souverain host decommission --data-dir <its data dir>` "
    "(as root), and stop the processes named"
)


@dataclass(frozen=True)
class Process:
    pid: int
    started: int  # clock ticks after boot: a pid reused later is another process
    argv: tuple[str, ...]
    ours: bool  # started by this run

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.started)

    def describe(self) -> str:
        return f"{self.pid} {' '.join(self.argv)[:160]}"


@dataclass
class HostState:
    tables: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)
    processes: dict[tuple[int, int], Process] = field(default_factory=dict)


def is_watched(argv: tuple[str, ...]) -> bool:
    """A program a cloud or its tests start and that may outlive them."""
    if not argv:
        return False
    program = os.path.basename(argv[0])
    if any(program.startswith(name) for name in WATCHED_PROGRAMS):
        return True
    words = [os.path.basename(word) for word in argv[:4]]
    return "souverain" in words and any(w in ("serve", "agent", "host-agent") for w in argv)


def link_prefix(name: str) -> str | None:
    """The cloud prefix of a link Souverain names, or None for any other link."""
    if len(name) != LINK_LENGTH:
        return None
    match = LINK_RE.match(name)
    return match.group("prefix") if match else None


def table_prefix(line: str) -> str | None:
    match = TABLE_RE.search(line)
    return match.group("prefix") if match else None


def namespace_prefix(name: str) -> str | None:
    match = NAMESPACE_RE.match(name)
    return match.group("prefix") if match else None


def left_behind(
    before: HostState,
    after: HostState,
    foreign_prefixes: Iterable[str] = (),
) -> list[str]:
    """What the run left, one line per kind; empty when the host is as it was found.

    `foreign_prefixes`: prefixes of clouds this run did not start that are alive now (a
    link or namespace of theirs is theirs to clean)."""
    foreign = set(foreign_prefixes)  # and a cloud present before may grow during the run
    foreign.update(table_prefix(name) or "" for name in before.tables)
    foreign.update(link_prefix(name) or "" for name in before.links)
    foreign.update(namespace_prefix(name) or "" for name in before.namespaces)
    foreign.discard("")
    found = {
        "nftables tables": sorted(
            n for n in after.tables - before.tables if _not_foreign(table_prefix(n), foreign)
        ),
        "links": sorted(
            n for n in after.links - before.links if _not_foreign(link_prefix(n), foreign)
        ),
        "namespaces": sorted(
            n
            for n in after.namespaces - before.namespaces
            if _not_foreign(namespace_prefix(n), foreign)
        ),
        "processes": [
            p.describe()
            for key, p in sorted(after.processes.items())
            if p.ours and key not in before.processes
        ],
    }
    return [f"{len(items)} {kind}: {items[:6]}" for kind, items in found.items() if items]


def _not_foreign(prefix: str | None, foreign: set[str]) -> bool:
    return prefix is None or prefix not in foreign


def report(left: list[str]) -> str:
    return "the tests left the host changed: " + "; ".join(left) + f". {DECOMMISSION_HINT}"


# ------------------------------------------------------------------------ reading the host


def snapshot(run_id: str, temp_roots: Iterable[Path]) -> HostState:
    """The host now (as root: other users' processes and the kernel's tables)."""
    roots = [str(root) for root in temp_roots]
    return HostState(
        tables=souverain_tables(),
        links={n for n in _listdir("/sys/class/net") if link_prefix(n) is not None},
        namespaces={n for n in _listdir("/run/netns") if namespace_prefix(n) is not None},
        processes={
            p.key: p for p in processes(lambda argv, env: _is_ours(argv, env, run_id, roots))
        },
    )


def souverain_tables() -> set[str]:
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return {line for line in listed.stdout.splitlines() if " souverain-" in line}


def processes(ours: Callable[[tuple[str, ...], bytes], bool]) -> list[Process]:
    """The watched processes alive now, each judged ours or not by `ours(argv, environ)`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = tuple((entry / "cmdline").read_bytes().decode(errors="replace").split("\0"))
            argv = argv[:-1] if argv and argv[-1] == "" else argv
            if not is_watched(argv):
                continue
            started = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[19])
            environ = (entry / "environ").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not readable
        found.append(Process(int(entry.name), started, argv, ours(argv, environ)))
    return found


def _is_ours(argv: tuple[str, ...], environ: bytes, run_id: str, roots: list[str]) -> bool:
    if f"{RUN_ENV}={run_id}".encode() in environ.split(b"\0"):
        return True
    # "<root>/": pytest-54 must not claim what pytest-545 started
    return any(word == root or f"{root}/" in word for word in argv for root in roots)


def foreign_prefixes(
    run_id: str, roots: Iterable[Path], prefix_of: Callable[[Path], str]
) -> set[str]:
    """The prefixes of clouds and test labs someone else runs now: read from each process
    that is not this run's (its command line, and the audit log an open cloud holds)."""
    found: set[str] = set()
    roots_ = [str(root) for root in roots]
    for entry in Path("/proc").iterdir():
        # this process is ours though its /proc environ predates the run id it set
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = tuple((entry / "cmdline").read_bytes().decode(errors="replace").split("\0"))
            if _is_ours(argv, (entry / "environ").read_bytes(), run_id, roots_):
                continue
            open_files = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue  # gone meanwhile
        found |= prefixes_used(argv, open_files, prefix_of)
    return found


def prefixes_used(
    argv: tuple[str, ...], open_files: Iterable[str], prefix_of: Callable[[Path], str]
) -> set[str]:
    """The cloud prefixes one process shows: its `--data-dir`, the data dir of an audit log
    it holds open (a cloud running in a test process), a DHCP dir or tap on its command line
    (dnsmasq, QEMU of a lab without a data dir)."""
    data_dirs = {Path(f).parent for f in open_files if f.endswith(f"/{AUDIT_LOG}")}
    if "--data-dir" in argv[:-1]:
        data_dirs.add(Path(argv[argv.index("--data-dir") + 1]))
    found = {prefix_of(d) for d in data_dirs}
    for word in argv:
        found.update(m.group("prefix") or m.group("tap") for m in ARGV_PREFIX_RE.finditer(word))
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
