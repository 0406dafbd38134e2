"""Compute rules without guests: Nova's status table, host names, and capacity claims."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from souverain.compute import scheduler
from souverain.compute.service import _hostname_of, status_of
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from tests.server_rows import server_row


@pytest.mark.parametrize(
    ("vm_state", "task_state", "status"),
    [
        ("active", None, "ACTIVE"),
        ("building", "scheduling", "BUILD"),
        ("stopped", None, "SHUTOFF"),
        ("active", "reboot_started", "REBOOT"),
        ("active", "reboot_started_hard", "HARD_REBOOT"),
        ("stopped", "reboot_started_hard", "HARD_REBOOT"),
        ("active", "rebuilding", "REBUILD"),
        ("error", "rebuilding", "REBUILD"),
        ("error", "deleting", "ERROR"),
        ("active", "resize_prep", "RESIZE"),
        ("resized", None, "VERIFY_RESIZE"),
        ("resized", "resize_reverting", "REVERT_RESIZE"),
        ("paused", None, "PAUSED"),
        ("suspended", None, "SUSPENDED"),
        ("deleted", None, "DELETED"),
        ("active", "powering-off", "ACTIVE"),
    ],
)
def test_status_is_novas(vm_state: str, task_state: str | None, status: str) -> None:
    assert status_of(vm_state, task_state) == status


@pytest.mark.parametrize(
    ("name", "hostname"),
    [
        ("Web Server 01", "web-server-01"),
        ("../../etc", "etc"),
        ("é", "server"),
        ("a" * 100, "a" * 63),
        ("x  y", "x-y"),
    ],
)
def test_hostnames_are_dns_labels(name: str, hostname: str) -> None:
    assert _hostname_of(name) == hostname


def test_concurrent_claims_never_overbook(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    db = Database(engine)
    capacity = scheduler.Capacity("h1", 100, 1000, 100, 1, 1000, 100)
    ids = [f"s{i:02d}" for i in range(30)]
    with db.session() as s:
        for server_id in ids:
            s.add(server_row(server_id, memory=128))
    placed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(ids))

    def claim(server_id: str) -> None:
        barrier.wait()
        with db.session() as s:
            ok = scheduler.claim(s, capacity, server_id, 1, 128, 1)
        if ok:
            with lock:
                placed.append(server_id)

    threads = [threading.Thread(target=claim, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(placed) == 1000 // 128
    with db.session() as s:
        used = scheduler.usage(s, "h1")
        assert used.memory_mib == len(placed) * 128 <= capacity.memory_mib
        assert used.servers == len(placed)
        # a resize claim replaces the server's own share rather than adding to it
        assert scheduler.claim(s, capacity, placed[0], 1, 128 + (1000 - used.memory_mib), 1)
        assert not scheduler.claim(s, capacity, placed[1], 1, 256, 1)
        scheduler.release(s, placed[0])
    with db.session() as s:
        assert scheduler.usage(s, "h1").servers == len(placed) - 1
    engine.dispose()


def test_concurrent_builds_cache_one_base_image_without_tripping(tmp_path: Path) -> None:
    from souverain.compute.qemu import QemuDriver

    source = tmp_path / "image"
    source.write_bytes(b"qcow2-ish" * 1000)
    for attempt in range(20):
        driver = QemuDriver(tmp_path / f"root{attempt}")
        barrier = threading.Barrier(8)
        results: list[Path] = []
        errors: list[BaseException] = []

        def cache(
            d: QemuDriver = driver,
            b: threading.Barrier = barrier,
            out: list[Path] = results,
            err: list[BaseException] = errors,
        ) -> None:
            b.wait()
            try:
                out.append(d.cache_base_image("img-1", source))
            except BaseException as exc:
                err.append(exc)

        threads = [threading.Thread(target=cache) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(set(results)) == 1
        assert results[0].read_bytes() == source.read_bytes()
        assert sorted(p.name for p in results[0].parent.iterdir()) == ["img-1"]
