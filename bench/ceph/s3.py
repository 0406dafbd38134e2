#!/usr/bin/env python3
"""Ceph S3 bench: Souverain's S3 on RADOS beside Ceph's own S3 gateway (radosgw), both on
one private cluster (tests/ceph.py: 1 mon, 1 mgr, 3 OSDs, pools of size 3).

Cells, each against both servers with the same clients (bench/s3's): 4 KiB PUT and GET at
c=1 and c=8 (wrk, presigned URLs, ops/s) and one large object PUT and GET whole (curl,
MB/s). Souverain runs twice: with its defaults (objects up to 64 KiB live in the database)
and with every object in RADOS (`inline_max_bytes = 0`), so the small-object figures say
what RADOS itself costs. Prints the figures and the ratio Souverain/radosgw; starts and
tears down everything itself. Run with the project's venv (it imports tests/ceph.py):

    .venv/bin/python bench/ceph/s3.py [--large-mib 1024] [--duration 5] [--objectstore bluestore]

BlueStore by default: a 1 GiB object is 3 GiB of replicas, which MemStore's 1 GiB per OSD
cannot hold.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(REPO), str(HERE.parent / "s3"), str(HERE.parent / "identity")]

import large  # noqa: E402
import load  # noqa: E402
import s3_requests  # noqa: E402
import souverain_s3  # noqa: E402
from processes import Server  # noqa: E402
from sigv4 import Credentials  # noqa: E402
from target import Target  # noqa: E402

from tests.ceph import CephCluster, ceph_cluster  # noqa: E402
from tests.radosgw import Radosgw, radosgw_gateway  # noqa: E402

SMALL = 4096
KEYS = 1000
REGION = "fr-1"  # Souverain's default region
RGW_REGION = "us-east-1"  # what radosgw's default zonegroup answers to
RADOSGW = "radosgw"
SOUVERAIN = "Souverain"
SOUVERAIN_RADOS = "Souverain, all in RADOS"


@dataclass
class Cell:
    value: float
    unit: str
    note: str = ""


def _souverain_bin() -> Path:
    for candidate in (
        REPO / ".venv" / "bin" / "souverain",
        Path(sys.executable).parent / "souverain",
    ):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("no souverain binary: run `make install` first")


@contextmanager
def souverain(cluster: CephCluster, state: Path, pool: str, inline: bool) -> Iterator[Target]:
    """`souverain serve` with objectstore.backend = rados on `pool` of `cluster`."""
    settings = {
        "SOUVERAIN_CEPH__CONF_FILE": str(cluster.conf),
        "SOUVERAIN_CEPH__USER": cluster.user,
        "SOUVERAIN_OBJECTSTORE__BACKEND": "rados",
        "SOUVERAIN_OBJECTSTORE__RADOS_POOL": pool,
        "SOUVERAIN_AUDIT__FSYNC": "false",
    }
    if not inline:
        settings["SOUVERAIN_OBJECTSTORE__INLINE_MAX_BYTES"] = "0"
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        target = souverain_s3.start(_souverain_bin(), state, os.cpu_count() or 1, REGION)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield target
    finally:
        for server in target.servers:
            server.stop()


def radosgw_target(gateway: Radosgw) -> Target:
    """The gateway as bench/s3 sees a server (its process is watched for CPU, not stopped)."""
    watched = Server(RADOSGW, ["radosgw"], gateway.log)
    watched.process = gateway.proc  # type: ignore[assignment]
    return Target(
        RADOSGW,
        f"127.0.0.1:{gateway.port}",
        [watched],
        Credentials(gateway.access_key, gateway.secret_key, RGW_REGION),
        setup="radosgw (Beast frontend, client.admin)",
    )


def fill(target: Target, keys: list[str]) -> None:
    """PUT every key once (8 at a time), so the GET cells find them all."""
    signer = target.presigner()
    body = os.urandom(SMALL)

    def put(chunk: list[str]) -> None:
        connection = s3_requests.connect(target)
        for key in chunk:
            reply = s3_requests.send(connection, "PUT", signer.url_path("PUT", key), body)
            if reply.status != 200:
                raise RuntimeError(f"{target.name}: PUT {key} -> {reply.describe()}")
        connection.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, [keys[n::8] for n in range(8)]))


def small_cells(target: Target, cells: Path, duration: float) -> dict[str, Cell]:
    """4 KiB PUT then GET, c=1 and c=8, over one pool of keys, each after a warm-up."""
    bucket = "small"
    s3_requests.create_bucket(target, bucket)
    signer = target.presigner()
    keys = [f"/{bucket}/k{n:05d}" for n in range(KEYS)]
    fill(target, keys)  # the first write also makes what the server makes lazily
    found: dict[str, Cell] = {}
    label = "".join(c if c.isalnum() else "-" for c in target.name.lower())
    for operation in ("PUT", "GET"):
        paths = load.write_paths(
            cells / f"{label}-{operation}.txt", [signer.url_path(operation, key) for key in keys]
        )
        body = SMALL if operation == "PUT" else 0
        for concurrency in (1, 8):
            load.run_cell(target.host, operation, paths, body, concurrency, 1, sys.executable)
            target.wait_idle()
            result = load.run_cell(
                target.host, operation, paths, body, concurrency, duration, sys.executable
            )
            note = result.problems() if result.failed else ""
            found[f"{operation} 4 KiB c={concurrency}"] = Cell(result.requests_per_s, "ops/s", note)
            print(f"  {target.name}: {operation} 4 KiB c={concurrency}: "
                  f"{result.requests_per_s:.0f} ops/s {note}", flush=True)  # fmt: skip
    return found


def large_cells(target: Target, source: Path, rounds: int) -> dict[str, Cell]:
    """One object of the file's size, PUT and GET whole `rounds` times; the best MB/s."""
    bucket = "large"
    s3_requests.create_bucket(target, bucket)
    signer = target.presigner()
    size = source.stat().st_size
    put_s, get_s = [], []
    for n in range(rounds):
        key = f"/{bucket}/object-{n}"
        host = f"http://{target.host}"
        put_s.append(large.put(host + signer.url_path("PUT", key), source)[0])
        get_s.append(large.get(host + signer.url_path("GET", key), size))
        delete = s3_requests.connect(target)
        s3_requests.send(delete, "DELETE", signer.url_path("DELETE", key))
        delete.close()
    mib = size >> 20
    found = {
        f"PUT {mib} MiB": Cell(size / min(put_s) / 1e6, "MB/s"),
        f"GET {mib} MiB": Cell(size / min(get_s) / 1e6, "MB/s"),
    }
    for row, cell in found.items():
        print(f"  {target.name}: {row}: {cell.value:.0f} MB/s", flush=True)
    return found


