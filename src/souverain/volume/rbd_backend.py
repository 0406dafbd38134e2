"""Volume and snapshot bytes as RBD images in one pool of the [ceph] cluster, through
librbd (Ceph's `rbd` Python binding; never the `rbd` CLI).

A volume is the image `volume-<id>` of exactly its size in GiB; a snapshot is the RBD
snapshot `snapshot-<id>` inside its volume's image. A volume from a snapshot is a
copy-on-write clone of it (the snapshot protected first), a volume from an image on RBD a
clone of the image's protected snapshot, a volume from a volume a full copy. A snapshot
with clones is refused on delete ("dependent volumes"), as Cinder's RBD driver does; a
volume deleted with its snapshots (cascade) flattens their clones first, so no other
volume breaks. `volume.rbd_flatten_clones` flattens every clone after creation, in the
background. Guests read and write the images through QEMU's own rbd driver: no guest I/O
passes through this process. Image files (qcow2, vmdk...) are converted to raw with
qemu-img into a temporary file, then streamed into the image, zero blocks skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from souverain.common.ceph import (
    CephConnection,
    RbdRef,
    StorageUnavailable,
    bindings,
    translated,
)
from souverain.volume.backend import GIB, BackendError, VolumeBackend, VolumeLocation

CHUNK = 4 * 1024 * 1024  # the default RBD object size: one object per write
SWEEP_GRACE = 600.0  # seconds an image without a row is left alone (a create under way)
_VOLUME = re.compile(r"^volume-([0-9a-f-]{36})$")
_SNAPSHOT = re.compile(r"^snapshot-([0-9a-f-]{36})$")


class RbdVolumeBackend:
    kind = "rbd"

    def __init__(
        self,
        connection: CephConnection,
        pool: str,
        scratch: Path,
        qemu_img: str = "qemu-img",
        sweep_grace: float = SWEEP_GRACE,
    ) -> None:
        self.connection = connection
        self.pool = pool
        self.files = VolumeBackend(scratch, qemu_img)  # temporary files and qemu-img
        self.sweep_grace = sweep_grace

    # -------------------------------------------------------------- start

    def setup(self) -> None:
        """The scratch folder, and the pool (made with application rbd when missing)."""
        self.files.setup()
        rados = bindings("rados")
        with translated():
            cluster = self.connection.rados()
            if not cluster.pool_exists(self.pool):
                try:
                    cluster.create_pool(self.pool)
                except rados.Error as exc:
                    raise RuntimeError(
                        f"volume.rbd_pool {self.pool!r} does not exist and could not be made "
                        f"({type(exc).__name__}: {exc}): create it (`ceph osd pool create "
                        f"{self.pool}` then `rbd pool init {self.pool}`) or give the cephx "
                        "user the right to create pools"
                    ) from None
            with self.connection.ioctx(self.pool) as ctx:
                if "rbd" not in ctx.application_list():
                    ctx.application_enable("rbd")

    def close(self) -> None:
        """Nothing to let go: the cluster handle is the process's, shared with the other
        services' Ceph backends (`connection_from`), and lives as long as the process."""

    # -------------------------------------------------------------- making volumes

    def temp_path(self, suffix: str = ".qcow2") -> Path:
        return self.files.temp_path(suffix)

    def make_blank(self, volume_id: str, size_gib: int) -> None:
        with self._ops("create"), self.connection.ioctx(self.pool) as ctx:
            self._rbd().RBD().create(ctx, _volume(volume_id), size_gib * GIB, old_format=False)

    def clone_volume(
        self, source_id: str, volume_id: str, size_gib: int, shared: bool = False
    ) -> None:
        """A full copy (the source stays independent of it); `shared`: the source is
        attached, its guest's writes held by the caller."""
        with self._ops("copy"), self.connection.ioctx(self.pool) as ctx:
            with self._image(ctx, _volume(source_id), read_only=True) as src:
                if src.size() > size_gib * GIB:
                    raise BackendError(f"The source does not fit in a volume of {size_gib} GiB.")
            self.copy_image(source_id, volume_id)
            self._grow_to(ctx, volume_id, size_gib)

    def copy_image(self, source_id: str, volume_id: str) -> None:
        """The source's image copied byte for byte, its size kept (an encrypted volume's
        LUKS header and all: `luks_rbd` then sizes it)."""
        with (
            self._opened("copy", source_id, read_only=True) as src,
            self.connection.ioctx(self.pool) as ctx,
        ):
            src.copy(ctx, _volume(volume_id))

    def from_snapshot(
        self, origin_id: str, snapshot_id: str, volume_id: str, size_gib: int
    ) -> None:
        """A copy-on-write clone of the snapshot, grown to `size_gib`."""
        self.clone_snapshot(origin_id, snapshot_id, volume_id)
        with self._ops("clone"), self.connection.ioctx(self.pool) as ctx:
            self._grow_to(ctx, volume_id, size_gib)

    def clone_snapshot(self, origin_id: str, snapshot_id: str, volume_id: str) -> None:
        """A copy-on-write clone of the snapshot (protected first, as clones need), its
        size kept."""
        snap = _snapshot(snapshot_id)
        with self._ops("clone"), self.connection.ioctx(self.pool) as ctx:
            with self._image(ctx, _volume(origin_id)) as origin:
                if not origin.is_protected_snap(snap):
                    origin.protect_snap(snap)
            self._rbd().RBD().clone(ctx, _volume(origin_id), snap, ctx, _volume(volume_id))

    def from_image_ref(self, ref: RbdRef, volume_id: str, size_gib: int) -> bool:
        """A clone of an image's protected snapshot; False (nothing made) when the image
        has none to clone, so the caller copies the image's file."""
        if ref.snapshot is None:
            return False
        rbd = self._rbd()
        with self._ops("clone of the image"), self.connection.ioctx(self.pool) as ctx:
            with self.connection.ioctx(ref.pool) as parent:
                try:
                    rbd.RBD().clone(parent, ref.image, ref.snapshot, ctx, _volume(volume_id))
                except (rbd.ImageNotFound, rbd.InvalidArgument):
                    return False
            with self._image(ctx, _volume(volume_id)) as image:
                if image.size() > size_gib * GIB:
                    raise BackendError(f"The image does not fit in a volume of {size_gib} GiB.")
            self._grow_to(ctx, volume_id, size_gib)
        return True

    def from_file(self, source: Path, source_format: str, volume_id: str, size_gib: int) -> None:
        """An image file (any format qemu-img reads) streamed into a new RBD image."""
        with self._raw(source, source_format) as raw:
            if raw.stat().st_size > size_gib * GIB:
                raise BackendError(f"The source does not fit in a volume of {size_gib} GiB.")
            self.make_blank(volume_id, size_gib)
            with self._opened("import", volume_id) as image:
                _stream_in(raw, image, zero_fill=False)

    def overwrite(self, volume_id: str, raw: Path, size_gib: int) -> None:
        """A restore: the image's bytes replaced in place (its snapshots keep theirs)."""
        with self._ops("restore"), self.connection.ioctx(self.pool) as ctx:
            self._grow_to(ctx, volume_id, size_gib)
            with self._image(ctx, _volume(volume_id)) as image:
                _stream_in(raw, image, zero_fill=True)

    def replace_bytes(self, volume_id: str, raw: Path) -> None:
        """The image made exactly `raw`: resized to its length (shrunk too: the bytes past
        it are dropped) and overwritten, zero chunks zeroed (its snapshots keep theirs)."""
        with self._opened("restore", volume_id) as image:
            image.resize(raw.stat().st_size)
            _stream_in(raw, image, zero_fill=True)

    def take_snapshot(
        self, volume_id: str, snapshot_id: str, size_gib: int, shared: bool = False
    ) -> None:
        with self._opened("snapshot", volume_id) as image:
            image.create_snap(_snapshot(snapshot_id))

    # -------------------------------------------------------------- reading

    def export_volume(
        self, volume_id: str, out: Path, out_format: str = "qcow2", shared: bool = False
    ) -> None:
        self._export(volume_id, None, out, out_format)

    def export_snapshot(
        self, volume_id: str, snapshot_id: str, out: Path, out_format: str = "raw"
    ) -> None:
        self._export(volume_id, _snapshot(snapshot_id), out, out_format)

    def _export(self, volume_id: str, snap: str | None, out: Path, out_format: str) -> None:
        raw = out if out_format == "raw" else self.files.temp_path(".raw")
        try:
            with self._opened("export", volume_id, snap, read_only=True) as image:
                _stream_out(image, raw)
            if raw != out:
                self.files.from_raw(raw, out, out_format)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            raise
        finally:
            if raw != out:
                with contextlib.suppress(FileNotFoundError):
                    raw.unlink()

    def volume_bytes(self, volume_id: str) -> int:
        with self._opened("size", volume_id, read_only=True) as image:
            return int(image.size())

    def used_bytes(self, volume_id: str) -> int:
        """Bytes the image itself holds (its parent's excluded): what `rbd du` tells."""
        used = 0

        def count(offset: int, length: int, exists: bool) -> None:
            nonlocal used
            used += length if exists else 0

        with self._opened("usage", volume_id, read_only=True) as image:
            image.diff_iterate(0, image.size(), None, count, include_parent=False)
        return used

    def location(self, volume_id: str) -> VolumeLocation:
        return VolumeLocation(
            format="raw",
            rbd=RbdRef(self.pool, _volume(volume_id)),
            ceph=self.connection.access,
        )

    def capacity(self) -> tuple[int, int]:
        with self._ops("capacity"):
            stats = self.connection.rados().get_cluster_stats()
        return int(stats["kb"]) * 1024, int(stats["kb_avail"]) * 1024

    # -------------------------------------------------------------- changing, removing

    def grow(self, volume_id: str, size_gib: int) -> None:
        with self._ops("resize"), self.connection.ioctx(self.pool) as ctx:
            self._grow_to(ctx, volume_id, size_gib)

    def flatten(self, volume_id: str) -> None:
        """The clone's parent data copied in: the volume depends on nothing any more."""
        rbd = self._rbd()
        with self._ops("flatten"), self.connection.ioctx(self.pool) as ctx:
            try:
                with self._image(ctx, _volume(volume_id)) as image:
                    image.flatten()
            except (rbd.ImageNotFound, rbd.InvalidArgument):  # gone, or not a clone
                return

    def snapshot_dependents(self, volume_id: str, snapshot_id: str) -> int:
        rbd = self._rbd()
        with self._ops("lookup"), self.connection.ioctx(self.pool) as ctx:
            try:
                with self._image(ctx, _volume(volume_id), _snapshot(snapshot_id)) as snap:
                    return len(snap.list_children())
            except rbd.ImageNotFound:
                return 0

    def remove_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        with self._ops("snapshot delete"), self.connection.ioctx(self.pool) as ctx:
            rbd = self._rbd()
            try:
                with self._image(ctx, _volume(volume_id)) as image:
                    self._drop_snapshot(image, _snapshot(snapshot_id))
            except rbd.ImageNotFound:
                return

    def remove_volume(self, volume_id: str) -> None:
        """The image and whatever snapshots it still has (their clones flattened first)."""
        rbd = self._rbd()
        with self._ops("delete"), self.connection.ioctx(self.pool) as ctx:
            try:
                with self._image(ctx, _volume(volume_id)) as image:
                    for snap in list(image.list_snaps()):
                        self._drop_snapshot(image, str(snap["name"]))
                rbd.RBD().remove(ctx, _volume(volume_id))
            except rbd.ImageNotFound:
                return
            except rbd.ImageBusy:
                raise BackendError(
                    "The volume is still open (a guest or a flatten holds it); try again "
                    "once it is detached."
                ) from None

    def sweep_unknown(self, volumes: set[str], snapshots: set[str]) -> int:
        """Images no row names (older than the grace period, so a create under way in
        another process is spared), snapshots no row names, interrupted temporary files."""
        removed = _clear(self.files.tmp)
        with self._ops("sweep"), self.connection.ioctx(self.pool) as ctx:
            for name in self._rbd().RBD().list(ctx):
                found = _VOLUME.match(name)
                if found is None:
                    continue
                if found.group(1) not in volumes:
                    if self._older_than_grace(ctx, name):
                        self.remove_volume(found.group(1))
                        removed += 1
                    continue
                removed += self._sweep_snapshots(ctx, name, snapshots)
        return removed

    # -------------------------------------------------------------- plumbing

    def _sweep_snapshots(self, ctx: Any, name: str, snapshots: set[str]) -> int:
        removed = 0
        with self._image(ctx, name) as image:
            for snap in list(image.list_snaps()):
                found = _SNAPSHOT.match(str(snap["name"]))
                if found is not None and found.group(1) not in snapshots:
                    self._drop_snapshot(image, str(snap["name"]))
                    removed += 1
        return removed

    def _older_than_grace(self, ctx: Any, name: str) -> bool:
        with self._image(ctx, name, read_only=True) as image:
            created = image.create_timestamp()
        return bool(time.time() - created.timestamp() > self.sweep_grace)

    def _drop_snapshot(self, image: Any, snap: str) -> None:
        """Flatten the snapshot's clones, unprotect it, remove it."""
        if not image.snap_exists(snap):
            return
        image.set_snap(snap)
        try:
            children = list(image.list_children())
        finally:
            image.set_snap(None)
        for pool, child in children:
            with self.connection.ioctx(pool) as child_ctx, self._image(child_ctx, child) as c:
                c.flatten()
        if image.is_protected_snap(snap):
            image.unprotect_snap(snap)
        image.remove_snap(snap)

    def _grow_to(self, ctx: Any, volume_id: str, size_gib: int) -> None:
        with self._image(ctx, _volume(volume_id)) as image:
            size = int(image.size())
            if size > size_gib * GIB:
                raise BackendError(f"The volume is {size} bytes; it can grow but not shrink.")
            if size < size_gib * GIB:
                image.resize(size_gib * GIB)

    @contextlib.contextmanager
    def _image(
        self, ctx: Any, name: str, snapshot: str | None = None, read_only: bool = False
    ) -> Iterator[Any]:
        image = self._rbd().Image(ctx, name, snapshot=snapshot, read_only=read_only)
        try:
            yield image
        finally:
            image.close()

    @contextlib.contextmanager
    def _opened(
        self, what: str, volume_id: str, snapshot: str | None = None, read_only: bool = False
    ) -> Iterator[Any]:
        """The volume's image (at `snapshot`), errors translated as `_ops` says."""
        with (
            self._ops(what),
            self.connection.ioctx(self.pool) as ctx,
            self._image(ctx, _volume(volume_id), snapshot, read_only) as image,
        ):
            yield image

    @contextlib.contextmanager
    def _raw(self, source: Path, source_format: str) -> Iterator[Path]:
        """`source` as a raw file: itself when raw, else a temporary conversion."""
        if source_format == "raw":
            yield source
            return
        raw = self.files.temp_path(".raw")
        try:
            self.files.to_raw(source, source_format, raw)
            yield raw
        finally:
            with contextlib.suppress(FileNotFoundError):
                raw.unlink()

    @contextlib.contextmanager
    def _ops(self, what: str) -> Iterator[None]:
        """librbd and librados errors as `BackendError` (a message fit for a user),
        "not now" ones as `StorageUnavailable` (503)."""
        try:
            with translated():
                yield
        except (StorageUnavailable, BackendError):
            raise
        except Exception as exc:
            if type(exc).__module__ not in ("rbd", "rados"):
                raise
            raise BackendError(f"RBD {what} failed ({type(exc).__name__}).") from exc

    @staticmethod
    def _rbd() -> Any:
        return bindings("rbd")


