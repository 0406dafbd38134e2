"""A real Ceph cluster for the tests: Debian's ceph-mon, ceph-mgr and ceph-osd on loopback.

One monitor, one manager and three OSDs, each a child process in its own session with its
own data dir under one temporary directory; no cephadm, no containers, no systemd. The OSDs
keep their data in memory (MemStore, the default: fast and small) or in BlueStore on sparse
files (`objectstore="bluestore"`). cephx is on: the keys are made with `ceph-authtool` and
put into the monitor's keyring before `ceph-mon --mkfs`, so no daemon needs a bootstrap key.
Pools default to size 3 / min_size 2 with CRUSH choosing OSDs (one host holds them all).

`ceph_cluster()` starts one and tears it down (every daemon killed, the directory removed)
even when the start fails; `shared_cluster()` is one per process (an xdist worker), stopped
by the session fixture `ceph_session`. The README's "Trying Ceph on one machine" types the
same steps by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

OSDS = 3
MON_ID = "a"
MGR_ID = "x"
START_TIMEOUT = 90.0  # the target is under a minute; past this the start has failed
DAEMONS = ("ceph-mon", "ceph-mgr", "ceph-osd")
# Manager modules never loaded: each is a Python interpreter of its own, and these take the
# manager from about 300 MiB to 150. The always-on ones (balancer, crash, devicehealth,
# orchestrator, pg_autoscaler, progress, rbd_support, status, telemetry, volumes) stay:
# disabling one fails the cluster's health.
MGR_DISABLED = (
    "alerts diskprediction_local influx insights iostat localpool mirroring nfs osd_perf_query "
    "osd_support prometheus restful selftest snap_schedule stats telegraf test_orchestrator "
    "zabbix"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_binaries() -> None:
    missing = [name for name in (*DAEMONS, "ceph-authtool", "monmaptool") if not shutil.which(name)]
    if missing:
        raise RuntimeError(
            f"Ceph is not installed ({', '.join(missing)} missing): run "
            "./scripts/install-system-packages (Debian's ceph-mon, ceph-mgr, ceph-osd)"
        )


def _config(root: Path, fsid: str, port: int, objectstore: str) -> str:
    """ceph.conf: everything under `root`, small, and healthy with three OSDs on one host."""
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{port}
mon initial members = {MON_ID}
public network = 127.0.0.0/8
ms bind msgr1 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = {root}/run
admin socket = {root}/run/$name.asok
log file = {root}/log/$name.log
crash dir = {root}/crash
mon data = {root}/mon/$name
mgr data = {root}/mgr/$name
osd data = {root}/osd/$name
osd pool default size = 3
osd pool default min size = 2
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = {objectstore}
osd memory target = 939524096
memstore device bytes = 1073741824
bluestore block size = 4294967296
bluestore block create = true
bluestore cache autotune = false
bluestore cache size = 67108864
bluestore fsck on mount = false
osd op num shards = 1
osd op num threads per shard = 2
osd heartbeat grace = 8
osd heartbeat interval = 2
mon allow pool delete = true
mon data avail warn = 1
mon data avail crit = 0
mon warn on pool no redundancy = false
mgr initial modules = status
mgr disabled modules = {MGR_DISABLED}
mgr stats period = 2

[client]
keyring = {root}/keyring
"""


