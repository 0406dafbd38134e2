"""Guests move between two hosts' QEMU drivers: live with their local disk, and cold.

Two drivers on two data dirs play the two hosts (each its own run dir, so its own QEMU
processes and sockets); the streams go over 127.0.0.1. The tiny guest's user data counts
every second, and each count reads the previous one back from its root disk (page cache
dropped first) and writes the new one: a counter that continues on the destination with
each count's predecessor read from the destination's disk proves memory and disk moved
together, and the console log says how long the guest stood still.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from souverain.compute.qemu import DriverError, GuestSpec, Nic, PowerState, QemuDriver
from souverain.compute.qemu_host import alive
from souverain.compute.qemu_migration import (
    MIRROR_TARGET,
    Endpoint,
    IncomingMigration,
    Progress,
    abort_incoming,
    cold_migrate,
    confirm_migration,
    live_migrate,
    prepare_incoming,
    rollback_source,
    root_disk_backing,
    send_guest,
    spec_on,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/qemu-system-x86_64").exists(),
    reason="needs root and qemu-system-x86_64 (scripts/install-system-packages)",
)

USER_DATA = b"""#!/bin/sh
d=/mnt/root-disk
if [ -f $d/marker.txt ]; then echo "user-data: found $(cat $d/marker.txt)"; fi
[ -f $d/marker.txt ] || echo "written on the first host" > $d/marker.txt
sync
( n=$(cat $d/counter 2>/dev/null || echo 0); while true; do
    sync; echo 3 > /proc/sys/vm/drop_caches
    prev=$(cat $d/counter 2>/dev/null)
    n=$((n+1)); echo "<2>tick $n prev=$prev marker=$(cat $d/marker.txt)" > /dev/kmsg
    echo $n > $d/counter; sync; sleep 1
done ) &
( b=0; while true; do b=$((b+1)); echo "<2>beat $b" > /dev/kmsg; sleep 1; done ) &
exit 0
"""
TICK_RE = re.compile(r"tick (\d+) prev=(\d*) marker=(.*?)\r?$", re.MULTILINE)
NETWORK_DATA = {"links": [], "networks": [], "services": []}
MARKER = "written on the first host"


def wait_until(check: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            said = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out after {timeout} s waiting for {said}")
        time.sleep(0.1)


def ticks(text: str) -> list[tuple[int, str, str]]:
    return [(int(n), prev, marker) for n, prev, marker in TICK_RE.findall(text)]


def last_tick(driver: QemuDriver, server: str) -> int:
    found = ticks(driver.console_output(server))
    return found[-1][0] if found else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def endpoints() -> tuple[Endpoint, Endpoint]:
    return Endpoint("127.0.0.1", free_port()), Endpoint("127.0.0.1", free_port())


@dataclass
class Hosts:
    a: QemuDriver
    b: QemuDriver
    base_a: Path
    base_b: Path


@pytest.fixture(scope="module")
def hosts(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    """Two hosts' drivers, each with the tiny image in its cache; every guest and file of
    both removed after."""
    a = QemuDriver(tmp_path_factory.mktemp("host-a") / "compute")
    b = QemuDriver(tmp_path_factory.mktemp("host-b") / "compute")
    try:
        yield Hosts(a, b, a.cache_base_image("tiny", image), b.cache_base_image("tiny", image))
    finally:
        for driver in (a, b):
            for server in driver.running():
                driver.destroy(server)
            shutil.rmtree(driver.run_dir, ignore_errors=True)


def new_guest(driver: QemuDriver, base: Path, nics: tuple[Nic, ...] | None = None) -> GuestSpec:
    server = str(uuid.uuid4())
    disk = driver.create_root_disk(server, base, "qcow2", 1)
    meta = {"uuid": server, "name": "migrant", "hostname": "migrant"}
    drive = driver.write_config_drive(server, meta, USER_DATA, NETWORK_DATA)
    return GuestSpec(
        uuid=server,
        name="migrant",
        vcpus=1,
        memory_mib=128,
        disk=disk,
        config_drive=drive,
        nics=(Nic(mac="fa:16:3e:00:00:17", id="nic-migrant"),) if nics is None else nics,
    )


def nothing_of(driver: QemuDriver, server: str) -> None:
    assert server not in driver.running()
    assert not driver.instance_dir(server).exists()
    assert not (driver.run_dir / f"{server}.qmp").exists()
    assert not (driver.run_dir / f"{server}.serial").exists()


@pytest.fixture(scope="module")
def running(hosts: Hosts) -> GuestSpec:
    """A guest counting on host A, shared in file order: the failed migrations leave it
    there, the live migration moves it to B."""
    spec = new_guest(hosts.a, hosts.base_a)
    hosts.a.start(spec)
    wait_until(lambda: last_tick(hosts.a, spec.uuid) >= 2, 90, "the guest's first ticks")
    return spec


def still_counting_on(driver: QemuDriver, spec: GuestSpec, pid: int) -> None:
    """The guest runs on under the same QEMU, with no migration job or NBD node left."""
    assert driver.pid(spec.uuid) == pid
    assert driver.power_state(spec.uuid) is PowerState.RUNNING
    before = last_tick(driver, spec.uuid)
    wait_until(lambda: last_tick(driver, spec.uuid) >= before + 2, 20, "ticks on the source")
    nodes = driver._qmp(spec.uuid, "query-named-block-nodes")
    assert MIRROR_TARGET not in {node["node-name"] for node in nodes}
    assert driver._qmp(spec.uuid, "query-jobs") == []


def test_a_refused_disk_port_leaves_the_guest_running_on_the_source(
    hosts: Hosts, running: GuestSpec
) -> None:
    pid = hosts.a.pid(running.uuid)
    assert pid is not None
    size, fmt = root_disk_backing(hosts.a, running)
    nbd, stream = endpoints()
    assert running.config_drive is not None
    incoming = prepare_incoming(
        hosts.b, running, base=hosts.base_b, base_format=fmt, disk_size=size,
        config_drive=running.config_drive.read_bytes(), slots={}, nbd=nbd, stream=stream,
    )  # fmt: skip
    assert hosts.b.pid(running.uuid) is not None
    refused = IncomingMigration(incoming.spec, Endpoint("127.0.0.1", free_port()), stream)
    with pytest.raises(DriverError, match=r"(?i)refused|connect"):
        send_guest(hosts.a, running.uuid, refused, timeout=30)
    abort_incoming(hosts.b, running.uuid)
    nothing_of(hosts.b, running.uuid)
    still_counting_on(hosts.a, running, pid)


def test_a_destination_port_in_use_leaves_nothing_there(hosts: Hosts, running: GuestSpec) -> None:
    pid = hosts.a.pid(running.uuid)
    assert pid is not None
    nbd, stream = endpoints()
    with socket.socket() as taken:
        taken.bind((stream.host, stream.port))
        taken.listen()
        with pytest.raises(DriverError, match="migrate-incoming"):
            live_migrate(hosts.a, hosts.b, running, dest_base=hosts.base_b, nbd=nbd, stream=stream)
    nothing_of(hosts.b, running.uuid)
    still_counting_on(hosts.a, running, pid)


BEAT_RE = re.compile(r"beat (\d+)")


def last_beat(driver: QemuDriver, server: str) -> int:
    found = BEAT_RE.findall(driver.console_output(server))
    return int(found[-1]) if found else 0


@dataclass
class Watch:
    """When each new count of the guest first showed on either host's console: "beat"
    (the guest's clock alone) and "tick" (a count that also reads and writes the disk)."""

    seen: dict[str, list[tuple[float, int]]] = field(
        default_factory=lambda: {"beat": [], "tick": []}
    )
    stop: threading.Event = field(default_factory=threading.Event)
    ended: float = 0.0

    def run(self, hosts: Hosts, server: str) -> None:
        while not self.stop.is_set():
            for word, last in (("beat", last_beat), ("tick", last_tick)):
                latest = max(self._last(last, hosts.a, server), self._last(last, hosts.b, server))
                series = self.seen[word]
                if not series or latest > series[-1][1]:
                    series.append((time.monotonic(), latest))
            time.sleep(0.05)
        self.ended = time.monotonic()

    @staticmethod
    def _last(last: Callable[[QemuDriver, str], int], driver: QemuDriver, server: str) -> int:
        try:
            return last(driver, server)
        except OSError:
            return 0

    def longest_gap(self, word: str) -> float:
        """The longest wait for the next count, the wait after the last one included."""
        times = [when for when, _ in self.seen[word]] + [self.ended]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def test_live_migration_moves_a_counting_guest_with_its_disk(
    hosts: Hosts, running: GuestSpec
) -> None:
    pid = hosts.a.pid(running.uuid)
    assert pid is not None
    watch = Watch()
    watcher = threading.Thread(target=watch.run, args=(hosts, running.uuid), daemon=True)
    watcher.start()
    reports: list[Progress] = []
    nbd, stream = endpoints()
    started = time.monotonic()
    try:
        moved = live_migrate(
            hosts.a, hosts.b, running, dest_base=hosts.base_b, nbd=nbd, stream=stream,
            timeout=90, progress=reports.append,
        )  # fmt: skip
        took = time.monotonic() - started
        at_arrival = last_tick(hosts.b, running.uuid)
        wait_until(
            lambda: last_tick(hosts.b, running.uuid) >= at_arrival + 3,
            30,
            lambda: f"ticks on host B: {state_of(hosts.b, running.uuid)}",
        )
    finally:
        watch.stop.set()
        watcher.join()
    assert moved == spec_on(hosts.b, running)
    assert hosts.b.power_state(running.uuid) is PowerState.RUNNING
    # the source: its QEMU gone, its files and sockets gone
    assert not alive(pid)
    nothing_of(hosts.a, running.uuid)
    # one count after another, each reading its predecessor from the disk it runs on now
    counted = ticks(hosts.b.console_output(running.uuid))
    numbers = [n for n, _, _ in counted]
    console = hosts.b.console_output(running.uuid)
    assert numbers == list(range(1, numbers[-1] + 1)), console[-3000:]
    assert all(prev == str(n - 1) for n, prev, _ in counted if n > 1), counted
    assert {marker for _, _, marker in counted} == {MARKER}
    # the guest stood still for at most a few seconds of wall clock, by its clock alone
    # (beat) and waiting on its disk (tick): a count every 1-2 s under TCG on a busy host;
    # the move itself adds well under a second
    assert watch.longest_gap("beat") < 6.0, watch.seen
    assert watch.longest_gap("tick") < 6.0, watch.seen
    assert {report.phase for report in reports} == {"disk", "memory"}
    assert reports[-1].phase == "memory" and reports[-1].status == "completed"
    assert reports[-1].done_bytes > 0
    print(
        f"live migration took {took:.1f} s, longest pause {watch.longest_gap('beat'):.1f} s, "
        f"longest disk pause {watch.longest_gap('tick'):.1f} s"
    )


def test_a_destination_that_fails_to_take_over_gives_the_guest_back_to_the_source(
    hosts: Hosts, running: GuestSpec
) -> None:
    """The memory and disk went over, then the destination failed: the source's QEMU, done
    and stopped, takes its disks back and runs on from where it stopped. (The guest now
    runs on B, moved there by the test above; A plays the destination.)"""
    on_b = spec_on(hosts.b, running)
    pid = hosts.b.pid(running.uuid)
    assert pid is not None
    size, fmt = root_disk_backing(hosts.b, on_b)
    nbd, stream = endpoints()
    assert on_b.config_drive is not None
    incoming = prepare_incoming(
        hosts.a, on_b, base=hosts.base_a, base_format=fmt, disk_size=size,
        config_drive=on_b.config_drive.read_bytes(), slots={}, nbd=nbd, stream=stream,
    )  # fmt: skip
    send_guest(hosts.b, running.uuid, incoming, timeout=60)
    assert hosts.b._status(running.uuid) == "postmigrate"
    abort_incoming(hosts.a, running.uuid)
    rollback_source(hosts.b, running.uuid, was_running=True)
    nothing_of(hosts.a, running.uuid)
    still_counting_on(hosts.b, on_b, pid)
    counted = ticks(hosts.b.console_output(running.uuid))
    assert all(prev == str(n - 1) for n, prev, _ in counted if n > 1), counted


def test_cold_migration_boots_the_stopped_guest_with_its_disk(hosts: Hosts) -> None:
    spec = new_guest(hosts.b, hosts.base_b)
    hosts.b.start(spec)
    wait_until(lambda: last_tick(hosts.b, spec.uuid) >= 2, 90, "the guest's first ticks")
    with pytest.raises(DriverError, match="running; stop it first"):
        cold_migrate(hosts.b, hosts.a, spec, dest_base=hosts.base_a)
    assert hosts.b.shutdown(spec.uuid, timeout=60)
    counted_before = last_tick(hosts.b, spec.uuid)
    moved = cold_migrate(hosts.b, hosts.a, spec, dest_base=hosts.base_a)
    assert moved.disk.parent == hosts.a.instance_dir(spec.uuid)
    backing = hosts.a._img_info(moved.disk, "qcow2")["backing-filename"]
    assert backing == str(hosts.base_a.resolve())
    wait_until(
        lambda: f"user-data: found {MARKER}" in hosts.a.console_output(spec.uuid),
        90,
        "the marker written on host B read on host A",
    )
    wait_until(
        lambda: last_tick(hosts.a, spec.uuid) > counted_before, 30, "the count going on on A"
    )
    # the source keeps its files until the move is confirmed
    assert hosts.b.instance_dir(spec.uuid).exists()
    confirm_migration(hosts.b, spec.uuid)
    nothing_of(hosts.b, spec.uuid)
    assert hosts.a.power_state(spec.uuid) is PowerState.RUNNING


@pytest.fixture
def taps() -> Iterator[tuple[str, str]]:
    """A tap on each "host" (one machine: two names), removed after."""
    stem = f"mgt{secrets.token_hex(3)}"
    names = (f"{stem}a", f"{stem}b")
    try:
        for name in names:
            subprocess.run(["ip", "tuntap", "add", "dev", name, "mode", "tap"], check=True)
            subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)


