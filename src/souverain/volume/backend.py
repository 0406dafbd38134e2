"""Volume and snapshot bytes: the `VolumeStore` protocol every backend speaks (in volume
and snapshot ids, never paths), and its file backend: qcow2 files on local disk, made and
changed by `qemu-img` (the RBD backend is `rbd_backend.RbdVolumeBackend`).

Files are `volume-<id>.qcow2` and `snapshot-<id>.qcow2` under the root; ids are
the service's own UUIDs, checked here again. Anything that writes a new file
writes it under `tmp/`, fsyncs it, renames it into place and fsyncs the
directory, so a crash leaves the old state or the new one, never half a file
under a final name. Every qemu-img call has a timeout. This module knows
nothing of rows, tenancy or HTTP.

Clones and volumes from snapshots are full, independent copies (`qemu-img
convert`), not backing chains: deleting a snapshot or its volume never breaks
another volume, at the cost of the copy time and space. A copy of an
attached volume is read with `-U` (QEMU holds the image's lock) while the caller
holds the guest's writes (`rules.guest_writes_held`): it is crash-consistent, like
pulling the power cord, not application-consistent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from souverain.common.ceph import CephAccess, RbdRef
from souverain.common.ids import new_id

GIB = 1024**3
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# a metadata change (create, resize, info) is quick; a copy moves the data
QUICK_TIMEOUT = 60.0
COPY_TIMEOUT = 3600.0

# image disk_format -> the format qemu-img reads it as
SOURCE_FORMATS = {
    "qcow2": "qcow2",
    "raw": "raw",
    "iso": "raw",
    "vmdk": "vmdk",
    "vdi": "vdi",
    "vhd": "vpc",
    "vhdx": "vhdx",
    "ploop": "parallels",
}


class BackendError(Exception):
    """A qemu-img call failed; the message says what, without host paths."""


@dataclass(frozen=True)
class VolumeLocation:
    """Where a guest finds a volume's bytes: a file (`path`, qcow2) or an RBD image (`rbd`,
    raw, opened by QEMU's own rbd driver with `ceph`)."""

    format: str
    path: Path | None = None
    rbd: RbdRef | None = None
    ceph: CephAccess | None = None


class VolumeStore(Protocol):
    """What the volume service's rooms ask of a backend, in ids. A snapshot is named with
    the volume it was taken of (an RBD snapshot lives inside its volume's image)."""

    kind: str  # "file" or "rbd"

    def setup(self) -> None: ...
    def temp_path(self, suffix: str = ".qcow2") -> Path: ...
    def make_blank(self, volume_id: str, size_gib: int) -> None: ...
    def clone_volume(
        self, source_id: str, volume_id: str, size_gib: int, shared: bool = False
    ) -> None: ...
    def from_snapshot(
        self, origin_id: str, snapshot_id: str, volume_id: str, size_gib: int
    ) -> None: ...
    def from_file(
        self, source: Path, source_format: str, volume_id: str, size_gib: int
    ) -> None: ...
    def from_image_ref(self, ref: RbdRef, volume_id: str, size_gib: int) -> bool: ...
    def overwrite(self, volume_id: str, raw: Path, size_gib: int) -> None: ...
    def take_snapshot(
        self, volume_id: str, snapshot_id: str, size_gib: int, shared: bool = False
    ) -> None: ...
    def export_volume(
        self, volume_id: str, out: Path, out_format: str = "qcow2", shared: bool = False
    ) -> None: ...
    def export_snapshot(
        self, volume_id: str, snapshot_id: str, out: Path, out_format: str = "raw"
    ) -> None: ...
    def grow(self, volume_id: str, size_gib: int) -> None: ...
    def volume_bytes(self, volume_id: str) -> int: ...
    def remove_volume(self, volume_id: str) -> None: ...
    def remove_snapshot(self, volume_id: str, snapshot_id: str) -> None: ...
    def snapshot_dependents(self, volume_id: str, snapshot_id: str) -> int: ...
    def sweep_unknown(self, volumes: set[str], snapshots: set[str]) -> int: ...
    def location(self, volume_id: str) -> VolumeLocation: ...
    def capacity(self) -> tuple[int, int]: ...
    def flatten(self, volume_id: str) -> None: ...
    def close(self) -> None: ...