@dataclass
class Daemon:
    name: str  # osd.1, mon.a, mgr.x
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its threads and children go with one killpg
                cwd="/",
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9 (what a crashed daemon looks like), and reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@dataclass
class CephCluster:
    """One cluster in `root`: `start`, `stop`, `make_pool`, `kill_osd`, `restart_osd`."""

    root: Path
    objectstore: str = "memstore"
    fsid: str = field(default_factory=lambda: str(uuid.uuid4()))
    port: int = field(default_factory=_free_port)
    daemons: dict[str, Daemon] = field(default_factory=dict)
    started_in: float = 0.0  # seconds from nothing to a clean test pool

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    @property
    def keyring(self) -> Path:
        """client.admin's keyring."""
        return self.root / "keyring"

    user = "admin"  # rados.Rados(conffile=conf, rados_id=user); QEMU's rbd:pool/img:id=admin
    client = "client.admin"  # the same, by its full name (rados.Rados(name=client))

    def settings(self) -> dict[str, str]:
        """The `[ceph]` settings of a Souverain using this cluster."""
        return {"conf_file": str(self.conf), "user": self.user}

    def env(self) -> dict[str, str]:
        """For the `ceph`, `rados` and `rbd` CLIs: CEPH_CONF points them at this cluster."""
        return {**os.environ, "CEPH_CONF": str(self.conf)}

    # ------------------------------------------------------------------ start and stop

    def start(self, timeout: float = START_TIMEOUT) -> None:
        _require_binaries()
        began = time.monotonic()
        deadline = began + timeout
        self._write_files()
        self._start_mon(deadline)
        self._start_mgr()
        self._start_osds(deadline)
        self.wait_healthy(deadline)
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        """Every daemon killed (their data dies with the directory: no clean shutdown)."""
        for daemon in self.daemons.values():
            daemon.kill()

    def _write_files(self) -> None:
        for sub in ("run", "log", "crash", "mon", "mgr", "osd"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(_config(self.root, self.fsid, self.port, self.objectstore))
        mon_keyring = self.root / "mon.keyring"
        self._authtool(mon_keyring, "mon.", {"mon": "allow *"}, create=True)
        admin_caps = {k: "allow *" for k in ("mon", "osd", "mds", "mgr")}
        self._authtool(self.keyring, "client.admin", admin_caps, create=True)
        self._run("ceph-authtool", str(mon_keyring), "--import-keyring", str(self.keyring))
        keys = {
            f"mgr.{MGR_ID}": {"mon": "allow profile mgr", "osd": "allow *", "mds": "allow *"},
            **{
                f"osd.{n}": {
                    "mon": "allow profile osd",
                    "mgr": "allow profile osd",
                    "osd": "allow *",
                }
                for n in range(OSDS)
            },
        }
        for name, caps in keys.items():
            own = self.root / f"{name}.keyring"
            self._authtool(own, name, caps, create=True)
            self._run("ceph-authtool", str(mon_keyring), "--import-keyring", str(own))

    def _authtool(
        self, keyring: Path, name: str, caps: dict[str, str], *, create: bool = False
    ) -> None:
        args = ["ceph-authtool", str(keyring), "--gen-key", "-n", name]
        if create:
            args.insert(2, "--create-keyring")
        for kind, cap in caps.items():
            args += ["--cap", kind, cap]
        self._run(*args)

    def _start_mon(self, deadline: float) -> None:
        monmap = self.root / "monmap"
        self._run(
            "monmaptool", "--create", "--fsid", self.fsid,
            "--addv", MON_ID, f"[v2:127.0.0.1:{self.port}]", str(monmap),
        )  # fmt: skip
        self._run(
            "ceph-mon", "-c", str(self.conf), "--mkfs", "-i", MON_ID,
            "--monmap", str(monmap), "--keyring", str(self.root / "mon.keyring"),
        )  # fmt: skip
        self._daemon(f"mon.{MON_ID}", "ceph-mon", "-i", MON_ID).start()
        while True:  # the first command answered is the monitor up with its keys
            try:
                self.command("mon", "stat", timeout=5)
                return
            except RuntimeError as error:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ceph-mon did not answer: {error}") from None
                time.sleep(0.3)

    def _start_mgr(self) -> None:
        data = self.root / "mgr" / f"mgr.{MGR_ID}"
        data.mkdir(exist_ok=True)
        shutil.copy(self.root / f"mgr.{MGR_ID}.keyring", data / "keyring")
        self._daemon(f"mgr.{MGR_ID}", "ceph-mgr", "-i", MGR_ID).start()

    def _start_osds(self, deadline: float) -> None:
        for n in range(OSDS):  # registered first: `osd new` gives ids in order
            osd_uuid = str(uuid.uuid4())
            self.command("osd", "new", osd_uuid, str(n))
            data = self.root / "osd" / f"osd.{n}"
            data.mkdir(exist_ok=True)
            shutil.copy(self.root / f"osd.{n}.keyring", data / "keyring")
            self._run(
                "ceph-osd", "-c", str(self.conf), "-i", str(n), "--mkfs",
                "--osd-uuid", osd_uuid, "--keyring", str(data / "keyring"),
            )  # fmt: skip
        for n in range(OSDS):
            self._daemon(f"osd.{n}", "ceph-osd", "-i", str(n)).start()

    def _daemon(self, name: str, program: str, *args: str) -> Daemon:
        daemon = Daemon(
            name,
            [program, "-f", "-c", str(self.conf), *args],
            self.root / "log" / f"{name}.stdout",
        )
        self.daemons[name] = daemon
        return daemon

    def _check_alive(self) -> None:
        dead = [d for d in self.daemons.values() if not d.alive()]
        if dead:
            tails = {
                d.name: _tail(d.log) + _tail(self.root / "log" / f"{d.name}.log") for d in dead
            }
            raise RuntimeError(f"Ceph daemon(s) exited, their last words: {tails}")

    # ------------------------------------------------------------------ commands and health

    def _run(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, env=self.env(), cwd="/"
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:3])} failed ({result.returncode}): {result.stderr}"
            )
        return result.stdout

    def command(self, *words: str, timeout: float = 30) -> Any:
        """`ceph <words> --format json` as client.admin; its parsed answer (None if empty)."""
        out = self._run(
            "ceph", "--connect-timeout", str(int(timeout)), *words, "--format", "json",
            timeout=timeout + 5,
        )  # fmt: skip
        return json.loads(out) if out.strip() else None

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.command("status")
        return status

    def wait_healthy(self, deadline: float, pool: str = "") -> dict[str, Any]:
        """Until the manager is active, every OSD up and in, every PG active+clean (and all
        of `pool`'s PGs there), with HEALTH_OK or only benign warnings; the last status.
        Prints progress while it waits."""
        last = ""
        while True:
            self._check_alive()
            status = self.status()
            osdmap, pgs = status["osdmap"], status["pgmap"]
            clean = sum(
                s["count"] for s in pgs.get("pgs_by_state", []) if s["state_name"] == "active+clean"
            )
            ready = (
                status["mgrmap"]["available"]
                and osdmap["num_up_osds"] == osdmap["num_in_osds"] == OSDS
                and clean == pgs["num_pgs"]
                and not self._blocking(status)
                and (not pool or self.pool_clean(pool))
            )
            if ready:
                return status
            health = status["health"]["status"]
            line = "mgr " + ("active" if status["mgrmap"]["available"] else "starting")
            line += f", {osdmap['num_up_osds']}/{OSDS} OSDs up, {clean}/{pgs['num_pgs']} PGs clean"
            line += f", {health}" + (f", pool {pool} not clean yet" if pool else "")
            if line != last:
                print(f"ceph: {line}", flush=True)
                last = line
            if time.monotonic() > deadline:
                checks = json.dumps(status["health"].get("checks", {}))[:600]
                raise RuntimeError(f"Ceph not healthy in time ({line}): {checks}")
            time.sleep(0.5)

    def pool_clean(self, pool: str) -> bool:
        """Every PG of `pool` reported, and each active+clean."""
        if pool not in self.pools():
            return False
        wanted = self.command("osd", "pool", "get", pool, "pg_num")["pg_num"]
        listed = self.command("pg", "ls-by-pool", pool) or {}
        stats = listed.get("pg_stats", []) if isinstance(listed, dict) else listed
        return len(stats) == wanted and all(s["state"] == "active+clean" for s in stats)

    @staticmethod
    def _blocking(status: dict[str, Any]) -> list[str]:
        """The health checks that matter to a test (not a manager module failing to load)."""
        benign = {"MGR_MODULE_ERROR", "RECENT_CRASH"}
        return [c for c in status["health"].get("checks", {}) if c not in benign]

    def pools(self) -> list[str]:
        return [p["poolname"] for p in self.command("osd", "lspools") or []]

    def make_pool(
        self, name: str, *, erasure: bool = False, pgs: int = 8, application: str = "rados"
    ) -> str:
        """A replicated pool (size 3, min_size 2), or an erasure-coded one (k=2, m=1 over the
        three OSDs; on BlueStore with overwrites on, so RBD data may live there), tagged for
        `application` (rados, rbd, rgw); waits until it is clean."""
        if erasure:
            profile = "k2m1"
            self.command(
                "osd", "erasure-code-profile", "set", profile, "k=2", "m=1",
                "crush-failure-domain=osd", "--force",
            )  # fmt: skip
            self.command("osd", "pool", "create", name, str(pgs), str(pgs), "erasure", profile)
            if self.objectstore == "bluestore":
                self.command("osd", "pool", "set", name, "allow_ec_overwrites", "true")
        else:
            self.command("osd", "pool", "create", name, str(pgs), str(pgs), "replicated")
        self.command("osd", "pool", "application", "enable", name, application)
        self.wait_healthy(time.monotonic() + START_TIMEOUT, pool=name)
        return name

    def kill_osd(self, n: int) -> None:
        """kill -9 one OSD; the monitor marks it down (after the heartbeat grace)."""
        self.daemons[f"osd.{n}"].kill()

    def start_osd(self, n: int) -> None:
        """Start a killed OSD again (on its data dir), without waiting."""
        self.daemons[f"osd.{n}"].start()

    def restart_osd(self, n: int, timeout: float = START_TIMEOUT) -> float:
        """Start a killed OSD again; seconds until the cluster is clean again."""
        began = time.monotonic()
        self.start_osd(n)
        self.wait_healthy(began + timeout)
        return time.monotonic() - began

    def osd_up(self, n: int) -> bool:
        dump = self.command("osd", "dump")
        return any(o["osd"] == n and o["up"] == 1 for o in dump["osds"])

    def memory_kib(self) -> dict[str, int]:
        """Each live daemon's resident memory (VmRSS, KiB)."""
        found = {}
        for name, daemon in self.daemons.items():
            if daemon.alive() and daemon.proc is not None:
                status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
                rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
                found[name] = int(rss.split()[1])
        return found