ETH_P_ALL = 0x0003
ETH_P_RARP = 0x8035


def frames_from(sniffer: socket.socket, mac: str, seconds: float) -> set[int]:
    """The ethertypes of the frames `mac` sent within `seconds`."""
    wanted = bytes.fromhex(mac.replace(":", ""))
    found: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and ETH_P_RARP not in found:
        try:
            frame = sniffer.recv(2048)
        except TimeoutError:
            continue
        if frame[6:12] == wanted:
            found.add(struct.unpack("!H", frame[12:14])[0])
    return found


def test_the_network_follows_the_guest_to_the_destination_tap(
    hosts: Hosts, taps: tuple[str, str]
) -> None:
    """After the move the destination's tap carries the guest's announcement (RARP from
    its MAC): what bridges and VXLAN forwarding tables learn the new place from."""
    mac = "fa:16:3e:00:00:42"
    on_a = (Nic(mac=mac, kind="tap", ifname=taps[0], id="nic-tap"),)
    on_b = (Nic(mac=mac, kind="tap", ifname=taps[1], id="nic-tap"),)
    spec = new_guest(hosts.a, hosts.base_a, nics=on_a)
    hosts.a.start(spec)
    try:
        with pytest.raises(DriverError, match="MACs and ids"):
            spec_on(hosts.b, spec, (Nic(mac="fa:16:3e:00:00:43", kind="tap", ifname=taps[1]),))
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sniff:
            sniff.bind((taps[1], 0))
            sniff.settimeout(0.5)
            nbd, stream = endpoints()
            moved = live_migrate(
                hosts.a, hosts.b, spec, dest_base=hosts.base_b, nbd=nbd, stream=stream,
                timeout=90, dest_nics=on_b,
            )  # fmt: skip
            assert ETH_P_RARP in frames_from(sniff, mac, 10.0)
        assert moved.nics == on_b
        assert hosts.b.power_state(spec.uuid) is PowerState.RUNNING
        nothing_of(hosts.a, spec.uuid)
    finally:
        hosts.a.destroy(spec.uuid)
        hosts.a.delete_files(spec.uuid)
        hosts.b.destroy(spec.uuid)
        hosts.b.delete_files(spec.uuid)


def state_of(driver: QemuDriver, server: str) -> str:
    """What a stalled guest's QEMU says: run state, disk counters, the console's tail."""
    status = driver._qmp(server, "query-status")
    stats = driver._qmp(server, "human-monitor-command", **{"command-line": "info blockstats"})
    return f"{status}\n{stats}\n{driver.console_output(server, 30)}"
