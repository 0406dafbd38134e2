"""The volume service: one thin facade over its parts, and what other services call. No HTTP.

The parts, each a module: `volumes` (reading, changing, extending, uploading,
deleting), `creation` (where a new volume's data comes from), `snapshots`,
`attachments` (the steps compute drives), `volume_types`, `quotas`, `transfers`,
`recovery` (start-up), all sharing `state` (the status table and its
compare-and-set). The API calls the parts; compute calls the facade's methods
below, which keep the names and shapes it has always used.

A failed operation leaves the resource in `error` with `error_message` set;
the API shows it through Cinder's user messages (`GET /messages`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.keys import ProjectKeys
from souverain.common.metering import Meter
from souverain.config import VolumeSettings
from souverain.db.engine import Database
from souverain.identity.service import IdentityService
from souverain.volume import schemas, views
from souverain.volume.attachments import Attachments
from souverain.volume.backend import VolumeStore
from souverain.volume.backup_restore import BackupRestore
from souverain.volume.backup_store import BackupObjects, NoObjectStore
from souverain.volume.backups import Backups
from souverain.volume.creation import VolumeCreation
from souverain.volume.encryption import EncryptionTypes
from souverain.volume.quotas import Quotas
from souverain.volume.recovery import Recovery
from souverain.volume.rules import (
    AttachedResizer,
    ServerVolume,
    Shared,
    VolumeHandle,
    VolumeImages,
    WritesHeld,
)
from souverain.volume.snapshots import Snapshots
from souverain.volume.state import VolumeStates
from souverain.volume.transfers import Transfers
from souverain.volume.volume_types import VolumeTypes
from souverain.volume.volumes import Volumes

__all__ = ["ServerVolume", "VolumeHandle", "VolumeService"]


class VolumeService:
    def __init__(
        self,
        db: Database,
        backend: VolumeStore,
        identity: IdentityService,
        images: VolumeImages,
        clock: Clock,
        settings: VolumeSettings,
        backup_objects: BackupObjects | None = None,
        project_keys: ProjectKeys | None = None,
        encryption_mandatory: bool = False,
    ) -> None:
        self.shared = Shared(
            db,
            backend,
            clock,
            settings,
            project_keys=project_keys,
            encryption_mandatory=encryption_mandatory,
        )
        self.db = db
        self.backend = backend
        self.identity = identity  # the API authenticates its callers against it
        self.images = images
        self.clock = clock
        self.settings = settings
        self.states = VolumeStates(self.shared)
        self.quotas = Quotas(self.shared)
        self.types = VolumeTypes(self.shared)
        self.encryption_types = EncryptionTypes(self.shared)
        self.snapshots = Snapshots(self.shared, self.states, self.quotas)
        self.volumes = Volumes(self.shared, self.states, self.quotas, self.snapshots, images)
        self.creation = VolumeCreation(self.shared, self.states, self.quotas, self.types, images)
        self.attachments = Attachments(self.shared, self.states)
        self.transfers = Transfers(self.shared, self.quotas)
        self.recovery = Recovery(self.shared, self.states, self.volumes, self.snapshots)
        # backups are objects in the project's buckets (the object store, set by the server)
        objects: BackupObjects = backup_objects or NoObjectStore()
        self.backups = Backups(self.shared, self.quotas, objects)
        self.restores = BackupRestore(self.shared, self.creation, objects)

    # billable changes are recorded on it (the billing service's, set by the server)
    @property
    def meter(self) -> Meter:
        return self.shared.meter

    @meter.setter
    def meter(self, meter: Meter) -> None:
        self.shared.meter = meter

    # set by the compute service: grow a volume inside the guest it is attached to
    @property
    def attached_resizer(self) -> AttachedResizer | None:
        return self.shared.attached_resizer

    @attached_resizer.setter
    def attached_resizer(self, resizer: AttachedResizer | None) -> None:
        self.shared.attached_resizer = resizer

    # set by the compute service: hold a guest's disk writes while its volume is copied
    @property
    def writes_held(self) -> WritesHeld | None:
        return self.shared.writes_held

    @writes_held.setter
    def writes_held(self, holder: WritesHeld | None) -> None:
        self.shared.writes_held = holder

    # ------------------------------------------------------------------ start and stop

    def set_up(self) -> None:
        """Once per start, before any worker: the default type, and no status left mid-way."""
        self.backend.setup()
        self.types.bootstrap_default()
        self.recovery.recover()
        self.backups.recover()

    def close(self) -> None:
        self.shared.jobs.close()
        self.backend.close()

    # ------------------------------------------------------------------ in-process callers

    def get(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]:
        """The volume as Cinder shows it (without links)."""
        return views.volume_view(
            self.volumes.get(ctx, volume_id), views.Viewer(is_admin=ctx.is_admin)
        )

    def create_volume(self, ctx: RequestContext, body: Mapping[str, Any]) -> dict[str, Any]:
        """A volume from a Cinder create body, as Cinder shows it (without links)."""
        volume_id = self.creation.create(ctx, schemas.volume_create(body))
        return self.get(ctx, volume_id)

    def create_for_boot(
        self, ctx: RequestContext, image_id: str, size_gib: int, volume_type: str | None = None
    ) -> VolumeHandle:
        """Boot from volume: a new bootable volume from an image (of `volume_type`, else the
        default type), synchronously."""
        request = schemas.VolumeCreate(
            size=size_gib,
            source="imageRef",
            source_ref=image_id,
            bootable=True,
            volume_type=volume_type,
        )
        volume_id = self.creation.create(ctx, request)
        record = self.volumes.get(ctx, volume_id)
        if record.row.status != "available":
            message = record.row.error_message or "creation failed"
            raise BadRequest(
                f"Volume {volume_id} could not be created from image {image_id}: {message}"
            )
        return self.handle(volume_id)

    def check_volume_type(self, ctx: RequestContext, type_ref: str) -> None:
        self.types.get(ctx, type_ref)

    def error_message(self, volume_id: str) -> str | None:
        return self.volumes.error_message(volume_id)

    def delete_internal(self, volume_id: str) -> None:
        self.volumes.delete_internal(volume_id)

    # ------------------------------------------------------------------ attachments (compute)

    def handle(self, volume_id: str) -> VolumeHandle:
        return self.attachments.handle(volume_id)

    def reserve(
        self, ctx: RequestContext, volume_id: str, server_id: str, **held: Any
    ) -> VolumeHandle:
        return self.attachments.reserve(ctx, volume_id, server_id, **held)

    def attached(
        self,
        volume_id: str,
        server_id: str,
        device: str,
        attachment_id: str,
        delete_on_termination: bool = False,
    ) -> None:
        self.attachments.attached(
            volume_id, server_id, device, attachment_id, delete_on_termination
        )

    def unreserve(self, volume_id: str) -> None:
        self.attachments.unreserve(volume_id)

    def begin_detach(self, ctx: RequestContext, volume_id: str, server_id: str) -> dict[str, Any]:
        return self.attachments.begin_detach(ctx, volume_id, server_id)

    def detached(self, volume_id: str) -> None:
        self.attachments.detached(volume_id)

    def roll_back_detach(self, volume_id: str) -> None:
        self.attachments.roll_back_detach(volume_id)

    def attachments_of(self, server_id: str) -> list[dict[str, Any]]:
        return self.attachments.attachments_of(server_id)

    def volumes_of_servers(self, server_ids: Sequence[str]) -> dict[str, list[ServerVolume]]:
        return self.attachments.volumes_of_servers(server_ids)
