"""Image bytes in a Ceph pool (`image.backend = "rbd"`), read and written through librbd.

Uploads and imports are received, hashed and inspected in the local store's `tmp/` and
`files/` exactly as on local files; when an image becomes active its bytes are published
into the pool (`publish`) and the local file goes. In the pool, per stored file id:

- `<file id>`: the uploaded bytes, verbatim, with a snapshot `snap`. Downloads read that
  snapshot, so they return the bytes the owner uploaded (and the recorded checksum).
  This is what Glance's RBD store keeps; the record's disk_format stays what was uploaded.
- for a raw image that same snapshot is protected: it is the parent that servers' root
  disks and volumes clone (copy-on-write), named by `rbd_ref`;
- for any other disk format (qcow2, vmdk, ...) a second RBD image `<file id>.raw` holds its
  raw conversion (converted by qemu-img on the way in, written sparse: zero blocks are not
  written), with the protected snapshot `snap` that clones use. Glance would either refuse
  copy-on-write for a qcow2 image or convert it and call the image raw; keeping the upload
  verbatim beside a sparse raw copy keeps downloads and checksums true and still lets every
  server boot from a clone. The cost is the raw copy's written blocks.

An image whose snapshot has clones cannot be deleted: `check_unused` says so before the
record goes (409 "in use", as Glance answers when its RBD store reports the image busy).
`delete` removes what it can and leaves an image still cloned to `sweep`, which removes RBD
images no record names once they are older than a grace period (an upload publishes a
moment before its record is committed) and have no clone.

Compute hosts that still need a local file (root disks on local files, rescue disks, agent
hosts' downloads) get one from `path`: exported once through librbd into `cache/`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from souverain.common.ceph import CephConnection, RbdRef, bindings, translated
from souverain.image.store import (
    CHUNK,
    QEMU_IMG_CPU_SECONDS,
    QEMU_IMG_MEMORY,
    DiskInfo,
    ImageInUse,
    ImageReader,
    ImageStore,
    InvalidImage,
)

log = logging.getLogger("souverain.image")
SNAP = "snap"
RAW_SUFFIX = ".raw"
ORPHAN_GRACE_SECONDS = 3600.0
CONVERT_TIMEOUT = 3600.0
CONVERT_MEMORY = 4 * QEMU_IMG_MEMORY  # address space, not resident memory
IMPORT_CHUNK = 4 * 1024 * 1024  # one RBD object: zero objects are skipped whole
_STORED_NAME = re.compile(r"^([0-9a-f]{32})(\.raw)?$")


class RbdImageStore(ImageStore):
    """The local store for data being received, a Ceph pool for active images' data."""

    def __init__(self, root: Path, ceph: CephConnection, pool: str) -> None:
        super().__init__(root)
        self.ceph = ceph
        self.pool = pool
        self.cache = root / "cache"
        self._export_lock = threading.Lock()

    # ------------------------------------------------------------------ start-up

    def setup(self) -> None:
        super().setup()
        self.cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        ensure_pool(self.ceph, self.pool)

    # ------------------------------------------------------------------ writing

    def publish(self, file_id: str, disk: DiskInfo) -> None:
        """Copy a committed local file into the pool (and its raw conversion when it is not
        raw), snapshot, protect the clone parent; then the local file goes. InvalidImage
        when the data cannot be converted; nothing is left in the pool on any failure."""
        local = self.local_path(file_id)
        rbd = bindings("rbd")
        with self.ceph.ioctx(self.pool) as ctx:
            try:
                import_file(rbd, ctx, file_id, local, sparse=False)
                if disk.format == "raw":
                    snapshot(rbd, ctx, file_id, protect=True)
                else:
                    snapshot(rbd, ctx, file_id, protect=False)
                    self._publish_raw(rbd, ctx, file_id, local, disk.format)
            except BaseException:
                with contextlib.suppress(Exception):
                    _remove_all(rbd, ctx, file_id)
                raise
        local.unlink(missing_ok=True)

    def _publish_raw(self, rbd: Any, ctx: Any, file_id: str, local: Path, fmt: str) -> None:
        raw = self.tmp / f"{file_id}{RAW_SUFFIX}"
        try:
            convert_to_raw(local, fmt, raw)
            import_file(rbd, ctx, file_id + RAW_SUFFIX, raw, sparse=True)
            snapshot(rbd, ctx, file_id + RAW_SUFFIX, protect=True)
        finally:
            raw.unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading

    def rbd_ref(self, file_id: str) -> RbdRef | None:
        """The protected snapshot servers and volumes clone; None before publishing."""
        rbd = bindings("rbd")
        with self.ceph.ioctx(self.pool) as ctx:
            for name in (file_id + RAW_SUFFIX, file_id):
                try:
                    with rbd.Image(ctx, name, read_only=True) as image:
                        if image.is_protected_snap(SNAP):
                            return RbdRef(self.pool, name, SNAP)
                except rbd.ImageNotFound:
                    continue
        return None

    def open(self, file_id: str) -> ImageReader:
        local = self.local_path(file_id)
        if local.exists():  # staged data, not yet published
            return super().open(file_id)
        return RbdImageReader(self.ceph, self.pool, file_id)

    def path(self, file_id: str) -> Path:
        """A local file with the image's bytes: the received file before publishing, else
        a copy exported once from the pool into `cache/`."""
        local = self.local_path(file_id)
        if local.exists():
            return local
        cached = self.cache / file_id
        if cached.exists():
            return cached
        with self._export_lock:
            if not cached.exists():
                self._export(file_id, cached)
        return cached

    def cached(self, file_id: str) -> Path:
        local = self.local_path(file_id)
        return local if local.exists() else self.cache / file_id

    def _export(self, file_id: str, dest: Path) -> None:
        tmp = self.tmp / f"{file_id}.export.{os.getpid()}"
        reader = RbdImageReader(self.ceph, self.pool, file_id)
        try:
            with tmp.open("wb") as out:
                for chunk in reader.chunks():
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        finally:
            reader.close()
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ deleting

    def check_unused(self, file_id: str | None) -> None:
        """ImageInUse when a server or volume was cloned from this image's data."""
        if not file_id:
            return
        rbd = bindings("rbd")
        with self.ceph.ioctx(self.pool) as ctx:
            for name in (file_id + RAW_SUFFIX, file_id):
                children = _children(rbd, ctx, name)
                if children:
                    raise ImageInUse(
                        f"{len(children)} server disk(s) or volume(s) were made from it "
                        "(copy-on-write clones); delete them or flatten them first."
                    )

    def delete(self, file_ids: Iterable[str | None]) -> None:
        """Local and pool copies of these files; one still cloned stays for `sweep`."""
        ids = [f for f in file_ids if f]
        super().delete(ids)
        for file_id in ids:
            (self.cache / self.local_path(file_id).name).unlink(missing_ok=True)
        if not ids:
            return
        rbd = bindings("rbd")
        with self.ceph.ioctx(self.pool) as ctx:
            for file_id in ids:
                with contextlib.suppress(ImageInUse):
                    _remove_all(rbd, ctx, file_id)

    def sweep(self, referenced: set[str]) -> int:
        removed = super().sweep(referenced)
        for entry in os.scandir(self.cache):
            if entry.name not in referenced:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        return removed + self._sweep_pool(referenced)

    def _sweep_pool(self, referenced: set[str]) -> int:
        """RBD images of ours no record names, past the grace period and without clones."""
        rbd = bindings("rbd")
        now = dt.datetime.now()
        removed = 0
        with self.ceph.ioctx(self.pool) as ctx:
            for name in rbd.RBD().list(ctx):
                match = _STORED_NAME.match(name)
                if match is None or match.group(1) in referenced:
                    continue
                if not _older_than(rbd, ctx, name, now, ORPHAN_GRACE_SECONDS):
                    continue
                with contextlib.suppress(ImageInUse, rbd.ImageNotFound):
                    _remove(rbd, ctx, name)
                    removed += 1
        return removed


