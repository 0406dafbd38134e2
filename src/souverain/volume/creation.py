"""Making a volume: where its data comes from (blank, a snapshot, a volume, an image),
the quota claim and row in one transaction, then the file. No HTTP.

The row is inserted `creating` (`downloading` from an image) before the file is
written; the volume ends `available`, or `error` with a message a customer can
act on. A crash in between leaves the transitional status, which recovery turns
into `error` at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from souverain.common.ceph import RbdRef
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden
from souverain.common.keys import IMAGE_KEY_PROPERTY
from souverain.volume import models as m
from souverain.volume.backend import GIB, SOURCE_FORMATS
from souverain.volume.encryption import VolumeKeys
from souverain.volume.luks import LuksSpec
from souverain.volume.quotas import Quotas
from souverain.volume.rules import (
    AVAILABILITY_ZONE,
    Shared,
    VolumeImages,
    copy_failure,
    guest_writes_held,
    visible_snapshot,
    visible_volume,
)
from souverain.volume.schemas import VolumeCreate, within_limit
from souverain.volume.state import VolumeStates
from souverain.volume.volume_types import VolumeTypes

log = logging.getLogger("souverain.volume")


@dataclass(frozen=True)
class SourcePlan:
    """Where a new volume's data comes from, already checked, and its size."""

    size: int
    bootable: bool = False
    source: Path | None = None  # an image's file
    source_format: str = "qcow2"
    image_rbd: RbdRef | None = None  # the image's protected snapshot when images are on RBD
    origin_id: str | None = None  # the volume a source snapshot was taken of
    attached_to: str | None = None  # the server a source volume is attached to
    image_id: str | None = None
    image_metadata: dict[str, str] | None = None
    snapshot_id: str | None = None
    source_volid: str | None = None
    # an encrypted source: whose key, which one (the data is re-encrypted under a new key)
    source_key: tuple[str, str] | None = None
    source_type_id: str | None = None  # an encrypted source's type, the default for the copy


@dataclass(frozen=True)
class Sealing:
    """A new encrypted volume's LUKS: how, and the key made for it (owned by `project_id`)."""

    spec: LuksSpec
    project_id: str
    key_id: str


