#!/usr/bin/env python3
"""Ceph boot bench: N servers booted at once from one image, root disks as RBD clones
(`compute.disk_backend = "rbd"`, images on RBD) beside local qcow2 overlays (the default).

Each side is a fresh in-process platform (the composition root `souverain serve` runs, with
the tiny image registered), driven over its HTTP API. After a warm-up boot (it fills the
base-image cache on the file side, the image's raw parent on the RBD side), N servers are
POSTed together from threads; each is timed from its POST to `status: ACTIVE` (GET every
50 ms) and to the guest's console markers `souverain-guest: booted` and `... ready` (its
console log read every 20 ms). Then Ceph's own tool beside ours: N root disks made with
`rbd clone` + `rbd resize` (the CLI, one process each) against the same N made by the
driver through librbd. Prints median and max per side and the ratios. The Ceph cluster is
a private one (1 mon, 1 mgr, 3 MemStore OSDs on loopback) started and stopped here.

    bench/ceph/boot.py [--servers 10] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_PY = REPO / ".venv" / "bin" / "python"
if Path(sys.prefix).resolve() != (REPO / ".venv").resolve() and VENV_PY.exists():
    os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from souverain import server  # noqa: E402
from souverain.compute.core import SYSTEM  # noqa: E402
from souverain.config import load_settings  # noqa: E402
from tests.api.support import ADMIN_PASSWORD, Cloud, TestClient  # noqa: E402
from tests.ceph import CephCluster, ceph_cluster  # noqa: E402
from tests.host_cleanup import kill_guests  # noqa: E402
from tests.vm.guest_support import build_tiny_image  # noqa: E402

BOOTED = "souverain-guest: booted"
READY = "souverain-guest: ready"
BOOT_TIMEOUT_S = 600.0


@dataclass
class Boot:
    active: float = 0.0
    booted: float = 0.0
    ready: float = 0.0


def settings_for(data_dir: Path, cluster: CephCluster | None) -> Any:
    overrides: dict[str, Any] = {
        "data_dir": str(data_dir),
        "identity": {"bcrypt_rounds": 4},
        "audit": {"fsync": False},
        "network": {"dataplane": False},
        "image": {"tiny_image": str(build_tiny_image())},
    }
    if cluster is not None:
        overrides["ceph"] = {"conf_file": str(cluster.conf)}
        overrides["image"].update({"backend": "rbd", "rbd_pool": "bench-images"})
        overrides["compute"] = {"disk_backend": "rbd", "rbd_pool": "bench-disks"}
    return load_settings(environ={}, overrides=overrides)


class Side:
    """One platform (file or rbd) and an admin talking to it over HTTP."""

    def __init__(self, label: str, root: Path, cluster: CephCluster | None) -> None:
        self.label = label
        self.data_dir = root / label
        os.environ["SOUVERAIN_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        self.platform = server.prepare(settings_for(self.data_dir, cluster))
        self.client = TestClient(self.platform.app, base_url="http://bench")
        self.client.__enter__()
        self.cloud = Cloud(self.client, self.platform)
        self.headers = {"X-Auth-Token": self.cloud.admin_token}
        found = self.client.get("/image/v2/images?name=tiny", headers=self.headers).json()
        self.image_id = found["images"][0]["id"]

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.platform.close()
        kill_guests(self.data_dir)

    def create(self, name: str) -> str:
        body = {"name": name, "imageRef": self.image_id, "flavorRef": "1", "networks": "none"}
        made = self.client.post(
            "/compute/v2.1/servers", json={"server": body}, headers=self.headers
        )
        if made.status_code != 202:
            raise RuntimeError(f"{self.label}: create failed: {made.text}")
        return str(made.json()["server"]["id"])

    def status(self, server_id: str) -> str:
        got = self.client.get(f"/compute/v2.1/servers/{server_id}", headers=self.headers)
        return str(got.json()["server"]["status"])

    def console(self, server_id: str) -> str:
        path = self.platform.compute.driver.instance_dir(server_id) / "console.log"
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def boot(self, name: str, start: threading.Barrier, out: list[Boot]) -> None:
        start.wait()
        began = time.monotonic()
        server_id = self.create(name)
        boot = Boot()
        deadline = began + BOOT_TIMEOUT_S
        while not boot.active:
            status = self.status(server_id)
            if status == "ERROR":
                raise RuntimeError(f"{self.label}: server {name} went to ERROR")
            if status == "ACTIVE":
                boot.active = time.monotonic() - began
            elif time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: {name} never ACTIVE")
            else:
                time.sleep(0.05)
        while not boot.ready:
            text = self.console(server_id)
            now = time.monotonic() - began
            if BOOTED in text and not boot.booted:
                boot.booted = now
            if READY in text:
                boot.ready = now
            elif time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: {name} never ready")
            else:
                time.sleep(0.02)
        out.append(boot)

    def round(self, count: int, label: str) -> list[Boot]:
        start = threading.Barrier(count)
        boots: list[Boot] = []
        threads = [
            threading.Thread(target=self.boot, args=(f"{label}-{n}", start, boots))
            for n in range(count)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if len(boots) != count:
            raise RuntimeError(f"{self.label}: {count - len(boots)} boot(s) failed")
        self.delete_all()
        return boots

    def delete_all(self) -> None:
        listed = self.client.get("/compute/v2.1/servers", headers=self.headers).json()
        ids = [s["id"] for s in listed["servers"]]
        for server_id in ids:
            self.client.delete(f"/compute/v2.1/servers/{server_id}", headers=self.headers)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = self.client.get("/compute/v2.1/servers", headers=self.headers).json()
            if not left["servers"]:
                return
            time.sleep(0.2)


def clones_beside_the_cli(side: Side, cluster: CephCluster, count: int) -> tuple[float, float]:
    """Seconds to make `count` 1 GiB root disks: the driver (librbd) and `rbd clone` +
    `rbd resize` (Ceph's CLI, one process per command as an operator types them), from the
    same parent."""
    driver = side.platform.compute.driver
    image = side.platform.image.image_for_boot(SYSTEM, side.image_id)
    assert image.rbd is not None and driver.rbd_disks is not None
    ids = [str(uuid.uuid4()) for _ in range(count)]
    began = time.monotonic()
    for server_id in ids:
        driver.make_root_disk(server_id, (image.id, image.path, image.disk_format), 1, image.rbd)
    ours = time.monotonic() - began
    for server_id in ids:
        driver.delete_files(server_id)
    parent = f"{image.rbd.pool}/{image.rbd.image}@{image.rbd.snapshot}"
    names = [f"bench-disks/cli-{n}" for n in range(count)]
    began = time.monotonic()
    for name in names:
        subprocess.run(["rbd", "clone", parent, name], env=cluster.env(), check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run(["rbd", "resize", "--size", "1G", name], env=cluster.env(), check=True,
                       capture_output=True)  # fmt: skip
    cli = time.monotonic() - began
    for name in names:
        subprocess.run(["rbd", "rm", name], env=cluster.env(), check=True, capture_output=True)
    return ours, cli


def summary(boots: list[Boot], key: str) -> tuple[float, float]:
    values = [getattr(b, key) for b in boots]
    return statistics.median(values), max(values)


def report(count: int, file: list[Boot], rbd: list[Boot], clones: tuple[float, float]) -> None:
    print(f"\n{count} servers at once from one image (t1.nano, TCG), seconds from POST:")
    print(f"{'':16} {'qcow2 overlay':>22} {'RBD clone':>22} {'ratio rbd/file':>16}")
    for key in ("active", "booted", "ready"):
        (fm, fx), (rm, rx) = summary(file, key), summary(rbd, key)
        print(
            f"{'to ' + key:16} {f'{fm:.2f} (max {fx:.2f})':>22} {f'{rm:.2f} (max {rx:.2f})':>22}"
            f" {rm / fm:>16.2f}"
        )
    ours, cli = clones
    print(
        f"\n{count} root disks (clone + grow to 1 GiB): Souverain via librbd {ours:.2f} s, "
        f"rbd clone + rbd resize (Ceph's CLI) {cli:.2f} s, ratio {ours / cli:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the data dirs")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sv-bench-ceph-boot-"))
    try:
        with ceph_cluster() as cluster:
            print(f"ceph cluster up in {cluster.started_in:.1f} s", flush=True)
            results = {}
            for label, ceph in (("file", None), ("rbd", cluster)):
                side = Side(label, root, ceph)
                try:
                    side.round(1, "warm")
                    results[label] = side.round(args.servers, "bench")
                    print(f"{label}: done", flush=True)
                    if ceph is not None:
                        clones = clones_beside_the_cli(side, cluster, args.servers)
                finally:
                    side.close()
            report(args.servers, results["file"], results["rbd"], clones)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
