"""Volumes once made: reading, renaming, flags, extend, upload to an image, delete. No HTTP.

Extend and upload run between two moves of the status table (available ->
extending/uploading -> back); delete moves to `deleting`, then removes the
snapshots, the file and the row, in that order, so a crash anywhere leaves
`deleting` for recovery to finish.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from sqlalchemy import delete, select, update

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.keys import DELETE_WITH_IMAGE, IMAGE_KEY_DELETION_POLICY, IMAGE_KEY_PROPERTY
from souverain.volume import metadata
from souverain.volume import models as m
from souverain.volume.backend import BackendError
from souverain.volume.encryption import VolumeKeys
from souverain.volume.quotas import Quotas
from souverain.volume.rules import (
    ImageUpload,
    Page,
    Shared,
    UserMessage,
    VolumeImages,
    VolumeQuery,
    VolumeRecord,
    VolumeSummary,
    reason,
    require_admin,
    sorted_page,
    type_name,
    visible_volume,
)
from souverain.volume.schemas import Described, StatusReset, UploadToImage, within_limit
from souverain.volume.schemas import metadata as check_metadata
from souverain.volume.snapshots import DELETABLE as SNAPSHOT_DELETABLE
from souverain.volume.snapshots import Snapshots
from souverain.volume.state import ATTACHED, DELETABLE, VolumeStates

log = logging.getLogger("souverain.volume")


def sort_fields(record: VolumeRecord) -> dict[str, Any]:
    row = record.row
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "size": row.size,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "bootable": row.bootable,
    }


class Volumes:
    def __init__(
        self,
        shared: Shared,
        states: VolumeStates,
        quotas: Quotas,
        snapshots: Snapshots,
        images: VolumeImages,
    ) -> None:
        self.shared = shared
        self.states = states
        self.quotas = quotas
        self.snapshots = snapshots
        self.images = images
        self.keys = VolumeKeys(shared)

    # ------------------------------------------------------------------ reading

    def get(self, ctx: RequestContext, volume_id: str) -> VolumeRecord:
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            return VolumeRecord(row, type_name(s, row.volume_type_id))

    def list_visible(self, ctx: RequestContext, query: VolumeQuery) -> Page[VolumeRecord]:
        return sorted_page(self._matching(ctx, query), query, sort_fields)

    def summary(self, ctx: RequestContext, query: VolumeQuery) -> VolumeSummary:
        """How many volumes the listing's scope and filters hold, their GiB, and each
        metadata key's distinct values (Cinder's `volumes/summary`)."""
        records = self._matching(ctx, query)
        values: dict[str, set[str]] = {}
        for record in records:
            for key, value in (record.row.meta or {}).items():
                values.setdefault(key, set()).add(value)
        return VolumeSummary(
            count=len(records),
            size=sum(r.row.size for r in records),
            metadata={key: sorted(found) for key, found in sorted(values.items())},
        )

    def _matching(self, ctx: RequestContext, query: VolumeQuery) -> list[VolumeRecord]:
        """The volumes of the caller's scope (every project's for an admin asking
        all_tenants) that pass the query's filters, unsorted."""
        with self.shared.db.session() as s:
            stmt = select(m.Volume)
            if not (ctx.is_admin and query.all_tenants):
                stmt = stmt.where(m.Volume.project_id == ctx.project_id)
            f = query.filters
            if "project_id" in f and ctx.is_admin:
                stmt = stmt.where(m.Volume.project_id == f["project_id"])
            for key in ("name", "status", "bootable"):
                if key in f:
                    stmt = stmt.where(getattr(m.Volume, key) == f[key])
            rows = list(s.scalars(stmt))
            types = {t.id: t.name for t in s.scalars(select(m.VolumeType))}
        wanted: dict[str, str] = f.get("metadata", {})
        return [
            VolumeRecord(r, types.get(r.volume_type_id, ""))
            for r in rows
            if all((r.meta or {}).get(k) == v for k, v in wanted.items())
        ]

    def metadata(self, ctx: RequestContext, volume_id: str) -> dict[str, str]:
        with self.shared.db.session() as s:
            return dict(visible_volume(s, ctx, volume_id).meta or {})

    def messages(self, ctx: RequestContext) -> list[UserMessage]:
        """Why resources failed: one message per volume or snapshot in error, newest first."""
        failed: list[UserMessage] = []
        with self.shared.db.session() as s:
            volumes = select(m.Volume).where(m.Volume.error_message.is_not(None))
            snapshots = select(m.Snapshot).where(m.Snapshot.error_message.is_not(None))
            if not ctx.is_admin:
                volumes = volumes.where(m.Volume.project_id == ctx.project_id)
                snapshots = snapshots.where(m.Snapshot.project_id == ctx.project_id)
            for vol in s.scalars(volumes):
                failed.append(
                    UserMessage("VOLUME", vol.id, vol.error_message or "", vol.updated_at)
                )
            for snap in s.scalars(snapshots):
                failed.append(
                    UserMessage("SNAPSHOT", snap.id, snap.error_message or "", snap.updated_at)
                )
        return sorted(failed, key=lambda msg: msg.created_at, reverse=True)

    # ------------------------------------------------------------------ changing

    def update(self, ctx: RequestContext, volume_id: str, req: Described) -> VolumeRecord:
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            for attr, value in req.fields.items():
                setattr(row, attr, value)
            if req.metadata is not None:
                row.meta = dict(req.metadata)
            row.updated_at = self.shared.clock.now()
            s.flush()
            return VolumeRecord(row, type_name(s, row.volume_type_id))

    def set_metadata(
        self, ctx: RequestContext, volume_id: str, items: dict[str, str], replace: bool = False
    ) -> dict[str, str]:
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            return metadata.set_items(row, items, replace, self.shared.clock.now())

    def delete_metadata_item(self, ctx: RequestContext, volume_id: str, key: str) -> None:
        with self.shared.db.session() as s:
            metadata.delete_item(visible_volume(s, ctx, volume_id), key, self.shared.clock.now())

    def image_metadata(self, ctx: RequestContext, volume_id: str) -> dict[str, str]:
        """What the volume keeps of the image it came from (and what was set on it)."""
        with self.shared.db.session() as s:
            return dict(visible_volume(s, ctx, volume_id).image_metadata or {})

    def set_image_metadata(
        self, ctx: RequestContext, volume_id: str, items: dict[str, str]
    ) -> dict[str, str]:
        """Merge `items` into the volume's image metadata (Cinder's os-set_image_metadata)."""
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            merged = {**(row.image_metadata or {}), **items}
            check_metadata(merged, "metadata")
            row.image_metadata = merged
            row.updated_at = self.shared.clock.now()
            return dict(merged)

    def unset_image_metadata(self, ctx: RequestContext, volume_id: str, key: str) -> None:
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            meta = dict(row.image_metadata or {})
            if key not in meta:
                raise NotFound(
                    f"Glance metadata for volume {volume_id} with key {key[:255]} not found."
                )
            del meta[key]
            row.image_metadata = meta
            row.updated_at = self.shared.clock.now()

    def set_bootable(self, ctx: RequestContext, volume_id: str, flag: bool) -> None:
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            row.bootable = flag
            row.updated_at = self.shared.clock.now()

    def set_readonly(self, ctx: RequestContext, volume_id: str, flag: bool) -> None:
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            if row.status in ATTACHED:
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {row.status}; detach it first."
                )
            row.readonly = flag
            # Cinder shows the flag in the metadata once it was set, "True" or "False"
            row.meta = {**(row.meta or {}), "readonly": str(flag)}
            row.updated_at = self.shared.clock.now()

    def reset_status(self, ctx: RequestContext, volume_id: str, req: StatusReset) -> None:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            if req.status is not None:
                row.status = req.status
                if req.status == "available":
                    row.error_message = None
            if req.attach_status == "detached":
                row.server_id = row.device = row.attachment_id = None
                row.attached_at = None
            row.updated_at = self.shared.clock.now()

    # ------------------------------------------------------------------ extend

    def extend(self, ctx: RequestContext, volume_id: str, new_size: int) -> None:
        """Grow an available volume, or an in-use one through the guest holding it."""
        size = within_limit("new_size", new_size, self.shared.settings.max_volume_gib)
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            if size <= row.size:
                raise BadRequest(
                    f"Invalid input received: New size for extend must be greater than current "
                    f"size. (current: {row.size}, extended: {size})."
                )
            if row.status not in ("available", "in-use"):
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {row.status}; it must be available "
                    "or in-use to extend."
                )
            attached, server_id, old = row.status == "in-use", row.server_id, row.size
            self.quotas.lock(s, row.project_id)
            self.quotas.check_volume_size(s, row.project_id, size)
            self.quotas.claim(s, row.project_id, gigabytes=size - old)
            # the claim and the move commit together: the quota counts the new size
            moved = s.execute(
                update(m.Volume)
                .where(m.Volume.id == row.id, m.Volume.status == row.status)
                .values(status="extending", updated_at=self.shared.clock.now())
                .returning(m.Volume.id)
            ).first()
            if moved is None:
                raise BadRequest(f"Invalid volume: Volume {volume_id} changed status; try again.")
            vid, project_id, key_id = row.id, row.project_id, row.encryption_key_id
        if attached:
            self._extend_attached(vid, str(server_id), size)
        else:
            self._extend_detached(vid, size, (project_id, key_id) if key_id else None)
        self.shared.meter.gauge(project_id, "volume.gb", vid, size)

    def _extend_detached(self, volume_id: str, size: int, key: tuple[str, str] | None) -> None:
        backend = self.shared.backend
        try:
            if key is None:
                backend.grow(volume_id, size)
            else:
                self.keys.sealed().grow(volume_id, size, self.keys.passphrase(*key))
        except (BackendError, OSError) as exc:
            self.states.move(volume_id, "extended", error_message=f"Extend failed: {reason(exc)}")
            raise BadRequest(f"Volume {volume_id} could not be extended: {reason(exc)}") from None
        self.states.move(volume_id, "extended", size=size, error_message=None)

    def _extend_attached(self, volume_id: str, server_id: str, size: int) -> None:
        resizer = self.shared.attached_resizer
        try:
            if resizer is None:
                raise RuntimeError("no compute service can resize attached volumes")
            resizer(server_id, volume_id, size)
        except Exception as exc:
            log.warning("extend of attached volume %s failed: %s", volume_id, exc)
            self.states.move(volume_id, "extended_attached")
            raise BadRequest(
                f"Volume {volume_id} could not be extended while attached: {reason(exc)}"
            ) from None
        self.states.move(volume_id, "extended_attached", size=size, error_message=None)

    # ------------------------------------------------------------------ upload

    def upload_to_image(
        self, ctx: RequestContext, volume_id: str, req: UploadToImage
    ) -> ImageUpload:
        """A Glance image from the volume's data: the image is active when this returns."""
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            if row.status != "available":
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {row.status}; it must be available "
                    "to upload it to an image."
                )
            vid, size, key_id = row.id, row.size, row.encryption_key_id
            type_of = type_name(s, row.volume_type_id)
            source_key = (row.project_id, key_id) if key_id else None
        if source_key is not None and req.disk_format != "qcow2":
            raise BadRequest(
                f"Invalid input received: volume {volume_id} is encrypted; its image stays "
                "encrypted (LUKS in qcow2), so disk_format must be qcow2."
            )
        properties: dict[str, str] = {}
        if source_key is not None:  # the image's own key: the same data, a new secret
            properties[IMAGE_KEY_PROPERTY] = self.keys.new_key(source_key[0], ctx.user_id, vid)
            properties[IMAGE_KEY_DELETION_POLICY] = DELETE_WITH_IMAGE
        if not self.states.move(vid, "upload"):
            self.keys.forget(
                source_key[0] if source_key else "", properties.get(IMAGE_KEY_PROPERTY)
            )
            raise BadRequest(f"Invalid volume: Volume {volume_id} changed status; try again.")
        try:
            image = self.images.create_snapshot_record(
                ctx,
                req.image_name,
                properties,
                min_disk=size,
                disk_format=req.disk_format,
                container_format=req.container_format,
            )
        except BaseException:
            self.states.move(vid, "uploaded")
            if source_key is not None:
                self.keys.forget(source_key[0], properties.get(IMAGE_KEY_PROPERTY))
            raise
        image_id = str(image["id"])
        image_key = properties.get(IMAGE_KEY_PROPERTY)
        sealed = (source_key, image_key) if source_key and image_key else None
        self._export(volume_id, vid, image_id, req.disk_format, sealed)
        return ImageUpload(
            volume_id=vid,
            updated_at=self.shared.clock.now(),
            size=size,
            type_name=type_of,
            image_id=image_id,
            image_name=req.image_name,
            container_format=req.container_format,
            disk_format=req.disk_format,
        )

    def _export(
        self,
        volume_ref: str,
        volume_id: str,
        image_id: str,
        disk_format: str,
        sealed: tuple[tuple[str, str], str] | None = None,
    ) -> None:
        """The volume's bytes into the image; an encrypted volume's stay LUKS, under the
        image's own key (`sealed`: the volume's project and key, the image's key)."""
        backend = self.shared.backend
        out = backend.temp_path(f".{disk_format}")
        try:
            if sealed is None:
                backend.export_volume(volume_id, out, out_format=disk_format)
            else:
                (project_id, key_id), image_key = sealed
                self.keys.sealed().export(
                    volume_id,
                    self.keys.passphrase(project_id, key_id),
                    out,
                    self.keys.passphrase(project_id, image_key),
                )
            self.images.import_file(image_id, out)
        except (BackendError, OSError) as exc:
            self.images.fail_image(image_id, str(exc))
            raise BadRequest(f"Volume {volume_ref} could not be uploaded: {reason(exc)}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            self.states.move(volume_id, "uploaded")

    # ------------------------------------------------------------------ delete

    def delete(
        self, ctx: RequestContext, volume_id: str, cascade: bool = False, force: bool = False
    ) -> None:
        if force:
            require_admin(ctx)
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            if row.status in ATTACHED and not force:
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is attached; detach it first."
                )
            snaps = list(s.scalars(select(m.Snapshot).where(m.Snapshot.volume_id == row.id)))
            if snaps and not cascade:
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} has {len(snaps)} dependent snapshot(s); "
                    "delete them first or delete with cascade."
                )
            busy = [snap for snap in snaps if snap.status not in SNAPSHOT_DELETABLE]
            if busy and not force:  # a snapshot being copied (backed up) is not taken away
                raise BadRequest(
                    f"Invalid volume: Snapshot {busy[0].id} of volume {volume_id} is "
                    f"{busy[0].status}; wait until it is available, then delete with cascade."
                )
            if row.status not in DELETABLE and not force:
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {row.status}; it must be available "
                    "or error to delete."
                )
            vid = row.id
        if not self.states.move(vid, "force_delete" if force else "delete"):
            raise BadRequest(f"Invalid volume: Volume {volume_id} changed status; try again.")
        self.finish_delete(vid)

    def finish_delete(self, volume_id: str) -> None:
        """Snapshots, file, then the row: a crash anywhere leaves `deleting`, finished at start."""
        with self.shared.db.session() as s:
            snap_ids = list(
                s.scalars(select(m.Snapshot.id).where(m.Snapshot.volume_id == volume_id))
            )
            if snap_ids:
                s.execute(
                    update(m.Snapshot)
                    .where(m.Snapshot.id.in_(snap_ids))
                    .values(status="deleting", updated_at=self.shared.clock.now())
                )
        for snap_id in snap_ids:
            self.snapshots.finish_delete(snap_id)
        self.shared.backend.remove_volume(volume_id)
        with self.shared.db.session() as s:
            s.execute(delete(m.VolumeTransfer).where(m.VolumeTransfer.volume_id == volume_id))
            row = s.get(m.Volume, volume_id)
            project_id = row.project_id if row is not None else None
            key_id = row.encryption_key_id if row is not None else None
            if row is not None:
                s.delete(row)
        if project_id is not None:
            self.shared.meter.gauge(project_id, "volume.gb", volume_id, 0)
            self.keys.forget(project_id, key_id, volume_id)  # Cinder deletes it with the volume

    def delete_internal(self, volume_id: str) -> None:
        """delete_on_termination: compute checked the caller; remove whatever its status."""
        if self.states.move(volume_id, "force_delete"):
            self.finish_delete(volume_id)

    def error_message(self, volume_id: str) -> str | None:
        with self.shared.db.session() as s:
            row = s.get(m.Volume, volume_id)
            return row.error_message if row else None
