"""Servers' root disks as RBD clones (`compute.disk_backend = "rbd"`).

A server's root disk is the RBD image `<server uuid>_disk` in `compute.rbd_pool`: a
copy-on-write clone of the image's protected snapshot (`BootImage.rbd`), grown to the
flavor's root size. An image not on RBD (image.backend = file) is imported once into the
disks pool as `base-<image id>` (raw, sparse, with a protected snapshot) and cloned from
there. QEMU opens the clone with its own rbd driver: guest I/O goes from QEMU to the OSDs.

The instance directory keeps a small pointer file, `disk.rbd` (JSON: pool and image), in
place of `disk.qcow2`: every path-based step of the driver (the guest spec's `disk`, the
instance dir's removal) finds the disk through it. RBD's exclusive-lock feature (on by
default) lets one QEMU write the image at a time; `fence` breaks a dead host's lock before
another host opens the disk (what Nova's evacuate relies on with Ceph).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from souverain.common.ceph import CephAccess, CephConnection, RbdRef, bindings
from souverain.compute.qemu_guest import DriverError
from souverain.compute.qemu_host import fsync_dir, qemu_opt, write_atomically
from souverain.image.rbd_store import (
    SNAP,
    convert_to_raw,
    ensure_pool,
    import_file,
    remove_image,
    snapshot,
)

POINTER = "disk.rbd"
# a server booted from an RBD volume: the volume's pool, image and cluster access. The
# volume is the volume service's: nothing here removes, snapshots or grows it.
VOLUME_POINTER = "volume.rbd"
GIB = 1024**3
REMOVE_ATTEMPTS = 20  # a QEMU that just quit may hold its watch a few seconds more


@dataclass(frozen=True)
class RbdDisk:
    pool: str
    image: str


def read_pointer(path: Path) -> RbdDisk:
    data = json.loads(path.read_text())
    return RbdDisk(pool=str(data["pool"]), image=str(data["image"]))


def is_rbd(disk: Path) -> bool:
    """The root disk is in the cluster (a clone of ours, or a volume): shared by hosts."""
    return disk.name in (POINTER, VOLUME_POINTER)


def write_volume_pointer(directory: Path, volume: RbdRef, access: CephAccess) -> Path:
    """The root disk of a server booted from an RBD volume, for QEMU's rbd driver."""
    directory.mkdir(parents=True, exist_ok=True)
    pointer = directory / VOLUME_POINTER
    doc = {"pool": volume.pool, "image": volume.image, "conf": str(access.conf)}
    write_atomically(pointer, json.dumps({**doc, "user": access.user}).encode())
    fsync_dir(directory)
    return pointer


def rbd_drive(disk: RbdDisk, conf: Path, user: str, key_secret: str | None = None) -> str:
    """QEMU's -drive for a root disk in the cluster: QEMU's own rbd driver, raw; or, for an
    encrypted volume (a bare LUKS container), QEMU's luks driver over it, opened with the
    secret object `key_secret`."""
    head = "driver=raw" if key_secret is None else f"driver=luks,key-secret={qemu_opt(key_secret)}"
    return (
        f"{head},file.driver=rbd,file.pool={qemu_opt(disk.pool)},"
        f"file.image={qemu_opt(disk.image)},file.conf={qemu_opt(conf)},"
        f"file.user={qemu_opt(user)},if=none,id=root,cache=writeback,discard=unmap"
    )


def volume_drive(pointer: Path, key_secret: str | None = None) -> str:
    """The -drive of a server booted from an RBD volume (its pointer names the access);
    `key_secret`: the volume is encrypted, its passphrase that QEMU secret object's."""
    data = json.loads(pointer.read_text())
    return rbd_drive(read_pointer(pointer), Path(data["conf"]), str(data["user"]), key_secret)