class RbdImageReader(ImageReader):
    """The verbatim bytes of a published image, read at its snapshot through librbd."""

    def __init__(self, ceph: CephConnection, pool: str, file_id: str) -> None:
        self._fd = -1
        rbd = bindings("rbd")
        self._ctx: Any = None
        self._image: Any = None
        with translated():
            self._ctx = ceph.rados().open_ioctx(pool)
            try:
                self._image = rbd.Image(self._ctx, file_id, snapshot=SNAP, read_only=True)
            except BaseException:
                self._ctx.close()
                raise

    def chunks(self, chunk: int = CHUNK) -> Iterator[bytes]:
        size = self._image.size()
        offset = 0
        while offset < size:
            with translated():
                data = self._image.read(offset, min(chunk, size - offset))
            if not data:
                return
            offset += len(data)
            yield data

    def close(self) -> None:
        if self._image is not None:
            self._image.close()
            self._image = None
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None


# ---------------------------------------------------------------------- the pool


def ensure_pool(ceph: CephConnection, pool: str, application: str = "rbd") -> None:
    """Create `pool` tagged for `application` when missing; RuntimeError saying what to
    do when the cluster refuses."""
    with translated():
        handle = ceph.rados()
        if handle.pool_exists(pool):
            return
        try:
            handle.create_pool(pool)
        except bindings("rados").ObjectExists:
            pass  # another process made it meanwhile
        command = {"prefix": "osd pool application enable", "pool": pool, "app": application}
        ret, _, message = handle.mon_command(json.dumps(command), b"")
        if ret != 0:
            raise RuntimeError(
                f"pool {pool} was created but could not be tagged for {application}: "
                f"{message}; run `ceph osd pool application enable {pool} {application}`"
            )


