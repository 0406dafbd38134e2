"""The volume backend against the real qemu-img: thin files, copies, resize, failures."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from souverain.volume import backend as backend_module
from souverain.volume.backend import GIB, BackendError, VolumeBackend


@pytest.fixture
def backend(tmp_path: Path) -> VolumeBackend:
    made = VolumeBackend(tmp_path / "volumes")
    made.setup()
    return made


def new_id() -> str:
    return str(uuid.uuid4())


def test_blank_volume_is_thin_and_private(backend: VolumeBackend) -> None:
    path = backend.volume_path(new_id())
    backend.create_blank(path, 100)
    assert backend.virtual_size(path) == 100 * GIB
    assert path.stat().st_blocks * 512 < 2 * 1024 * 1024
    assert path.stat().st_mode & 0o077 == 0
    assert list(backend.tmp.iterdir()) == []


def same_data(raw: Path, volume: Path) -> bool:
    """`qemu-img compare`: equal contents, the larger image's extra space being zeros."""
    result = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(raw), str(volume)],
        capture_output=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


def test_copy_is_independent_and_grows_to_the_size(backend: VolumeBackend, tmp_path: Path) -> None:
    raw = tmp_path / "data.raw"
    raw.write_bytes(b"pattern!" * 4096)
    target = backend.volume_path(new_id())
    backend.copy(raw, "raw", target, 2)
    assert backend.virtual_size(target) == 2 * GIB
    assert same_data(raw, target)
    raw.write_bytes(b"changed!" * 4096)  # the copy does not follow its source
    assert not same_data(raw, target)


def test_copy_refuses_a_source_larger_than_the_volume(backend: VolumeBackend) -> None:
    source = backend.volume_path(new_id())
    backend.create_blank(source, 3)
    target = backend.volume_path(new_id())
    with pytest.raises(BackendError, match="does not fit"):
        backend.copy(source, "qcow2", target, 2)
    assert not target.exists()


def test_resize_grows_in_place(backend: VolumeBackend) -> None:
    path = backend.volume_path(new_id())
    backend.create_blank(path, 1)
    backend.resize(path, 5)
    assert backend.virtual_size(path) == 5 * GIB


def test_failure_leaves_no_file_and_hides_host_paths(backend: VolumeBackend) -> None:
    target = backend.volume_path(new_id())
    with pytest.raises(BackendError) as info:
        backend.copy(backend.root / "missing.qcow2", "qcow2", target, 1)
    assert str(backend.root) not in str(info.value)
    assert not target.exists() and list(backend.tmp.iterdir()) == []


def test_a_hung_qemu_img_times_out(
    backend: VolumeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = tmp_path / "slow-qemu-img"
    slow.write_text("#!/bin/sh\nexec sleep 10\n")
    slow.chmod(0o755)
    monkeypatch.setattr(backend_module, "QUICK_TIMEOUT", 0.3)
    hung = VolumeBackend(backend.root, qemu_img=str(slow))
    with pytest.raises(BackendError, match="took longer"):
        hung.create_blank(backend.volume_path(new_id()), 1)
    assert list(backend.tmp.iterdir()) == []


@pytest.mark.parametrize(
    "bad", ["../etc/passwd", "", "x" * 36, "ABCDEF00-0000-0000-0000-000000000000"]
)
def test_paths_only_from_our_own_ids(backend: VolumeBackend, bad: str) -> None:
    with pytest.raises(ValueError):
        backend.volume_path(bad)


def test_sweep_removes_interrupted_and_unreferenced_files(backend: VolumeBackend) -> None:
    kept = backend.volume_path(new_id())
    stray = backend.snapshot_path(new_id())
    for path in (kept, stray):
        backend.create_blank(path, 1)
    (backend.tmp / "half").write_bytes(b"x")
    assert backend.sweep({kept}) == 2
    assert kept.exists() and not stray.exists() and list(backend.tmp.iterdir()) == []