class VolumeCreation:
    def __init__(
        self,
        shared: Shared,
        states: VolumeStates,
        quotas: Quotas,
        types: VolumeTypes,
        images: VolumeImages,
    ) -> None:
        self.shared = shared
        self.states = states
        self.quotas = quotas
        self.types = types
        self.images = images
        self.keys = VolumeKeys(shared)

    def create(self, ctx: RequestContext, req: VolumeCreate) -> str:
        """Claim quota and insert the row, make the file; the new volume's id."""
        if not ctx.project_id:
            raise Forbidden("Volumes belong to projects: use a project-scoped token.")
        plan = self.plan_source(ctx, req)
        bootable = plan.bootable if req.bootable is None else req.bootable
        volume_id = str(uuid.uuid4())
        type_ref = req.volume_type or plan.source_type_id or self.shared.settings.default_type
        sealing = self._sealing(ctx, ctx.project_id, type_ref, plan, volume_id)
        try:
            self._insert(ctx, req, plan, volume_id, type_ref, bootable, sealing)
        except BaseException:
            if sealing is not None:
                self.keys.forget(sealing.project_id, sealing.key_id, volume_id)
            raise
        self.shared.meter.gauge(ctx.project_id, "volume.gb", volume_id, plan.size)
        self.fill(volume_id, plan, sealing)
        return volume_id

    def _sealing(
        self, ctx: RequestContext, project_id: str, type_ref: str, plan: SourcePlan, volume_id: str
    ) -> Sealing | None:
        """The new volume's encryption and its new key, or None for a plain volume. Made
        before the row: the key manager is not called inside the volume's transaction."""
        with self.shared.db.session() as s:
            vtype = self.types.usable(s, ctx, type_ref)
            spec = self.keys.spec_for(s, vtype.id)
        if spec is None:
            if plan.source_key is not None:
                raise BadRequest(
                    "Invalid input received: the source is encrypted; a volume made from it "
                    "is encrypted too, so its volume type must be an encrypted one."
                )
            return None
        self.keys.ready()
        key_id = self.keys.new_volume_key(project_id, ctx.user_id, volume_id)
        return Sealing(spec=spec, project_id=project_id, key_id=key_id)

    def _insert(
        self,
        ctx: RequestContext,
        req: VolumeCreate,
        plan: SourcePlan,
        volume_id: str,
        type_ref: str,
        bootable: bool,
        sealing: Sealing | None,
    ) -> None:
        assert ctx.project_id is not None
        now = self.shared.clock.now()
        with self.shared.db.session() as s:
            vtype = self.types.usable(s, ctx, type_ref)
            self.quotas.lock(s, ctx.project_id)
            self.quotas.check_volume_size(s, ctx.project_id, plan.size)
            self.quotas.claim(s, ctx.project_id, volumes=1, gigabytes=plan.size)
            s.add(
                m.Volume(
                    id=volume_id,
                    project_id=ctx.project_id,
                    user_id=ctx.user_id,
                    name=req.name,
                    description=req.description,
                    size=plan.size,
                    status="downloading" if plan.image_id else "creating",
                    volume_type_id=vtype.id,
                    availability_zone=AVAILABILITY_ZONE,
                    bootable=bootable,
                    readonly=False,
                    meta=dict(req.metadata),
                    image_metadata=plan.image_metadata,
                    snapshot_id=plan.snapshot_id,
                    source_volid=plan.source_volid,
                    attach_seq=0,
                    delete_on_termination=False,
                    encryption_key_id=sealing.key_id if sealing else None,
                    created_at=now,
                    updated_at=now,
                )
            )

    def plan_source(self, ctx: RequestContext, req: VolumeCreate) -> SourcePlan:
        """Where the new volume's data comes from, checked, and its size."""
        if req.source is None:
            assert req.size is not None  # the schema requires a size without a source
            return SourcePlan(size=self._sized(req.size))
        if req.source == "snapshot_id":
            with self.shared.db.session() as s:
                return self._from_snapshot(s, ctx, req)
        if req.source == "source_volid":
            with self.shared.db.session() as s:
                return self._from_volume(s, ctx, req)
        return self._from_image(ctx, req)

    def _sized(self, size: int) -> int:
        return within_limit("size", size, self.shared.settings.max_volume_gib)

    def _from_snapshot(self, s: Session, ctx: RequestContext, req: VolumeCreate) -> SourcePlan:
        ref = req.source_ref
        snap = visible_snapshot(s, ctx, ref)
        if snap.status != "available":
            raise BadRequest(
                f"Invalid snapshot: Snapshot {ref} is {snap.status}; it must be available."
            )
        origin = s.get(m.Volume, snap.volume_id)
        size = snap.size if req.size is None else self._sized(req.size)
        if size < snap.size:
            raise BadRequest(
                f"Invalid input received: Volume size '{size}'GB cannot be smaller than "
                f"the snapshot size {snap.size}GB. They must be >= original snapshot size."
            )
        return SourcePlan(
            size=size,
            bootable=bool(origin and origin.bootable),
            origin_id=snap.volume_id,
            image_metadata=origin.image_metadata if origin else None,
            snapshot_id=snap.id,
            source_key=(snap.project_id, snap.encryption_key_id)
            if snap.encryption_key_id
            else None,
            source_type_id=origin.volume_type_id if origin and snap.encryption_key_id else None,
        )

    def _from_volume(self, s: Session, ctx: RequestContext, req: VolumeCreate) -> SourcePlan:
        ref = req.source_ref
        src = visible_volume(s, ctx, ref)
        if src.status not in ("available", "in-use"):
            raise BadRequest(
                f"Invalid volume: Volume {ref} is {src.status}; it must be available "
                "or in-use to clone."
            )
        size = src.size if req.size is None else self._sized(req.size)
        if size < src.size:
            raise BadRequest(
                f"Invalid input received: Volume size '{size}'GB cannot be smaller than "
                f"the source volume size {src.size}GB."
            )
        return SourcePlan(
            size=size,
            bootable=src.bootable,
            attached_to=src.server_id if src.status == "in-use" else None,
            image_metadata=src.image_metadata,
            source_volid=src.id,
            source_key=(src.project_id, src.encryption_key_id) if src.encryption_key_id else None,
            source_type_id=src.volume_type_id if src.encryption_key_id else None,
        )

    def _from_image(self, ctx: RequestContext, req: VolumeCreate) -> SourcePlan:
        ref = req.source_ref
        image = self.images.image_for_boot(ctx, ref)
        fmt = SOURCE_FORMATS.get(image.disk_format)
        if fmt is None:
            raise BadRequest(
                f"Image {ref} has disk_format {image.disk_format}; a volume cannot hold it."
            )
        needed = max(image.min_disk, -(-(image.virtual_size or image.size) // GIB), 1)
        size = needed if req.size is None else self._sized(req.size)
        if size < needed:
            raise BadRequest(
                f"Invalid input received: Image virtual size is {needed}GB and doesn't fit in a "
                f"volume of size {size}GB."
            )
        metadata = {
            "image_id": image.id,
            "image_name": image.name,
            "disk_format": image.disk_format,
            "container_format": image.container_format,
            "min_disk": str(image.min_disk),
            "min_ram": str(image.min_ram),
            "size": str(image.size),
            **{k: v for k, v in image.properties.items() if isinstance(v, str)},
        }
        key_id = image.properties.get(IMAGE_KEY_PROPERTY)
        return SourcePlan(
            size=size,
            bootable=True,
            source_key=(ctx.project_id or "", key_id) if isinstance(key_id, str) else None,
            source=image.path,
            source_format=fmt,
            image_rbd=image.rbd,
            image_id=image.id,
            image_metadata=metadata,
        )

    def fill(self, volume_id: str, plan: SourcePlan, sealing: Sealing | None = None) -> None:
        """Make the volume's bytes; the volume ends available, or error with a message."""
        backend = self.shared.backend
        try:
            if sealing is not None:
                cloned = self._write_sealed(volume_id, plan, sealing)
            else:
                cloned = self._write(volume_id, plan)
        except Exception as exc:  # the compute service's errors too: the volume ends
            log.warning("volume %s could not be created: %s", volume_id, exc)
            with contextlib.suppress(Exception):
                backend.remove_volume(volume_id)
            self.states.move(
                volume_id, "create_failed", error_message=f"Creation failed: {copy_failure(exc)}"
            )
            return
        if not self.states.move(volume_id, "created", error_message=None):  # deleted meanwhile
            log.info("volume %s changed while its data was written", volume_id)
        elif cloned and self.shared.settings.rbd_flatten_clones:
            self.shared.jobs.submit(backend.flatten, volume_id)

    def _write_sealed(self, volume_id: str, plan: SourcePlan, sealing: Sealing) -> bool:
        """LUKS bytes from the plan's source: an encrypted source is read with its own key
        and written (or re-keyed) under the new volume's key; True for a copy-on-write
        clone."""
        store = self.keys.sealed()
        key = self.keys.passphrase(sealing.project_id, sealing.key_id)
        source_key = self.keys.passphrase(*plan.source_key) if plan.source_key else None
        spec, size = sealing.spec, plan.size
        if plan.snapshot_id is not None and plan.origin_id is not None:
            return store.from_snapshot(
                plan.origin_id, plan.snapshot_id, source_key, volume_id, size, spec, key
            )
        elif plan.source_volid is not None:
            with guest_writes_held(self.shared, plan.attached_to):
                shared = plan.attached_to is not None
                store.from_volume(plan.source_volid, source_key, volume_id, size, spec, key, shared)
        elif plan.source is not None:
            fmt = "qcow2" if source_key else plan.source_format
            store.from_file(plan.source, fmt, source_key, volume_id, size, spec, key)
        elif plan.image_id is not None:
            raise BadRequest("The image's data is not in a file this backend can read.")
        else:
            store.make_blank(volume_id, size, spec, key)
        return False

    def _write(self, volume_id: str, plan: SourcePlan) -> bool:
        """The bytes from the plan's source; True when the volume is a copy-on-write clone."""
        backend = self.shared.backend
        if plan.snapshot_id is not None and plan.origin_id is not None:
            backend.from_snapshot(plan.origin_id, plan.snapshot_id, volume_id, plan.size)
            return backend.kind == "rbd"
        if plan.source_volid is not None:
            with guest_writes_held(self.shared, plan.attached_to):
                shared = plan.attached_to is not None
                backend.clone_volume(plan.source_volid, volume_id, plan.size, shared)
            return False
        if plan.image_rbd is not None and backend.from_image_ref(
            plan.image_rbd, volume_id, plan.size
        ):
            return True
        if plan.source is not None:
            backend.from_file(plan.source, plan.source_format, volume_id, plan.size)
            return False
        backend.make_blank(volume_id, plan.size)
        return False