def import_file(rbd: Any, ctx: Any, name: str, source: Path, *, sparse: bool) -> None:
    size = source.stat().st_size
    rbd.RBD().create(ctx, name, size, old_format=False)
    with rbd.Image(ctx, name) as image, source.open("rb") as handle:
        offset = 0
        while data := handle.read(IMPORT_CHUNK):
            if not (sparse and data.count(0) == len(data)):
                image.write(data, offset)
            offset += len(data)
        image.flush()


def snapshot(rbd: Any, ctx: Any, name: str, *, protect: bool) -> None:
    with rbd.Image(ctx, name) as image:
        image.create_snap(SNAP)
        if protect:
            image.protect_snap(SNAP)


def _children(rbd: Any, ctx: Any, name: str) -> list[Any]:
    try:
        with rbd.Image(ctx, name, read_only=True) as image:
            if not any(s["name"] == SNAP for s in image.list_snaps()):
                return []
            image.set_snap(SNAP)
            return list(image.list_children2())
    except rbd.ImageNotFound:
        return []


def remove_image(rbd: Any, ctx: Any, name: str) -> None:
    """Unprotect and remove an RBD image's snapshots, then the image; gone already is
    fine. librbd refuses (ImageBusy) while a snapshot has clones."""
    try:
        with rbd.Image(ctx, name) as image:
            for snap in list(image.list_snaps()):
                if image.is_protected_snap(snap["name"]):
                    image.unprotect_snap(snap["name"])
                image.remove_snap(snap["name"])
    except rbd.ImageNotFound:
        return
    with contextlib.suppress(rbd.ImageNotFound):
        rbd.RBD().remove(ctx, name)


def _remove(rbd: Any, ctx: Any, name: str) -> None:
    """An image's data removed; ImageInUse while cloned."""
    if _children(rbd, ctx, name):
        raise ImageInUse(name)
    try:
        remove_image(rbd, ctx, name)
    except rbd.ImageBusy as exc:  # a clone appeared since the check
        raise ImageInUse(name) from exc


def _remove_all(rbd: Any, ctx: Any, file_id: str) -> None:
    _remove(rbd, ctx, file_id + RAW_SUFFIX)
    _remove(rbd, ctx, file_id)


def _older_than(rbd: Any, ctx: Any, name: str, now: dt.datetime, seconds: float) -> bool:
    try:
        with rbd.Image(ctx, name, read_only=True) as image:
            created = image.create_timestamp()
    except rbd.ImageNotFound:
        return False
    return bool((now - created).total_seconds() > seconds)


# ---------------------------------------------------------------------- conversion


def convert_to_raw(source: Path, fmt: str, dest: Path) -> None:
    """`qemu-img convert` of inspected (untrusted) data into a sparse raw file, its format
    given (never probed) and its time and memory bounded; InvalidImage when it fails."""
    argv = ["qemu-img", "convert", "-q", "-f", fmt, "-O", "raw", str(source), str(dest)]
    prlimit = shutil.which("prlimit")
    if prlimit:  # a convert runs a pool of I/O threads (8 MiB of stack each): more room
        argv = [prlimit, f"--as={CONVERT_MEMORY}", f"--cpu={QEMU_IMG_CPU_SECONDS * 20}", *argv]
    try:
        result = subprocess.run(  # a fixed argv, no shell
            argv,
            capture_output=True,
            timeout=CONVERT_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        raise InvalidImage("Converting the image data to raw took too long.") from None
    if result.returncode != 0:
        dest.unlink(missing_ok=True)
        log.warning("qemu-img convert of %s failed: %s", source.name, result.stderr[-500:])
        raise InvalidImage(
            f"The {fmt} image data is damaged: it could not be converted to raw "
            "(check it with `qemu-img check`)."
        )
