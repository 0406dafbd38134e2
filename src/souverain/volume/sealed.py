"""Encrypted volumes' bytes in ids, on whichever backend holds them: the `SealedStore`
protocol the volume rooms call, its file implementation over `luks.LuksFiles` (LUKS in
qcow2 files) and the choice between it and `luks_rbd.LuksRbd` (LUKS in RBD images).

It mirrors `backend.VolumeStore` for encrypted volumes: every call gets the passphrases it
needs (the new volume's, and the source's when the source is encrypted), never looks a key
up itself, and knows nothing of rows or tenancy.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from souverain.volume.backend import VolumeBackend, VolumeStore
from souverain.volume.luks import LuksFiles, LuksSpec, Passphrase
from souverain.volume.luks_rbd import LuksRbd
from souverain.volume.rbd_backend import RbdVolumeBackend


class SealedStore(Protocol):
    """LUKS volumes and snapshots, in ids."""

    # what a backup of the ciphertext holds: a LUKS "qcow2" file, or a bare "luks" container
    container: str

    def make_blank(
        self, volume_id: str, size_gib: int, spec: LuksSpec, passphrase: Passphrase
    ) -> None: ...
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
        """True when the new volume is a copy-on-write clone of the snapshot."""
        ...

    def from_volume(
        self,
        source_id: str,
        source_key: Passphrase | None,
        volume_id: str,
        size_gib: int,
        spec: LuksSpec,
        passphrase: Passphrase,
        shared: bool = False,
    ) -> None: ...
    def from_file(
        self,
        source: Path,
        source_format: str,
        source_key: Passphrase | None,
        volume_id: str,
        size_gib: int,
        spec: LuksSpec,
        passphrase: Passphrase,
    ) -> None: ...
    def take_snapshot(
        self,
        volume_id: str,
        snapshot_id: str,
        size_gib: int,
        spec: LuksSpec,
        passphrase: Passphrase,
        shared: bool = False,
    ) -> None: ...
    def overwrite(
        self, volume_id: str, raw: Path, size_gib: int, spec: LuksSpec, passphrase: Passphrase
    ) -> None: ...
    def grow(self, volume_id: str, size_gib: int, passphrase: Passphrase) -> None: ...
    def export(self, volume_id: str, key: Passphrase, out: Path, out_key: Passphrase) -> None: ...
    def ciphertext(self, volume_id: str, snapshot_id: str | None, out: Path) -> None:
        """The volume's (or its snapshot's) stored bytes at `out`, header and all, nothing
        decrypted (a backup's); the caller holds an attached volume's guest writes."""
        ...

    def adopt(self, volume_id: str, source: Path, size_gib: int, passphrase: Passphrase) -> None:
        """`source` (a restored backup's ciphertext, taken) made the volume's bytes, grown
        to `size_gib` under the passphrase its header opens with."""
        ...


def sealed_store(backend: VolumeStore) -> SealedStore | None:
    """The backend's encrypted volumes; None when it has none."""
    if isinstance(backend, VolumeBackend):
        return SealedFiles(LuksFiles(backend))
    if isinstance(backend, RbdVolumeBackend):
        return LuksRbd(backend)
    return None


class SealedFiles:
    """LUKS-in-qcow2 files: every new volume a full copy under its own key."""

    container = "qcow2"

    def __init__(self, luks: LuksFiles) -> None:
        self.luks = luks
        self.paths = luks.files

    def make_blank(
        self, volume_id: str, size_gib: int, spec: LuksSpec, passphrase: Passphrase
    ) -> None:
        self.luks.make_blank(volume_id, size_gib, spec, passphrase)

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
        source = self.paths.snapshot_path(snapshot_id)
        final = self.paths.volume_path(volume_id)
        self.luks.copy(source, "qcow2", source_key, final, size_gib, spec, passphrase)
        return False

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
        source, final = self.paths.volume_path(source_id), self.paths.volume_path(volume_id)
        self.luks.copy(source, "qcow2", source_key, final, size_gib, spec, passphrase, shared)

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
        final = self.paths.volume_path(volume_id)
        self.luks.copy(source, source_format, source_key, final, size_gib, spec, passphrase)

    def take_snapshot(
        self,
        volume_id: str,
        snapshot_id: str,
        size_gib: int,
        spec: LuksSpec,
        passphrase: Passphrase,
        shared: bool = False,
    ) -> None:
        source = self.paths.volume_path(volume_id)
        final = self.paths.snapshot_path(snapshot_id)
        if not shared:  # nothing writes to it: its bytes, header and all
            self.luks.duplicate(source, final)
            return
        self.luks.copy(source, "qcow2", passphrase, final, size_gib, spec, passphrase, True)

    def overwrite(
        self, volume_id: str, raw: Path, size_gib: int, spec: LuksSpec, passphrase: Passphrase
    ) -> None:
        final = self.paths.volume_path(volume_id)
        self.luks.copy(raw, "raw", None, final, size_gib, spec, passphrase)

    def grow(self, volume_id: str, size_gib: int, passphrase: Passphrase) -> None:
        self.luks.grow(self.paths.volume_path(volume_id), size_gib, passphrase)

    def export(self, volume_id: str, key: Passphrase, out: Path, out_key: Passphrase) -> None:
        self.luks.export(self.paths.volume_path(volume_id), key, out, out_key)

    def ciphertext(self, volume_id: str, snapshot_id: str | None, out: Path) -> None:
        if snapshot_id is not None:
            shutil.copyfile(self.paths.snapshot_path(snapshot_id), out)
        else:
            shutil.copyfile(self.paths.volume_path(volume_id), out)

    def adopt(self, volume_id: str, source: Path, size_gib: int, passphrase: Passphrase) -> None:
        self.luks.adopt(source, self.paths.volume_path(volume_id), size_gib, passphrase)