class RbdRootDisks:
    """Clones, grows, exports and removes root disks in one pool."""

    def __init__(self, ceph: CephConnection, pool: str) -> None:
        self.ceph = ceph
        self.pool = pool
        self._base_lock = threading.Lock()

    def setup(self) -> None:
        ensure_pool(self.ceph, self.pool)

    @staticmethod
    def name(uuid: str) -> str:
        return f"{uuid}_disk"

    # ----------------------------------------------------------------- creating

    def create(
        self, directory: Path, uuid: str, parent: RbdRef | None, source: Path, size_gib: int
    ) -> Path:
        """The server's clone (kept if it exists), at least `size_gib` GiB; its pointer."""
        pointer = directory / POINTER
        if pointer.exists():
            return pointer
        directory.mkdir(parents=True, exist_ok=True)
        parent = parent or self._base(source, directory)
        rbd = bindings("rbd")
        name = self.name(uuid)
        with self.ceph.ioctx(self.pool) as ctx:
            if parent.pool == self.pool:
                self._clone(rbd, ctx, ctx, parent, name)
            else:
                with self.ceph.ioctx(parent.pool) as parent_ctx:
                    self._clone(rbd, parent_ctx, ctx, parent, name)
            with rbd.Image(ctx, name) as image:
                if image.size() < size_gib * GIB:
                    image.resize(size_gib * GIB)
        write_atomically(pointer, json.dumps({"pool": self.pool, "image": name}).encode())
        fsync_dir(directory)
        return pointer

    def adopt(self, directory: Path, uuid: str) -> Path:
        """The pointer to the server's existing clone, on a host that did not make it (a
        migration's destination, an evacuation's new host: the disk is shared)."""
        pointer = directory / POINTER
        name = self.name(uuid)
        rbd = bindings("rbd")
        with self.ceph.ioctx(self.pool) as ctx:
            if name not in rbd.RBD().list(ctx):
                raise DriverError(
                    f"server {uuid}'s root disk {self.pool}/{name} is not in the cluster; "
                    "the server cannot run here without it"
                )
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(pointer, json.dumps({"pool": self.pool, "image": name}).encode())
        fsync_dir(directory)
        return pointer

    def exists(self, uuid: str) -> bool:
        rbd = bindings("rbd")
        with self.ceph.ioctx(self.pool) as ctx:
            return self.name(uuid) in rbd.RBD().list(ctx)

    @staticmethod
    def _clone(rbd: Any, parent_ctx: Any, ctx: Any, parent: RbdRef, name: str) -> None:
        with contextlib.suppress(rbd.ImageExists):  # made by an earlier attempt of this build
            rbd.RBD().clone(parent_ctx, parent.image, parent.snapshot or SNAP, ctx, name)

    def _base(self, source: Path, scratch: Path) -> RbdRef:
        """An image on local files, imported once into this pool as a raw base."""
        base = f"base-{source.name}"
        rbd = bindings("rbd")
        with self._base_lock, self.ceph.ioctx(self.pool) as ctx:
            if base not in rbd.RBD().list(ctx):
                self._import_base(rbd, ctx, source, base, scratch / ".base.raw")
        return RbdRef(self.pool, base, SNAP)

    def _import_base(self, rbd: Any, ctx: Any, source: Path, base: str, raw: Path) -> None:
        tmp_name = f"{base}.tmp-{os.getpid()}-{threading.get_ident()}"
        try:
            fmt = _format_of(source)
            if fmt == "raw":
                import_file(rbd, ctx, tmp_name, source, sparse=True)
            else:
                convert_to_raw(source, fmt, raw)
                import_file(rbd, ctx, tmp_name, raw, sparse=True)
            snapshot(rbd, ctx, tmp_name, protect=True)
            rbd.RBD().rename(ctx, tmp_name, base)
        except BaseException:
            remove_image(rbd, ctx, tmp_name)
            raise
        finally:
            raw.unlink(missing_ok=True)

    # ----------------------------------------------------------------- using

    def drive(self, pointer: Path) -> str:
        """QEMU's -drive for the root disk: QEMU's own rbd driver, raw."""
        return rbd_drive(read_pointer(pointer), self.ceph.access.conf, self.ceph.access.user)

    def json_spec(self, pointer: Path) -> str:
        """The disk as a qemu-img `json:` file name (read-only copies: snapshots)."""
        disk = read_pointer(pointer)
        spec = {
            "driver": "raw",
            "file": {
                "driver": "rbd",
                "pool": disk.pool,
                "image": disk.image,
                "conf": str(self.ceph.access.conf),
                "user": self.ceph.access.user,
            },
        }
        return "json:" + json.dumps(spec)

    def size(self, pointer: Path) -> int:
        disk = read_pointer(pointer)
        rbd = bindings("rbd")
        with self.ceph.ioctx(disk.pool) as ctx, rbd.Image(ctx, disk.image, read_only=True) as im:
            return int(im.size())

    def resize(self, pointer: Path, size_gib: int) -> None:
        """Grow (never shrink) the stopped server's disk."""
        disk = read_pointer(pointer)
        rbd = bindings("rbd")
        with self.ceph.ioctx(disk.pool) as ctx, rbd.Image(ctx, disk.image) as image:
            current = image.size()
            if size_gib * GIB < current:
                raise DriverError(f"disk is {current} bytes; it can grow but not shrink")
            if size_gib * GIB > current:
                image.resize(size_gib * GIB)

    def keep_snapshot(self, pointer: Path, name: str) -> None:
        """A snapshot of the disk as it is now (a resize's way back); kept if it exists."""
        disk = read_pointer(pointer)
        rbd = bindings("rbd")
        with self.ceph.ioctx(disk.pool) as ctx, rbd.Image(ctx, disk.image) as image:
            if not any(s["name"] == name for s in image.list_snaps()):
                image.create_snap(name)

    def back_to_snapshot(self, pointer: Path, name: str) -> None:
        """The disk as it was at snapshot `name` (its size too), then the snapshot goes."""
        disk = read_pointer(pointer)
        rbd = bindings("rbd")
        with self.ceph.ioctx(disk.pool) as ctx, rbd.Image(ctx, disk.image) as image:
            if any(s["name"] == name for s in image.list_snaps()):
                image.rollback_to_snap(name)
                image.remove_snap(name)

    def drop_snapshot(self, pointer: Path, name: str) -> None:
        disk = read_pointer(pointer)
        rbd = bindings("rbd")
        with self.ceph.ioctx(disk.pool) as ctx, rbd.Image(ctx, disk.image) as image:
            if any(s["name"] == name for s in image.list_snaps()):
                image.remove_snap(name)

    def fence(self, pointer: Path) -> int:
        """Break the exclusive lock a dead host's QEMU holds (it is blocklisted by the
        cluster): the next QEMU may open the disk. How many locks were broken."""
        disk = read_pointer(pointer)
        rbd = bindings("rbd")
        broken = 0
        with self.ceph.ioctx(disk.pool) as ctx, rbd.Image(ctx, disk.image) as image:
            owners = image.lock_get_owners()
            for owner in owners:
                image.lock_break(owner["mode"], owner["owner"])
                broken += 1
        return broken

    def remove(self, pointer: Path) -> None:
        """Remove the server's clone (and any snapshot of its own); gone already is fine."""
        try:
            disk = read_pointer(pointer)
        except FileNotFoundError:
            return
        rbd = bindings("rbd")
        with self.ceph.ioctx(disk.pool) as ctx:
            for attempt in range(REMOVE_ATTEMPTS):
                try:
                    remove_image(rbd, ctx, disk.image)
                    break
                except rbd.ImageBusy:
                    if attempt == REMOVE_ATTEMPTS - 1:
                        raise DriverError(
                            f"root disk {disk.pool}/{disk.image} is still open by a QEMU; "
                            "stop the server and delete it again"
                        ) from None
                    time.sleep(0.5)
        pointer.unlink(missing_ok=True)

    def used_bytes(self, image_name: str, pool: str | None = None) -> int:
        """Bytes written into one image itself (a clone: not its parent's): diff_iterate."""
        rbd = bindings("rbd")
        total = 0

        def count(_offset: int, length: int, exists: bool) -> None:
            nonlocal total
            if exists:
                total += length

        with (
            self.ceph.ioctx(pool or self.pool) as ctx,
            rbd.Image(ctx, image_name, read_only=True) as im,
        ):
            im.diff_iterate(0, im.size(), None, count, include_parent=False)
        return total


def _format_of(path: Path) -> str:
    from souverain.image.store import qemu_img_info

    return str(qemu_img_info(path).get("format", "raw"))
