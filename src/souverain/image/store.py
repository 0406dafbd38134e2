"""Image bytes on local disk, and what `qemu-img` says about them.

A file is written to `tmp/`, inspected, fsynced, renamed into `files/<id>` and its
directory fsynced before any row may point at it. File ids are our own random hex
ids; paths never derive from image ids or names. This module knows nothing of
image records, tenancy or HTTP.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from souverain.common.ceph import RbdRef
from souverain.common.ids import new_id

CHUNK = 1024 * 1024
HASH_ALGO = "sha512"
_FILE_ID = re.compile(r"^[0-9a-f]{32}$")

# qemu-img reads untrusted headers: bound its time and memory as OpenStack does.
QEMU_IMG_TIMEOUT = 30.0
QEMU_IMG_MEMORY = 1024**3
QEMU_IMG_CPU_SECONDS = 30

# disk_format -> the format qemu-img must detect; None: any (kernel/ramdisk blobs)
EXPECTED_FORMAT: dict[str, str | None] = {
    "qcow2": "qcow2",
    "raw": "raw",
    "iso": "raw",
    "vmdk": "vmdk",
    "vdi": "vdi",
    "vhd": "vpc",
    "vhdx": "vhdx",
    "ploop": "parallels",
    "aki": None,
    "ari": None,
    "ami": None,
}
ISO_MAGIC_OFFSET = 32769
ISO_MAGIC = b"CD001"
# VMDK kinds held in one file; the others name extent files elsewhere on the host.
SAFE_VMDK_TYPES = frozenset({"monolithicSparse", "streamOptimized"})


class StorageFull(Exception):
    """The disk has no room for these bytes; what was written so far is gone."""


class InvalidImage(Exception):
    """The bytes do not match the declared disk format, or are unsafe to use."""


class ImageInUse(Exception):
    """Servers or volumes were cloned from the image's data; it cannot be deleted now."""


@dataclass(frozen=True)
class DiskInfo:
    format: str
    virtual_size: int | None


