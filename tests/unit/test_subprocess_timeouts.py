"""Every helper that runs qemu-img kills a hung one at its timeout and says so, so the
resource it was making goes to error instead of staying in a transitional state."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from souverain.compute.qemu_guest import DriverError
from souverain.compute.qemu_monitor import QemuMonitor
from souverain.image import store
from souverain.volume.backend import BackendError, VolumeBackend

HUNG_FOR = 60  # seconds the fake qemu-img would sleep; every test must end long before


@pytest.fixture
def hung_qemu_img(tmp_path: Path) -> Path:
    """A `qemu-img` that never answers: it becomes `sleep`, so killing it kills the sleep."""
    tool = tmp_path / "bin" / "qemu-img"
    tool.parent.mkdir()
    tool.write_text(f"#!/bin/sh\nexec sleep {HUNG_FOR}\n")
    tool.chmod(0o755)
    return tool


def test_compute_qemu_img_is_killed_at_its_timeout(hung_qemu_img: Path, tmp_path: Path) -> None:
    monitor = QemuMonitor(tmp_path / "compute", qemu_img=str(hung_qemu_img))
    started = time.monotonic()
    with pytest.raises(DriverError, match=r"qemu-img info took longer than 0.5 s"):
        monitor._qemu_img("info", "disk.qcow2", timeout=0.5)
    assert time.monotonic() - started < 10


def test_volume_qemu_img_is_killed_at_its_timeout(hung_qemu_img: Path, tmp_path: Path) -> None:
    backend = VolumeBackend(tmp_path / "volumes", qemu_img=str(hung_qemu_img))
    backend.setup()
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"qemu-img resize took longer than"):
        backend._run(["resize", "-q", "x.qcow2", "1G"], 0.5)
    assert time.monotonic() - started < 10


def test_image_inspection_is_killed_at_its_timeout(
    hung_qemu_img: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{hung_qemu_img.parent}:/usr/bin:/bin")
    monkeypatch.setattr(store, "QEMU_IMG_TIMEOUT", 0.5)
    data = tmp_path / "upload"
    data.write_bytes(b"\0" * 512)
    started = time.monotonic()
    with pytest.raises(store.InvalidImage, match="took too long"):
        store.qemu_img_info(data)
    assert time.monotonic() - started < 10
