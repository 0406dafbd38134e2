"""Volume rules (placeholder: replaced by the volume service)."""

from __future__ import annotations

from collections.abc import Callable

from souverain.common.clock import Clock
from souverain.config import VolumeSettings
from souverain.db.engine import Database
from souverain.identity.service import IdentityService
from souverain.image.service import ImageService
from souverain.volume.backend import VolumeBackend


class VolumeService:
    def __init__(
        self,
        db: Database,
        backend: VolumeBackend,
        identity: IdentityService,
        images: ImageService,
        clock: Clock,
        settings: VolumeSettings,
    ) -> None:
        self.db = db
        self.backend = backend
        self.identity = identity
        self.images = images
        self.clock = clock
        self.settings = settings
        # set by the compute service: grow a volume inside the guest it is attached to
        self.attached_resizer: Callable[[str, str, int], None] | None = None

    def set_up(self) -> None:
        self.backend.setup()

    def close(self) -> None:
        return None
