"""Ceph's own S3 gateway (`radosgw`, Debian's package) on loopback beside a test cluster
(tests/ceph.py): the reference bench/ceph/s3.py measures Souverain against.

It runs as client.admin (the cluster's keyring, no extra cephx key), with the Beast
frontend on one free port, and makes its own pools (`.rgw.root`, `default.rgw.*`) on first
start with the cluster's defaults (size 3). An S3 user is made with `radosgw-admin user
create`. `radosgw_gateway()` starts one and afterwards stops it (kill -9 of its process
group) and deletes the pools it made.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.ceph import CephCluster, _free_port

START_TIMEOUT = 90.0  # it creates its pools and waits for them to be clean


@dataclass
class Radosgw:
    port: int
    access_key: str
    secret_key: str
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def _require() -> None:
    missing = [name for name in ("radosgw", "radosgw-admin") if not shutil.which(name)]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not installed: apt-get install -y radosgw "
            "(listed in scripts/system-packages.txt)"
        )


def start_radosgw(cluster: CephCluster, timeout: float = START_TIMEOUT) -> Radosgw:
    """radosgw on a free loopback port of `cluster`, answering, with one S3 user."""
    _require()
    port = _free_port()
    root = cluster.root / "rgw"
    (root / "data").mkdir(parents=True, exist_ok=True)
    log = cluster.root / "log" / "radosgw.stdout"
    argv = [
        "radosgw", "-f", "-c", str(cluster.conf), "-n", cluster.client,
        "--rgw-frontends", f"beast endpoint=127.0.0.1:{port} tcp_nodelay=1",
        "--rgw-data", str(root / "data"),
        "--log-file", str(cluster.root / "log" / "radosgw.log"),
        "--rgw-enable-usage-log=false", "--rgw-enable-ops-log=false",
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd="/", env=cluster.env(),
        )  # fmt: skip
    gateway = Radosgw(port, "", "", log, proc)
    try:
        _wait_answering(gateway, time.monotonic() + timeout)
        gateway.access_key, gateway.secret_key = _make_user(cluster)
    except BaseException:
        gateway.stop()
        raise
    return gateway


def _wait_answering(gateway: Radosgw, deadline: float) -> None:
    while True:
        if gateway.proc.poll() is not None:
            tail = gateway.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"radosgw exited {gateway.proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(gateway.url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers, in S3's words
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("radosgw did not answer in time") from None
            time.sleep(0.3)


def _make_user(cluster: CephCluster) -> tuple[str, str]:
    access, secret = secrets.token_hex(10).upper(), secrets.token_urlsafe(30)
    subprocess.run(
        ["radosgw-admin", "-n", cluster.client, "user", "create", "--uid", "bench",
         "--display-name", "bench", "--access-key", access, "--secret-key", secret],
        env=cluster.env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return access, secret


@contextlib.contextmanager
def radosgw_gateway(cluster: CephCluster) -> Iterator[Radosgw]:
    """A started gateway; afterwards it is stopped and the pools it made are deleted (the
    cluster may be a worker's shared one)."""
    before = set(cluster.pools())
    gateway = start_radosgw(cluster)
    try:
        yield gateway
    finally:
        gateway.stop()
        for pool in set(cluster.pools()) - before:
            cluster.command("osd", "pool", "delete", pool, pool, "--yes-i-really-really-mean-it")
