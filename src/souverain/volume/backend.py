"""Volume files on local disk (placeholder: replaced by the volume service's backend)."""

from __future__ import annotations

from pathlib import Path


class VolumeBackend:
    def __init__(self, root: Path, qemu_img: str = "qemu-img") -> None:
        self.root = root
        self.qemu_img = qemu_img

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
