#!/usr/bin/env python3
"""Guest disk throughput on an RBD volume beside Ceph's own `rbd bench` on the same pool.

    sudo .venv/bin/python bench/ceph/volume.py [--mib 256] [--conf CEPH_CONF]

Without --conf a private cluster is started (tests/ceph.py: 1 mon, 1 mgr, 3 MemStore OSDs
on loopback, pool size 3) and torn down afterwards. The volume is made by the volume
service's own RBD backend and given to a tiny TCG guest the way Souverain attaches it
(QEMU's rbd driver under a raw node, `cache.direct=false`); the guest runs busybox `dd`
with O_DIRECT and bs=1M (queue depth 1) over `--mib` MiB: a sequential write (fsynced),
then a sequential read. Ceph's bound: `rbd bench --io-type write|read --io-size 1M
--io-pattern seq` over the same amount on an image in the same pool, with 1 thread (the
guest's queue depth) and with 16. Prints MB/s side by side and the guest/rbd ratio. Under
TCG the guest is CPU-bound (every I/O crosses an emulated virtio); the figures say so.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from souverain.common.ceph import CephAccess, CephConnection  # noqa: E402
from souverain.compute.qemu import Disk, GuestSpec, QemuDriver  # noqa: E402
from souverain.volume.rbd_backend import RbdVolumeBackend  # noqa: E402

MB = 1_000_000
TINY = ROOT / "build" / "tiny" / "tiny.qcow2"


def user_data(mib: int) -> bytes:
    """The guest's benchmark: dd write then read of `mib` MiB, timed with /proc/uptime."""
    return f"""#!/bin/sh
(
while [ ! -b /dev/vdc ]; do sleep 0.2; done
t() {{ cut -d ' ' -f 1 /proc/uptime; }}
a=$(t); dd if=/dev/zero of=/dev/vdc bs=1M count={mib} oflag=direct conv=fsync 2>/dev/null
b=$(t); echo "bench write {mib} $a $b"
a=$(t); dd if=/dev/vdc of=/dev/null bs=1M count={mib} iflag=direct 2>/dev/null
b=$(t); echo "bench read {mib} $a $b"
) &
exit 0
""".encode()


@contextlib.contextmanager
def cluster_conf(conf: Path | None) -> Iterator[tuple[Path, str]]:
    if conf is not None:
        yield conf, "admin"
        return
    from tests.ceph import ceph_cluster

    with ceph_cluster() as cluster:
        yield cluster.conf, cluster.user


def guest_rates(store: RbdVolumeBackend, mib: int, work: Path) -> dict[str, float]:
    volume_id = str(uuid.uuid4())
    store.make_blank(volume_id, max(1, -(-mib // 1024)))
    where = store.location(volume_id)
    driver = QemuDriver(work / "compute")
    server = str(uuid.uuid4())
    try:
        base = driver.cache_base_image("tiny", TINY)
        nets: dict[str, list[str]] = {"links": [], "networks": [], "services": []}
        meta = {"uuid": server, "name": "bench", "hostname": "bench"}
        driver.start(
            GuestSpec(
                uuid=server,
                name="rbd bench guest",
                vcpus=1,
                memory_mib=256,
                disk=driver.create_root_disk(server, base, "qcow2", 1),
                config_drive=driver.write_config_drive(server, meta, user_data(mib), nets),
                disks=(Disk(id="vol-bench", format="raw", rbd=where.rbd, ceph=where.ceph),),
            )
        )
        rates: dict[str, float] = {}
        deadline = time.monotonic() + 600
        while len(rates) < 2:
            if time.monotonic() > deadline:
                raise SystemExit(f"the guest did not finish:\n{driver.console_output(server)}")
            for kind, count, a, b in re.findall(
                r"bench (\w+) (\d+) ([\d.]+) ([\d.]+)", driver.console_output(server)
            ):
                rates[kind] = int(count) * 2**20 / MB / max(float(b) - float(a), 0.01)
            time.sleep(0.5)
        return rates
    finally:
        driver.destroy(server)
        store.remove_volume(volume_id)


def rbd_bench(conf: Path, user: str, pool: str, mib: int, threads: int) -> dict[str, float]:
    image = f"bench-{uuid.uuid4().hex[:8]}"
    base = ["rbd", "--conf", str(conf), "--id", user]
    subprocess.run([*base, "create", "--size", f"{max(mib, 1024)}M", f"{pool}/{image}"], check=True)
    rates = {}
    try:
        for kind in ("write", "read"):
            out = subprocess.run(
                [*base, "bench", "--io-type", kind, "--io-size", "1M", "--io-pattern", "seq",
                 "--io-threads", str(threads), "--io-total", f"{mib}M", f"{pool}/{image}"],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            found = re.search(r"bytes/sec:\s*([\d.]+)\s*(\w*)", out)
            if found is None:
                raise SystemExit(f"rbd bench printed no rate:\n{out}")
            scale = {"": 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[found.group(2)]
            rates[kind] = float(found.group(1)) * scale / MB
    finally:
        subprocess.run([*base, "rm", "--no-progress", f"{pool}/{image}"], capture_output=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB written then read")
    parser.add_argument("--conf", type=Path, help="an existing cluster's ceph.conf")
    args = parser.parse_args()
    work = Path(f"/tmp/sv-bench-rbdvol-{uuid.uuid4().hex[:6]}")
    with cluster_conf(args.conf) as (conf, user):
        pool = f"bench-{uuid.uuid4().hex[:6]}"
        store = RbdVolumeBackend(CephConnection(CephAccess(conf=conf, user=user)), pool, work)
        store.setup()
        try:
            guest = guest_rates(store, args.mib, work)
            single = rbd_bench(conf, user, pool, args.mib, 1)
            many = rbd_bench(conf, user, pool, args.mib, 16)
        finally:
            store.connection.close()
            subprocess.run(
                ["ceph", "--conf", str(conf), "osd", "pool", "rm", pool, pool,
                 "--yes-i-really-really-mean-it"], capture_output=True,
            )  # fmt: skip
            subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"\nRBD volume, {args.mib} MiB sequential, 1 MiB I/O (MB/s)")
    print(f"{'':8}{'guest dd':>12}{'rbd bench t=1':>16}{'ratio':>8}{'rbd bench t=16':>17}")
    for kind in ("write", "read"):
        ratio = guest[kind] / single[kind]
        print(f"{kind:8}{guest[kind]:12.1f}{single[kind]:16.1f}{ratio:8.2f}{many[kind]:17.1f}")
    print("target ratio >= 0.85 (guest dd vs rbd bench at the same queue depth, 1)")


if __name__ == "__main__":
    main()
