"""Volume and snapshot bytes: qcow2 files on local disk, made and changed by `qemu-img`.

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
import subprocess
from pathlib import Path
from typing import Any

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


class VolumeBackend:
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

    # -------------------------------------------------------------- plumbing

    def _publish(self, tmp: Path, final: Path, steps: list[list[str]], timeout: float) -> None:
        try:
            for step in steps:
                self._run(step, timeout)
            _fsync_file(tmp)
            os.chmod(tmp, 0o600)
            os.rename(tmp, final)
            _fsync_dir(final.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

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