def _tail(path: Path, lines: int = 6) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def leftover_daemons(root: Path) -> list[int]:
    """The pids of Ceph daemons still running on the cluster in `root` (none once stopped)."""
    found = subprocess.run(
        ["pgrep", "-f", f"^ceph-(mon|mgr|osd) -f -c {root}/"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(pid) for pid in found.stdout.split()]


@contextlib.contextmanager
def ceph_cluster(
    objectstore: str = "memstore", root: Path | None = None, timeout: float = START_TIMEOUT
) -> Iterator[CephCluster]:
    """A started cluster in `root` (a fresh temporary directory by default); its daemons
    killed and the directory removed afterwards, also when the start fails."""
    root = root or Path(tempfile.mkdtemp(prefix="souverain-ceph-"))
    cluster = CephCluster(root, objectstore=objectstore)
    try:
        cluster.start(timeout)
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            left = leftover_daemons(root)
            shutil.rmtree(root, ignore_errors=True)
        if left:
            raise RuntimeError(f"Ceph daemons outlived their test cluster: {left}")


# One cluster per process (an xdist worker), started when a test first asks for Ceph, shared
# by the tests and module fixtures of a module, and stopped when that module ends (below): an
# idle cluster burns a tenth of a core, more over a whole run than a start (5 s) per module.
_clusters = contextlib.ExitStack()
_shared: list[CephCluster] = []


def shared_cluster() -> CephCluster:
    if not _shared:
        _shared.append(_clusters.enter_context(ceph_cluster()))
    return _shared[0]


def stop_shared_cluster() -> None:
    _shared.clear()
    _clusters.close()


@pytest.fixture(scope="session")
def ceph_session() -> Iterator[None]:
    """Stops this process's Ceph cluster (if one still runs) at the end."""
    yield
    stop_shared_cluster()


@pytest.fixture(scope="module", autouse=True)
def ceph_module() -> Iterator[None]:
    """Stops the cluster a module started once the module is done (after its own module
    fixtures, which may still delete their pools: this one is set up before them)."""
    yield
    stop_shared_cluster()


@pytest.fixture
def ceph(ceph_session: None) -> CephCluster:
    """This process's shared MemStore cluster (started on first use)."""
    return shared_cluster()