class VolumeBackend:
    kind = "file"

    def __init__(self, root: Path, qemu_img: str = "qemu-img") -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.qemu_img = qemu_img

    def setup(self) -> None:
        for folder in (self.root, self.tmp):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -------------------------------------------------------------- names

    def volume_path(self, volume_id: str) -> Path:
        return self.root / f"volume-{_checked(volume_id)}.qcow2"

    def snapshot_path(self, snapshot_id: str) -> Path:
        return self.root / f"snapshot-{_checked(snapshot_id)}.qcow2"

    def temp_path(self, suffix: str = ".qcow2") -> Path:
        return self.tmp / f"{new_id()}{suffix}"

    # -------------------------------------------------------------- making files

    def create_blank(self, final: Path, size_gib: int) -> None:
        """A thin qcow2 of `size_gib`: metadata only, whatever the size."""
        tmp = self.temp_path()
        self._publish(
            tmp,
            final,
            [["create", "-q", "-f", "qcow2", str(tmp), f"{size_gib}G"]],
            QUICK_TIMEOUT,
        )

    def copy(
        self, source: Path, source_format: str, final: Path, size_gib: int, shared: bool = False
    ) -> None:
        """A full, independent qcow2 copy of `source`, grown to `size_gib`.

        `shared` reads without taking the image lock: the source is attached to a
        running guest, whose writes the caller holds for the copy.
        """
        tmp = self.temp_path()
        convert = ["convert", "-q", "-f", source_format, "-O", "qcow2"]
        if shared:
            convert.append("-U")
        convert += [str(source), str(tmp)]
        resize = ["resize", "-q", "-f", "qcow2", str(tmp), f"{size_gib}G"]
        if self.virtual_size(source, source_format, shared) > size_gib * GIB:
            raise BackendError(f"The source does not fit in a volume of {size_gib} GiB.")
        self._publish(tmp, final, [convert, resize], COPY_TIMEOUT)

    def export(
        self, source: Path, out: Path, shared: bool = False, out_format: str = "qcow2"
    ) -> None:
        """The volume as a standalone qcow2 (or raw) file at `out` (for an image), fsynced."""
        argv = ["convert", "-q", "-f", "qcow2", "-O", out_format]
        if shared:
            argv.append("-U")
        try:
            self._run([*argv, str(source), str(out)], COPY_TIMEOUT)
            _fsync_file(out)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            raise

    def to_raw(self, source: Path, source_format: str, out: Path) -> None:
        """A raw copy of `source` at `out` (what the RBD backend streams into librbd)."""
        self._run(
            ["convert", "-q", "-f", source_format, "-O", "raw", str(source), str(out)],
            COPY_TIMEOUT,
        )

    def from_raw(self, raw: Path, out: Path, out_format: str) -> None:
        """`raw` converted to `out_format` at `out`, fsynced."""
        self._run(
            ["convert", "-q", "-f", "raw", "-O", out_format, str(raw), str(out)], COPY_TIMEOUT
        )
        _fsync_file(out)

    def resize(self, path: Path, size_gib: int) -> None:
        """Grow a detached volume in place; qemu-img resize only rewrites metadata."""
        self._run(["resize", "-q", "-f", "qcow2", str(path), f"{size_gib}G"], QUICK_TIMEOUT)
        _fsync_file(path)

    def virtual_size(self, path: Path, fmt: str = "qcow2", shared: bool = True) -> int:
        argv = ["info", "--output=json", "-f", fmt]
        if shared:
            argv.append("-U")
        info: dict[str, Any] = json.loads(self._run([*argv, str(path)], QUICK_TIMEOUT))
        return int(info["virtual-size"])

    def delete(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            _fsync_dir(path.parent)

    def sweep(self, keep: set[Path]) -> int:
        """Remove interrupted writes and files no row names; how many went."""
        removed = 0
        for entry in os.scandir(self.tmp):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            removed += 1
        for entry in os.scandir(self.root):
            path = Path(entry.path)
            if entry.is_file() and path.suffix == ".qcow2" and path not in keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                removed += 1
        return removed

    # -------------------------------------------------------------- VolumeStore, in ids

    def make_blank(self, volume_id: str, size_gib: int) -> None:
        self.create_blank(self.volume_path(volume_id), size_gib)

    def clone_volume(
        self, source_id: str, volume_id: str, size_gib: int, shared: bool = False
    ) -> None:
        self.copy(
            self.volume_path(source_id), "qcow2", self.volume_path(volume_id), size_gib, shared
        )

    def from_snapshot(
        self, origin_id: str, snapshot_id: str, volume_id: str, size_gib: int
    ) -> None:
        self.copy(self.snapshot_path(snapshot_id), "qcow2", self.volume_path(volume_id), size_gib)

    def from_file(self, source: Path, source_format: str, volume_id: str, size_gib: int) -> None:
        self.copy(source, source_format, self.volume_path(volume_id), size_gib)

    def overwrite(self, volume_id: str, raw: Path, size_gib: int) -> None:
        """The volume's bytes replaced by a raw file's (a restore): a new file renamed over."""
        self.copy(raw, "raw", self.volume_path(volume_id), size_gib)

    def from_image_ref(self, ref: RbdRef, volume_id: str, size_gib: int) -> bool:
        """Files cannot clone an RBD image: the caller copies the image's file instead."""
        return False

    def take_snapshot(
        self, volume_id: str, snapshot_id: str, size_gib: int, shared: bool = False
    ) -> None:
        self.copy(
            self.volume_path(volume_id),
            "qcow2",
            self.snapshot_path(snapshot_id),
            size_gib,
            shared=shared,  # QEMU holds the image's lock
        )

    def export_volume(
        self, volume_id: str, out: Path, out_format: str = "qcow2", shared: bool = False
    ) -> None:
        self.export(self.volume_path(volume_id), out, shared=shared, out_format=out_format)

    def export_snapshot(
        self, volume_id: str, snapshot_id: str, out: Path, out_format: str = "raw"
    ) -> None:
        self.export(self.snapshot_path(snapshot_id), out, out_format=out_format)

    def grow(self, volume_id: str, size_gib: int) -> None:
        self.resize(self.volume_path(volume_id), size_gib)

    def volume_bytes(self, volume_id: str) -> int:
        return self.virtual_size(self.volume_path(volume_id))

    def remove_volume(self, volume_id: str) -> None:
        self.delete(self.volume_path(volume_id))

    def remove_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        self.delete(self.snapshot_path(snapshot_id))

    def snapshot_dependents(self, volume_id: str, snapshot_id: str) -> int:
        """Volumes made from a snapshot are full copies here: nothing depends on it."""
        return 0

    def sweep_unknown(self, volumes: set[str], snapshots: set[str]) -> int:
        keep = {self.volume_path(i) for i in volumes} | {self.snapshot_path(i) for i in snapshots}
        return self.sweep(keep)

    def location(self, volume_id: str) -> VolumeLocation:
        return VolumeLocation(format="qcow2", path=self.volume_path(volume_id))

    def flatten(self, volume_id: str) -> None:
        """Every file volume is already independent."""

    def close(self) -> None:
        """Nothing held open between calls."""

    def capacity(self) -> tuple[int, int]:
        """Total and free bytes where the files are."""
        disk = shutil.disk_usage(self.root)
        return disk.total, disk.free

    # -------------------------------------------------------------- plumbing

    def _publish(self, tmp: Path, final: Path, steps: list[list[str]], timeout: float) -> None:
        def run_steps() -> None:
            for step in steps:
                self._run(step, timeout)

        publish(tmp, final, run_steps)

    def _run(self, args: list[str], timeout: float) -> str:
        argv = [self.qemu_img, *args]
        try:
            result = subprocess.run(  # a fixed argv, no shell
                argv,
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
                text=True,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            )
        except subprocess.TimeoutExpired:
            raise BackendError(f"qemu-img {args[0]} took longer than {timeout:.0f} s.") from None
        except FileNotFoundError:
            raise BackendError("qemu-img is not installed (Debian package qemu-utils).") from None
        if result.returncode != 0:
            detail = result.stderr.strip().splitlines()[-1:] or ["no detail"]
            raise BackendError(f"qemu-img {args[0]} failed: {_without_paths(detail[0])}")
        return result.stdout


def _checked(resource_id: str) -> str:
    if not _ID.match(resource_id):  # ids come from our own rows; refuse anything else
        raise ValueError("not a volume or snapshot id")
    return resource_id


def _without_paths(text: str) -> str:
    """qemu-img names the files it failed on; customers need not see the host's layout."""
    return re.sub(r"'?/[^\s':]+'?", "<file>", text)[:300]


def publish(tmp: Path, final: Path, make: Callable[[], object]) -> None:
    """`make()` writes `tmp`; then it is made durable, private (0600) and renamed onto
    `final`, the rename made durable too. On any failure `tmp` is removed, `final` untouched."""
    try:
        make()
        _fsync_file(tmp)
        os.chmod(tmp, 0o600)
        os.rename(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