def _volume(volume_id: str) -> str:
    return f"volume-{_checked(volume_id)}"


def _snapshot(snapshot_id: str) -> str:
    return f"snapshot-{_checked(snapshot_id)}"


def _checked(resource_id: str) -> str:
    if not re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", resource_id
    ):
        raise ValueError("not a volume or snapshot id")
    return resource_id


def _stream_in(raw: Path, image: Any, zero_fill: bool) -> None:
    """`raw` written into `image` from offset 0; all-zero chunks skipped (a new image
    reads zeros there) or, over old data, written as zeros without sending them."""
    zeros = bytes(CHUNK)
    offset = 0
    with open(raw, "rb") as f:
        while chunk := f.read(CHUNK):
            if chunk != zeros[: len(chunk)]:
                image.write(chunk, offset)
            elif zero_fill:
                image.write_zeroes(offset, len(chunk))
            offset += len(chunk)
    image.flush()


def _stream_out(image: Any, out: Path) -> None:
    """The image (or snapshot) read into a sparse raw file at `out`, fsynced: only the
    extents that hold data (its parent's included) are read, zero blocks not written."""
    size = int(image.size())
    extents: list[tuple[int, int]] = []

    def found(offset: int, length: int, exists: bool) -> None:
        if exists:
            extents.append((offset, length))

    image.diff_iterate(0, size, None, found, include_parent=True, whole_object=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        for start, length in extents:
            for offset in range(start, start + length, CHUNK):
                chunk = image.read(offset, min(CHUNK, start + length - offset))
                if chunk.count(0) != len(chunk):
                    os.pwrite(fd, chunk, offset)
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _clear(folder: Path) -> int:
    removed = 0
    for entry in os.scandir(folder):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
        removed += 1
    return removed