def report(results: dict[str, dict[str, Cell]]) -> str:
    rows = list(results[RADOSGW])
    names = [SOUVERAIN, SOUVERAIN_RADOS, RADOSGW]
    head = f"{'':<18}" + "".join(f"{n:>26}" for n in names) + f"{'ratio':>9}{'ratio (RADOS)':>15}"
    lines = [head]
    for row in rows:
        line = f"{row:<18}"
        for name in names:
            cell = results.get(name, {}).get(row)
            line += f"{cell.value:>20.0f} {cell.unit:<5}" if cell else f"{'-':>26}"
        reference = results[RADOSGW][row].value
        for name in (SOUVERAIN, SOUVERAIN_RADOS):
            cell = results.get(name, {}).get(row)
            width = 9 if name == SOUVERAIN else 15
            line += (
                f"{cell.value / reference:>{width}.2f}" if cell and reference else f"{'-':>{width}}"
            )
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large-mib", type=int, default=1024, help="the large object's size")
    parser.add_argument("--rounds", type=int, default=2, help="large PUT/GET rounds (best)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per small cell")
    parser.add_argument("--objectstore", default="bluestore", choices=("bluestore", "memstore"))
    args = parser.parse_args()
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="souverain-bench-ceph-s3-"))
    results: dict[str, dict[str, Cell]] = {}
    try:
        source = work / "large.bin"
        large.ensure_file(source, args.large_mib << 20)
        with ExitStack() as stack:
            cluster = stack.enter_context(ceph_cluster(objectstore=args.objectstore))
            print(f"cluster up in {cluster.started_in:.0f} s ({args.objectstore}, 3 OSDs, size 3)")
            gateway = stack.enter_context(radosgw_gateway(cluster))
            runs: list[tuple[str, Callable[[], Target]]] = [
                (RADOSGW, lambda: radosgw_target(gateway)),
                (SOUVERAIN, lambda: stack.enter_context(
                    souverain(cluster, work / "souverain", "souverain-objects", True))),
                (SOUVERAIN_RADOS, lambda: stack.enter_context(
                    souverain(cluster, work / "souverain-rados", "souverain-objects-all", False))),
            ]  # fmt: skip
            for name, make in runs:
                target = make()
                target.name = name
                print(f"{name}:", flush=True)
                results[name] = small_cells(target, work, args.duration)
                if name != SOUVERAIN_RADOS:  # large objects go to RADOS in both set-ups
                    results[name].update(large_cells(target, source, args.rounds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(report(results))
    print(f"\nratio = Souverain / radosgw (targets: >= 1.0 small, >= 0.9 large); "
          f"{time.monotonic() - began:.0f} s in all")  # fmt: skip


if __name__ == "__main__":
    main()
