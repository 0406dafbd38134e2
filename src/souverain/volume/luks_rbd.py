"""Encrypted volumes on RBD: the image holds a bare LUKS container in QEMU's own `luks`
format (what Nova and os-brick call native LUKS on RBD), so every byte an OSD stores past
the header is ciphertext. Made, re-keyed, grown, filled and exported by `qemu-img` through
QEMU's rbd driver (never the `rbd` CLI), the passphrases over pipes (`luks.run_step`).

Sizes: the image is the LUKS header (about 1 MiB) plus the payload, and the payload is the
volume's size, which is what the guest sees; growing goes through the LUKS layer, which
grows the image by the same amount. A snapshot is an RBD snapshot: the same header, the
same key. A volume made from an encrypted snapshot or volume is a copy-on-write clone (or
a librbd copy) whose LUKS keyslot is re-wrapped: the new volume's own key is added, the
source's erased, so the source's key no longer opens it (its data stays under the same
LUKS master key, as Cinder's RBD driver leaves a clone's). A plain source, an image file or
a plain backup is converted into a new LUKS container instead: every block is written. An
encrypted backup holds the container itself (header and ciphertext, as librbd reads the
image): a restore writes it back as it is, under the key clone the caller gives.
This module knows nothing of rows, keys or tenancy, and never logs or raises a passphrase.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from souverain.volume.backend import COPY_TIMEOUT, GIB, QUICK_TIMEOUT, BackendError, _fsync_file
from souverain.volume.luks import (
    ITER_TIME_MS,
    LuksSpec,
    Passphrase,
    Step,
    _source_args,
    run_step,
)
from souverain.volume.rbd_backend import RbdVolumeBackend, _snapshot, _volume


class LuksRbd:
    """LUKS volumes as RBD images of `backend`'s pool; `SealedStore` in ids."""

    container = "luks"

    def __init__(self, backend: RbdVolumeBackend) -> None:
        self.backend = backend

    # -------------------------------------------------------------- making volumes

    def make_blank(
        self, volume_id: str, size_gib: int, spec: LuksSpec, passphrase: Passphrase
    ) -> None:
        """A thin image: the LUKS header written, a payload of `size_gib` GiB."""
        target = self._filename(_volume(volume_id))
        step = Step(
            ["create", "-q", "-f", "luks"],
            (passphrase,),
            ["-o", spec.luks_options("sec0"), target, f"{size_gib}G"],
        )
        # a try that failed after librbd made the image leaves the name taken
        self._run(step, QUICK_TIMEOUT, undo=lambda: self.backend.remove_volume(volume_id))

    def from_snapshot(
        self,
        origin_id: str,
        snapshot_id: str,
        source_key: Passphrase | None,
        volume_id: str,
        size_gib: int,
        spec: LuksSpec,
        passphrase: Passphrase,
    ) -> bool:
        """A copy-on-write clone of an encrypted snapshot, re-keyed (True); a plain one's
        bytes converted into a new container (False)."""
        if source_key is None:
            source = self._opts(_volume(origin_id), None, _snapshot(snapshot_id))
            self._convert_into(volume_id, size_gib, spec, passphrase, source, ())
            return False
        self.backend.clone_snapshot(origin_id, snapshot_id, volume_id)
        self._rekey(volume_id, source_key, passphrase, size_gib)
        return True

    def from_volume(
        self,
        source_id: str,
        source_key: Passphrase | None,
        volume_id: str,
        size_gib: int,
        spec: LuksSpec,
        passphrase: Passphrase,
        shared: bool = False,
    ) -> None:
        """`shared`: the source is attached, its guest's writes held by the caller."""
        if source_key is None:
            source = self._opts(_volume(source_id), None)
            self._convert_into(volume_id, size_gib, spec, passphrase, source, ())
            return
        self.backend.copy_image(source_id, volume_id)
        self._rekey(volume_id, source_key, passphrase, size_gib)

    def from_file(
        self,
        source: Path,
        source_format: str,
        source_key: Passphrase | None,
        volume_id: str,
        size_gib: int,
        spec: LuksSpec,
        passphrase: Passphrase,
    ) -> None:
        """An image file (plain, or LUKS in qcow2 under `source_key`) converted in."""
        if self.backend.files.virtual_size(source, source_format, True) > size_gib * GIB:
            raise BackendError(f"The source does not fit in a volume of {size_gib} GiB.")
        keys = () if source_key is None else (source_key,)
        args = _source_args(source, source_format, source_key is not None)
        self._convert_into(volume_id, size_gib, spec, passphrase, args, keys)

    def take_snapshot(
        self,
        volume_id: str,
        snapshot_id: str,
        size_gib: int,
        spec: LuksSpec,
        passphrase: Passphrase,
        shared: bool = False,
    ) -> None:
        """An RBD snapshot: the header comes along, so the volume's key opens it."""
        self.backend.take_snapshot(volume_id, snapshot_id, size_gib, shared)

    def overwrite(
        self, volume_id: str, raw: Path, size_gib: int, spec: LuksSpec, passphrase: Passphrase
    ) -> None:
        """A restore: a raw file's bytes written through the volume's own LUKS layer."""
        self.grow(volume_id, size_gib, passphrase)
        target = self._opts(_volume(volume_id), "sec0")
        rest = ["-f", "raw", str(raw), "--target-image-opts", target]
        self._run(Step(["convert", "-q", "-n"], (passphrase,), rest), COPY_TIMEOUT)

    # -------------------------------------------------------------- changing, reading

    def grow(self, volume_id: str, size_gib: int, passphrase: Passphrase) -> None:
        """The payload grown to `size_gib` GiB (the image by as much: the header stays)."""
        image = self._opts(_volume(volume_id), "sec0")
        step = Step(["resize", "-q"], (passphrase,), ["--image-opts", image, f"{size_gib}G"])
        self._run(step, QUICK_TIMEOUT)

    def export(self, volume_id: str, key: Passphrase, out: Path, out_key: Passphrase) -> None:
        """A standalone LUKS qcow2 of the volume at `out` under another key (an image's),
        as the file backend makes it."""
        rest = ["--image-opts", self._opts(_volume(volume_id), "sec1"), "-O", "qcow2"]
        rest += ["-o", LuksSpec(512).create_options("sec0"), str(out)]
        try:
            self._run(Step(["convert", "-q"], (out_key, key), rest), COPY_TIMEOUT)
            _fsync_file(out)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            raise

    def ciphertext(self, volume_id: str, snapshot_id: str | None, out: Path) -> None:
        """The image's bytes as librbd reads them (the LUKS container: header, then
        ciphertext), in a sparse raw file: only the extents that hold data are read."""
        if snapshot_id is not None:
            self.backend.export_snapshot(volume_id, snapshot_id, out, "raw")
        else:
            self.backend.export_volume(volume_id, out, out_format="raw")

    def adopt(self, volume_id: str, source: Path, size_gib: int, passphrase: Passphrase) -> None:
        """The image made exactly `source`'s bytes (a backup's container, its header
        opening with `passphrase`), then its payload grown through the LUKS layer."""
        self.backend.replace_bytes(volume_id, source)
        self.grow(volume_id, size_gib, passphrase)

    # -------------------------------------------------------------- plumbing

    def _rekey(self, volume_id: str, old: Passphrase, new: Passphrase, size_gib: int) -> None:
        """The copy's keyslot re-wrapped: `new` added, then `old` erased (opened with
        `new`, so a copy left half-way still opens with one of the two), then grown."""
        image = self._opts(_volume(volume_id), "sec0")
        add = f"state=active,new-secret=sec1,iter-time={ITER_TIME_MS}"
        self._run(
            Step(["amend", "-q"], (old, new), ["--image-opts", image, "-o", add]), QUICK_TIMEOUT
        )
        erase = "state=inactive,old-secret=sec1"
        self._run(
            Step(["amend", "-q"], (new, old), ["--image-opts", image, "-o", erase]), QUICK_TIMEOUT
        )
        self.grow(volume_id, size_gib, new)

    def _convert_into(
        self,
        volume_id: str,
        size_gib: int,
        spec: LuksSpec,
        passphrase: Passphrase,
        source: list[str] | str,
        source_keys: tuple[Passphrase, ...],
    ) -> None:
        """A new container under `passphrase`, every block of `source` written into it
        (its keys, if any, read as `sec1`...)."""
        self.make_blank(volume_id, size_gib, spec, passphrase)
        args = ["--image-opts", source] if isinstance(source, str) else source
        rest = [*args, "--target-image-opts", self._opts(_volume(volume_id), "sec0")]
        step = Step(["convert", "-q", "-n"], (passphrase, *source_keys), rest)
        self._run(step, COPY_TIMEOUT)

    def _opts(self, image: str, key_secret: str | None, snapshot: str | None = None) -> str:
        """`--image-opts` of the image (at `snapshot`, read-only): LUKS under the secret
        `key_secret`, or raw when None."""
        access = self.backend.connection.access
        _plain(self.backend.pool, access.user, str(access.conf))
        head = "driver=raw" if key_secret is None else f"driver=luks,key-secret={key_secret}"
        opts = (
            f"{head},file.driver=rbd,file.pool={self.backend.pool},file.image={image},"
            f"file.conf={access.conf},file.user={access.user}"
        )
        return opts if snapshot is None else f"{opts},file.snapshot={snapshot},read-only=on"

    def _filename(self, image: str) -> str:
        """QEMU's `rbd:` file name of a new image (what `qemu-img create` takes)."""
        access = self.backend.connection.access
        _plain(self.backend.pool, access.user, str(access.conf))
        return f"rbd:{self.backend.pool}/{image}:conf={access.conf}:id={access.user}"

    def _run(self, step: Step, timeout: float, undo: Callable[[], None] | None = None) -> None:
        run_step(self.backend.files.qemu_img, step, timeout, undo)


def _plain(*values: str) -> None:
    """QEMU's option and file name syntax gives ',' ':' '@' '=' a meaning: settings that
    hold one are refused rather than escaped."""
    if any(c in value for value in values for c in ",:@="):
        raise BackendError(
            "volume.rbd_pool, ceph.user and ceph.conf_file cannot hold ',', ':', '@' or '=' "
            "for encrypted volumes."
        )