class Digests:
    """The checksums Glance reports, over the same bytes in one pass."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.multihash = hashlib.new(HASH_ALGO)
        self.size = 0

    def update(self, data: bytes) -> None:
        self.md5.update(data)
        self.multihash.update(data)
        self.size += len(data)


class ImageWriter:
    """One image file being written; `commit` makes it durable, `abort` leaves nothing."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.file_id = new_id()
        self.digests = Digests()
        self.tmp_path = store.tmp / self.file_id
        self._fd = os.open(
            self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        self._open = True

    @property
    def size(self) -> int:
        return self.digests.size

    def write(self, data: bytes) -> None:
        self.digests.update(data)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(str(exc)) from None
            raise

    def commit(self) -> str:
        """fsync, rename into place, fsync the directory; return the file id."""
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._open = False
            os.rename(self.tmp_path, self.store.local_path(self.file_id))
            self.store.sync_dir(self.store.files)
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(str(exc)) from None
            raise
        return self.file_id

    def abort(self) -> None:
        if self._open:
            os.close(self._fd)
            self._open = False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.tmp = root / "tmp"

    def setup(self) -> None:
        for folder in (self.root, self.files, self.tmp):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def local_path(self, file_id: str) -> Path:
        """Where a received file lives under `files/`."""
        if not _FILE_ID.match(file_id):  # ids come from our own rows; refuse anything else
            raise ValueError("not an image file id")
        return self.files / file_id

    def path(self, file_id: str) -> Path:
        """A local file with the image's bytes (compute hosts' base images read it)."""
        return self.local_path(file_id)

    def cached(self, file_id: str) -> Path:
        """Where `path` has (or would put) the image's local bytes, without making them."""
        return self.local_path(file_id)

    def writer(self) -> ImageWriter:
        return ImageWriter(self)

    @staticmethod
    def sync_dir(folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def adopt(self, source: Path) -> tuple[str, Digests]:
        """Move a finished local file into the store (copy when on another file system)."""
        digests = Digests()
        with source.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digests.update(chunk)
        file_id = new_id()
        final = self.local_path(file_id)
        try:
            os.rename(source, final)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            writer = self.writer()
            with source.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    writer.write(chunk)
            file_id = writer.commit()
            source.unlink()
            return file_id, digests
        with contextlib.suppress(OSError):  # the rename must survive a crash
            self.sync_dir(source.parent)
        os.chmod(final, 0o600)
        self.sync_dir(self.files)
        return file_id, digests

    def publish(self, file_id: str, disk: DiskInfo) -> None:
        """An image became active with this committed file: local files stay as they are
        (the Ceph store copies them into its pool here)."""

    def rbd_ref(self, file_id: str) -> RbdRef | None:
        """The RBD snapshot servers and volumes clone: none on local files."""
        return None

    def check_unused(self, file_id: str | None) -> None:
        """Local files are never shared with a server's disk (compute copies or links them)."""

    def delete(self, file_ids: Iterable[str | None]) -> None:
        for file_id in file_ids:
            if file_id:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.local_path(file_id))

    def sweep(self, referenced: set[str]) -> int:
        """Remove interrupted uploads and files no row points at; how many files went."""
        removed = 0
        for folder, keep in ((self.tmp, set[str]()), (self.files, referenced)):
            for entry in os.scandir(folder):
                if entry.name not in keep:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    removed += 1
        return removed

    def open(self, file_id: str) -> ImageReader:
        return ImageReader(self.local_path(file_id))


class ImageReader:
    """An open image file: a delete while downloading does not cut the download short."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def chunks(self, chunk: int = CHUNK) -> Iterator[bytes]:
        offset = 0
        while data := os.pread(self._fd, chunk, offset):
            offset += len(data)
            yield data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# ---------------------------------------------------------------------- inspection


def qemu_img_info(path: Path) -> dict[str, Any]:
    """`qemu-img info` of an untrusted file: format probed, no backing file opened."""
    argv = ["qemu-img", "info", "--output=json", "-U", str(path)]
    prlimit = shutil.which("prlimit")
    if prlimit:
        argv = [prlimit, f"--as={QEMU_IMG_MEMORY}", f"--cpu={QEMU_IMG_CPU_SECONDS}", *argv]
    try:
        result = subprocess.run(  # a fixed argv, no shell
            argv,
            capture_output=True,
            timeout=QEMU_IMG_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        raise InvalidImage("Inspecting the image data took too long.") from None
    except FileNotFoundError:
        raise RuntimeError("qemu-img is not installed (Debian package qemu-utils)") from None
    if result.returncode != 0:
        raise InvalidImage("The image data could not be read as a disk image.")
    try:
        info: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        raise InvalidImage("The image data could not be read as a disk image.") from None
    return info


def _has_data_file(info: dict[str, Any]) -> bool:
    specific = info.get("format-specific") or {}
    data = specific.get("data") or {}
    return bool(data.get("data-file"))


def inspect(path: Path, disk_format: str) -> DiskInfo:
    """What the bytes are; InvalidImage when they disagree with `disk_format` or are unsafe."""
    info = qemu_img_info(path)
    detected = str(info.get("format", ""))
    expected = EXPECTED_FORMAT.get(disk_format, "")
    if expected is not None and detected != expected:
        raise InvalidImage(
            f"The image data is in format '{detected}', not the declared disk_format "
            f"'{disk_format}'."
        )
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise InvalidImage(
            "The image has a backing file; images with a backing file are refused, since a "
            "backing file could point at a file of the host. Flatten it first "
            "(qemu-img convert -O qcow2)."
        )
    if _has_data_file(info):
        raise InvalidImage(
            "The image has an external data file; such images are refused, since the data "
            "file could point at a file of the host. Convert it first (qemu-img convert)."
        )
    if detected == "vmdk":
        kind = ((info.get("format-specific") or {}).get("data") or {}).get("create-type")
        if kind not in SAFE_VMDK_TYPES:
            raise InvalidImage(f"VMDK images of type '{kind}' are refused: use monolithicSparse.")
    if disk_format == "iso" and not _has_iso_signature(path):
        raise InvalidImage("The image data is not an ISO 9660 file system (no CD001 signature).")
    size = info.get("virtual-size")
    return DiskInfo(detected, int(size) if isinstance(size, int) else None)


def _has_iso_signature(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(ISO_MAGIC_OFFSET)
        return handle.read(len(ISO_MAGIC)) == ISO_MAGIC
