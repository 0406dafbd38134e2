"""Image rules: records, the upload state machine, what compute and volume ask. No HTTP.

Tenancy lives in `access`, members in `members`, attribute checks in `schemas`
and the wire shapes in `views`; methods return rows, except the few that
in-process callers (compute, volume) have always read as Glance's dicts.

An image is `queued` (no data), `saving` (an upload runs), `active` (immutable
data), `deactivated` (admin hid its data), or `killed` (a snapshot failed).
Bytes are durable in the image store before a record points at them; a record
is committed before its old bytes are removed, so a crash leaves at worst an
unreferenced file, which `sweep` removes at start. `sweep` also sends images
left in `saving` by a crash back to `queued` (Glance's behaviour after a failed
upload): the owner can upload again, and nothing half-written is kept.

An image uploaded from an encrypted volume names its own key in the key manager
(`cinder_encryption_key_id`); when Cinder marked it `cinder_encryption_key_deletion_policy:
on_image_deletion`, deleting the image deletes that key too, as Glance does.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from souverain.common.audit import note_target_project
from souverain.common.ceph import RbdRef
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound
from souverain.common.keys import (
    DELETE_WITH_IMAGE,
    IMAGE_KEY_DELETION_POLICY,
    IMAGE_KEY_PROPERTY,
    ProjectKeys,
)
from souverain.common.metering import NULL_METER, Meter, gib
from souverain.common.pagination import sort_views
from souverain.config import ImageSettings
from souverain.db.engine import Database
from souverain.identity.service import IdentityService
from souverain.image import models as m
from souverain.image import schemas, views
from souverain.image.access import owned, visible
from souverain.image.imports import ImageImports, ObjectSource
from souverain.image.members import ImageMembers
from souverain.image.metadefs import Metadefs
from souverain.image.schemas import CORE, READ_ONLY, RESERVED, ImageCreate
from souverain.image.store import (
    CHUNK,
    HASH_ALGO,
    DiskInfo,
    ImageInUse,
    ImageStore,
    ImageWriter,
    InvalidImage,
    inspect,
)

log = logging.getLogger("souverain.image")

# The allowed status transitions, as data: (from, to).
TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("queued", "saving"),  # an upload starts
        ("queued", "active"),  # import_file (snapshots)
        ("queued", "killed"),  # fail_image
        ("saving", "active"),  # the upload finished
        ("saving", "queued"),  # the upload failed or was refused; nothing kept
        ("saving", "killed"),  # fail_image while saving
        ("active", "deactivated"),
        ("deactivated", "active"),
        # interoperable import (imports.py): staged data, then the import
        ("queued", "uploading"),  # glance-direct staging starts
        ("uploading", "queued"),  # staging failed
        ("uploading", "importing"),  # glance-direct import of the staged data
        ("queued", "importing"),  # web-download
        ("importing", "active"),  # the import succeeded
        ("importing", "queued"),  # the import failed; nothing kept
    }
)
SORT_KEYS = (
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "virtual_size",
    "id",
    "created_at",
    "updated_at",
    "visibility",
    "owner",
    "min_disk",
    "min_ram",
)


@dataclass(frozen=True)
class BootImage:
    """What the compute service needs to boot from an image."""

    id: str
    name: str
    disk_format: str
    container_format: str
    min_disk: int
    min_ram: int
    size: int
    virtual_size: int | None
    path: Path  # the stored file (immutable once active)
    properties: dict[str, str]  # custom properties, e.g. kernel_id / ramdisk_id
    # with `image.backend = "rbd"`: the image's protected snapshot, which servers and
    # volumes made from it clone (copy-on-write); None on local files
    rbd: RbdRef | None = None


@dataclass(frozen=True)
class Download:
    """An image's data to stream: size, checksum, and the store file to read."""

    file_id: str | None
    size: int
    checksum: str | None


@dataclass(frozen=True)
class ListQuery:
    filters: dict[str, Any]
    tags: tuple[str, ...] = ()
    sort: tuple[tuple[str, str], ...] = (("created_at", "desc"),)
    limit: int | None = None
    marker: str | None = None


def _check_transition(image: m.Image, to: str) -> None:
    if (image.status, to) not in TRANSITIONS:
        raise Conflict(f"Image status transition from {image.status} to {to} is not allowed.")


def _listed_value(image: m.Image, key: str) -> Any:
    """What a list filter or sort on `key` compares: a core attribute, else a custom property."""
    if key in _COLUMNS:
        return getattr(image, key)
    return (image.properties or {}).get(key)


_COLUMNS = frozenset(
    {*SORT_KEYS, "protected", "os_hidden", "checksum", "os_hash_algo", "os_hash_value", "tags"}
)


class ImageService:
    def __init__(
        self,
        db: Database,
        store: ImageStore,
        identity: IdentityService,
        clock: Clock,
        settings: ImageSettings,
        objects: ObjectSource | None = None,
        keys: ProjectKeys | None = None,
    ) -> None:
        # billable changes are recorded on it (the billing service's, set by the server)
        self.meter: Meter = NULL_METER
        self.keys = keys  # the key manager, for the keys of images of encrypted volumes
        self.db = db
        self.store = store
        self.identity = identity
        self.clock = clock
        self.settings = settings
        self.members = ImageMembers(db, clock)
        # web-download reads this cloud's object store through `objects` (none: not offered)
        self.imports = ImageImports(db, store, clock, self._record_data, objects)
        self.metadefs = Metadefs(db, clock)

    # ------------------------------------------------------------------ records

    def create(self, ctx: RequestContext, req: ImageCreate) -> m.Image:
        if not ctx.project_id:
            raise Forbidden("Images belong to projects: use a project-scoped token.")
        now = self.clock.now()
        image_id = (req.image_id or str(uuid.uuid4())).lower()
        image = m.Image(
            id=image_id,
            name=None,
            owner=ctx.project_id,
            status="queued",
            visibility="shared",
            protected=False,
            os_hidden=False,
            min_disk=0,
            min_ram=0,
            tags=[],
            properties={},
            created_at=now,
            updated_at=now,
        )
        for key, value in req.attributes:
            self._set(ctx, image, key, value)
        note_target_project(image.owner)  # an admin may make it a customer's
        try:
            with self.db.session() as s:
                s.add(image)
                s.flush()
                return image
        except IntegrityError:
            raise Conflict(f"An image with identifier {req.image_id} already exists.") from None

    def _set(self, ctx: RequestContext, image: m.Image, key: str, value: Any) -> None:
        """One attribute from a create body or a patch `add`/`replace`: the caller's and the
        image's rules here, the value's own in `schemas.attribute`."""
        if key in ("disk_format", "container_format"):
            self._refuse_if_has_data(image, key)
        elif key == "owner" and not ctx.is_admin:
            raise Forbidden("Only administrators may change an image's owner.")
        checked = schemas.attribute(key, value)
        if key == "visibility" and checked == "public" and not ctx.is_admin:
            raise Forbidden("Only administrators may publicize images (visibility public).")
        if key in CORE:
            setattr(image, key, checked)
        else:
            image.properties = {**(image.properties or {}), key: str(checked)}

    @staticmethod
    def _refuse_if_has_data(image: m.Image, key: str) -> None:
        if image.status != "queued":
            raise Forbidden(f"Attribute '{key}' can be only replaced for a queued image.")

    def show(self, ctx: RequestContext, image_id: str) -> m.Image:
        with self.db.session() as s:
            return visible(s, ctx, image_id)

    def get(self, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        """The image as Glance shows it, for in-process callers."""
        return views.image_view(self.show(ctx, image_id))

    def list_images(self, ctx: RequestContext, query: ListQuery) -> tuple[list[m.Image], bool]:
        """One page of the images the caller may list; whether more follow."""
        filters = dict(query.filters)
        visibility = filters.pop("visibility", None)
        member_status = filters.pop("member_status", "accepted")
        with self.db.session() as s:
            stmt = select(m.Image)
            stmt = self._listable(stmt, ctx, visibility, member_status)
            for key in (
                "name",
                "status",
                "disk_format",
                "container_format",
                "owner",
                "id",
                "size",
                "checksum",
            ):
                if key in filters:
                    stmt = stmt.where(getattr(m.Image, key) == filters.pop(key))
            if "protected" in filters:
                stmt = stmt.where(m.Image.protected.is_(filters.pop("protected")))
            if "os_hidden" in filters:
                stmt = stmt.where(m.Image.os_hidden.is_(filters.pop("os_hidden")))
            elif not filters.pop("include_hidden", False):
                stmt = stmt.where(m.Image.os_hidden.is_(False))
            if "size_min" in filters:
                stmt = stmt.where(m.Image.size >= filters.pop("size_min"))
            if "size_max" in filters:
                stmt = stmt.where(m.Image.size <= filters.pop("size_max"))
            rows = list(s.scalars(stmt))
        kept = [
            {**{k: _listed_value(r, k) for k in (*SORT_KEYS, *filters)}, "_image": r}
            for r in rows
            if all(t in (r.tags or []) for t in query.tags)
            and all(_listed_value(r, k) == want for k, want in filters.items())
        ]
        ordered = sort_views(kept, query.sort)
        start = 0
        if query.marker is not None:
            for index, item in enumerate(ordered):
                if item["id"] == query.marker:
                    start = index + 1
                    break
            else:
                raise BadRequest(f"marker {query.marker!r} could not be found.")
        end = len(ordered) if query.limit is None else start + query.limit
        return [item["_image"] for item in ordered[start:end]], end < len(ordered)

    def _listable(
        self, stmt: Any, ctx: RequestContext, visibility: str | None, member_status: str
    ) -> Any:
        """Glance's default listing: own, public, shared-and-accepted; community on request."""
        if visibility is not None and visibility != "all":
            stmt = stmt.where(m.Image.visibility == visibility)
        if ctx.is_admin:
            return stmt
        own = m.Image.owner == ctx.project_id
        members = select(m.ImageMember.image_id).where(m.ImageMember.member_id == ctx.project_id)
        if member_status != "all":
            members = members.where(m.ImageMember.status == member_status)
        shared_with_me = (m.Image.visibility == "shared") & m.Image.id.in_(members)
        if visibility == "community":
            return stmt
        if visibility == "public":
            return stmt
        if visibility == "all":
            return stmt.where(
                or_(own, shared_with_me, m.Image.visibility.in_(("public", "community")))
            )
        # default and shared/private filters
        return stmt.where(or_(own, shared_with_me, m.Image.visibility == "public"))

    def update(self, ctx: RequestContext, image_id: str, changes: list[schemas.PatchOp]) -> m.Image:
        """Apply JSON-patch changes to top-level attributes; all or nothing."""
        with self.db.session() as s:
            image = owned(s, ctx, image_id, "modify")
            for change in changes:
                op, key, value = change.op, change.name, change.value
                if key == "tags" or key in CORE or key in READ_ONLY or key in RESERVED:
                    if op == "remove":
                        if key in READ_ONLY or key in RESERVED:
                            schemas.property_name(key)
                        raise Forbidden(f"Property '{key}' cannot be removed.")
                    self._set(ctx, image, key, value)
                elif op == "remove":
                    props = dict(image.properties or {})
                    if key not in props:
                        raise Conflict(f"Property {key} does not exist.")
                    del props[key]
                    image.properties = props
                else:
                    if op == "replace" and key not in (image.properties or {}):
                        raise Conflict(f"Property {key} does not exist.")
                    self._set(ctx, image, key, value)
            image.updated_at = self.clock.now()
            s.flush()
            return image

    def delete(self, ctx: RequestContext, image_id: str) -> None:
        with self.db.session() as s:
            image = owned(s, ctx, image_id, "delete")
            if image.protected:
                raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
            try:
                self.store.check_unused(image.file_id)
            except ImageInUse as exc:
                raise Conflict(
                    f"Image {image_id} could not be deleted because it is in use: {exc}"
                ) from None
            file_id, staged, owner = image.file_id, image.staged_file_id, image.owner or ""
            properties = dict(image.properties or {})
            s.delete(image)
        if file_id is not None:
            self.meter.gauge(owner, "image.gb", image_id, 0)
        self.store.delete(
            [file_id, staged]
        )  # after the commit: a crash leaves a file sweep removes
        self._delete_image_key(owner, image_id, properties)

    def _delete_image_key(self, owner: str, image_id: str, properties: dict[str, Any]) -> None:
        """Glance's rule: the key of an image of an encrypted volume goes with the image when
        its deletion policy says so; only a key of the image owner's project, and a key that
        cannot be deleted now is logged, not an error (the image is gone either way)."""
        key_id = properties.get(IMAGE_KEY_PROPERTY)
        policy = properties.get(IMAGE_KEY_DELETION_POLICY)
        if self.keys is None or not isinstance(key_id, str) or policy != DELETE_WITH_IMAGE:
            return
        try:
            self.keys.delete_secret_key(owner, key_id)
        except Exception as exc:  # the key manager down: the secret stays, the operator told
            log.warning("the key of deleted image %s was not deleted: %s", image_id, exc)

    def add_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        with self.db.session() as s:
            image = owned(s, ctx, image_id, "modify")
            tags = list(image.tags or [])
            if tag not in tags:
                image.tags = schemas.tags([*tags, tag])
                image.updated_at = self.clock.now()

    def remove_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        with self.db.session() as s:
            image = owned(s, ctx, image_id, "modify")
            tags = list(image.tags or [])
            if tag not in tags:
                raise NotFound(f"Tag {tag} not found on image {image_id}.")
            tags.remove(tag)
            image.tags = tags
            image.updated_at = self.clock.now()

    def set_active(self, ctx: RequestContext, image_id: str, active: bool) -> None:
        """Deactivate (hide the data from non-admins) or reactivate; admins only."""
        with self.db.session() as s:
            image = visible(s, ctx, image_id)
            if not ctx.is_admin:
                raise Forbidden("Only administrators may deactivate or reactivate images.")
            note_target_project(image.owner)
            target = "active" if active else "deactivated"
            if image.status == target:
                return
            # only an image with data moves: reactivating a queued or saving image would
            # make an empty one active
            if image.status != ("deactivated" if active else "active"):
                raise BadRequest(
                    f"Not allowed to {'re' if active else 'de'}activate image in status "
                    f"'{image.status}'."
                )
            image.status = target
            image.updated_at = self.clock.now()

    def usage(self, project_id: str) -> tuple[int, int]:
        """How many images a project owns and how many bytes they hold (quotas, billing)."""
        with self.db.session() as s:
            count, total = s.execute(
                select(func.count(m.Image.id), func.coalesce(func.sum(m.Image.size), 0)).where(
                    m.Image.owner == project_id
                )
            ).one()
        return int(count or 0), int(total or 0)

    # ------------------------------------------------------------------ data

    def begin_upload(self, ctx: RequestContext, image_id: str) -> str:
        """Move an image from queued to saving for this upload; its disk_format."""
        with self.db.session() as s:
            image = owned(s, ctx, image_id, "upload data to")
            if image.status != "queued":
                raise Conflict(
                    f"Image {image_id} is {image.status}: data can only be uploaded once, "
                    "to a queued image."
                )
            if not image.disk_format or not image.container_format:
                raise BadRequest(
                    "Properties disk_format and container_format must be set prior to "
                    "uploading image data."
                )
            _check_transition(image, "saving")
            disk_format = image.disk_format
        # One upload at a time: the update takes the image only if it is still queued.
        with self.db.session() as s:
            taken = s.execute(
                update(m.Image)
                .where(m.Image.id == image_id.lower(), m.Image.status == "queued")
                .values(status="saving", updated_at=self.clock.now())
                .returning(m.Image.id)
            ).first()
        if taken is None:
            raise Conflict(f"Image {image_id} is already receiving data.")
        return disk_format

    def finish_upload(self, image_id: str, writer: ImageWriter, disk_format: str) -> m.Image:
        """Inspect, make durable and record the uploaded bytes; the image.

        Runs on a worker thread. Refused data leaves the image queued and no file.
        """
        try:
            disk = inspect(writer.tmp_path, disk_format)
            file_id = writer.commit()
            return self._record_data(image_id, file_id, writer.digests, disk, ("saving",))
        except InvalidImage as exc:
            writer.abort()
            self.abandon_upload(image_id)
            raise BadRequest(str(exc)) from None
        except BaseException:
            writer.abort()
            self.abandon_upload(image_id)
            raise

    def abandon_upload(self, image_id: str) -> None:
        """An upload failed: back to queued, as Glance does, so the owner can retry."""
        with self.db.session() as s:
            s.execute(
                update(m.Image)
                .where(m.Image.id == image_id, m.Image.status == "saving")
                .values(status="queued", updated_at=self.clock.now())
            )

    def _record_data(
        self,
        image_id: str,
        file_id: str,
        digests: Any,
        disk: DiskInfo,
        from_states: tuple[str, ...],
    ) -> m.Image:
        # qemu-img rounds raw sizes up to a sector; a raw disk is exactly its bytes
        virtual_size = digests.size if disk.format == "raw" else disk.virtual_size
        try:
            self.store.publish(file_id, disk)  # Ceph: into the pool before a row names it
            with self.db.session() as s:
                image = s.get(m.Image, image_id)
                if image is None or image.status not in from_states:
                    raise Conflict(
                        f"Image {image_id} was deleted or changed while its data was uploaded."
                    )
                image.status = "active"
                image.file_id = file_id
                image.staged_file_id = None  # an import adopts its staged file
                image.size = digests.size
                image.virtual_size = virtual_size
                image.checksum = digests.md5.hexdigest()
                image.os_hash_algo = HASH_ALGO
                image.os_hash_value = digests.multihash.hexdigest()
                image.updated_at = self.clock.now()
                s.flush()
                owner = image.owner or ""
        except BaseException:
            self.store.delete([file_id])
            raise
        self.meter.gauge(owner, "image.gb", image_id, gib(digests.size))
        return image

    def data_for(self, ctx: RequestContext, image_id: str) -> Download:
        with self.db.session() as s:
            image = visible(s, ctx, image_id)
            if image.status == "deactivated" and not ctx.is_admin:
                raise Forbidden(f"The data of image {image_id} is not available (deactivated).")
            if image.status != "active" and image.status != "deactivated":
                return Download(None, 0, None)
            return Download(image.file_id, image.size or 0, image.checksum)

    # ------------------------------------------------------------------ for compute

    def image_for_boot(
        self, ctx: RequestContext, image_id: str, local_copy: bool = True
    ) -> BootImage:
        """What booting needs of an image. On RBD, `path` is a local copy exported once
        (for root disks on local files, rescue disks, agents' downloads, volumes on files);
        a caller that clones `rbd` says `local_copy=False` and gets the copy's path only
        (no export: a large image is not copied to this host for nothing)."""
        with self.db.session() as s:
            try:
                image = visible(s, ctx, image_id)
            except NotFound:
                raise NotFound(f"Image {image_id} could not be found.") from None
            if image.status != "active" or image.file_id is None:
                raise BadRequest(f"Image {image_id} is not active.")
            file_id = image.file_id
            found = BootImage(
                id=image.id,
                name=image.name or "",
                disk_format=image.disk_format or "raw",
                container_format=image.container_format or "bare",
                min_disk=image.min_disk,
                min_ram=image.min_ram,
                size=image.size or 0,
                virtual_size=image.virtual_size,
                path=self.store.root,  # set below, outside the transaction
                properties=dict(image.properties or {}),
            )
        rbd = self.store.rbd_ref(file_id)
        path = self.store.path(file_id) if local_copy or rbd is None else self.store.cached(file_id)
        return replace(found, path=path, rbd=rbd)

    def clone_parent(self, ctx: RequestContext, image_id: str) -> RbdRef | None:
        """The RBD snapshot root disks of an active image clone (images on RBD), else None;
        unlike `image_for_boot`, no local copy of the image is made."""
        with self.db.session() as s:
            image = visible(s, ctx, image_id)
            if image.status != "active" or image.file_id is None:
                return None
            file_id = image.file_id
        return self.store.rbd_ref(file_id)

    def create_snapshot_record(
        self,
        ctx: RequestContext,
        name: str,
        properties: dict[str, str],
        min_disk: int = 0,
        min_ram: int = 0,
        disk_format: str = "qcow2",
        container_format: str = "bare",
    ) -> dict[str, Any]:
        """A private image for a server or volume snapshot, queued for its data; as Glance
        shows it."""
        body: dict[str, Any] = {
            **properties,
            "name": name,
            "visibility": "private",
            "min_disk": min_disk,
            "min_ram": min_ram,
            "disk_format": disk_format,
            "container_format": container_format,
        }
        return views.image_view(self.create(ctx, schemas.image_create(body)))

    def import_file(self, image_id: str, source: Path) -> None:
        """Move a finished, fsynced local file into the store and make the image active."""
        with self.db.session() as s:
            image = s.get(m.Image, image_id)
            if image is None:
                raise NotFound(f"Image {image_id} could not be found.")
            disk_format = image.disk_format or "raw"
            if image.status not in ("queued", "saving"):
                raise Conflict(f"Image {image_id} is {image.status}, not queued.")
        try:
            disk = inspect(source, disk_format)
            file_id, digests = self.store.adopt(source)
            self._record_data(image_id, file_id, digests, disk, ("queued", "saving"))
        except InvalidImage as exc:
            self.fail_image(image_id, str(exc))
            raise BadRequest(str(exc)) from None

    def fail_image(self, image_id: str, reason: str) -> None:
        """A snapshot failed: the image is killed and keeps no bytes."""
        log.warning("image %s failed: %s", image_id, reason)
        with self.db.session() as s:
            image = s.get(m.Image, image_id)
            if image is None:
                return
            file_id, image.file_id = image.file_id, None
            owner = image.owner or ""
            image.status = "killed"
            image.size = None
            image.checksum = image.os_hash_algo = image.os_hash_value = None
            image.updated_at = self.clock.now()
        if file_id is not None:
            self.meter.gauge(owner, "image.gb", image_id, 0)
        self.store.delete([file_id])

    # ------------------------------------------------------------------ start-up

    def sweep(self) -> int:
        """After a crash: uploads in `saving` go back to `queued`, imports cut short fail;
        stray files go. A count."""
        self.imports.sweep()
        with self.db.session() as s:
            stuck = list(s.scalars(select(m.Image.id).where(m.Image.status == "saving")))
            if stuck:
                s.execute(
                    update(m.Image)
                    .where(m.Image.id.in_(stuck), m.Image.status == "saving")
                    .values(status="queued", updated_at=self.clock.now())
                )
            referenced = {
                f for f in s.scalars(select(m.Image.file_id).where(m.Image.file_id.is_not(None)))
            } | {
                f
                for f in s.scalars(
                    select(m.Image.staged_file_id).where(m.Image.staged_file_id.is_not(None))
                )
            }
        reset = len(stuck)
        if reset:
            log.info("%d image upload(s) interrupted by a stop: back to queued", reset)
        return reset + self.store.sweep({f for f in referenced if f})

    def register_public(
        self,
        name: str,
        path: Path,
        disk_format: str = "qcow2",
        container_format: str = "bare",
        properties: dict[str, str] | None = None,
    ) -> str:
        """An operator's public image, imported once: its id. Idempotent by name and checksum.

        A file with other contents replaces the public image(s) of that name.
        """
        writer = self.store.writer()
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        checksum = writer.digests.md5.hexdigest()
        with self.db.session() as s:
            existing = list(
                s.scalars(
                    select(m.Image).where(
                        m.Image.name == name,
                        m.Image.visibility == "public",
                        m.Image.owner.is_(None),
                    )
                )
            )
        for image in existing:
            if image.status == "active" and image.checksum == checksum:
                writer.abort()
                return image.id
        try:
            disk = inspect(writer.tmp_path, disk_format)
            file_id = writer.commit()
        except BaseException:
            writer.abort()
            raise
        now = self.clock.now()
        image_id = str(uuid.uuid4())
        with self.db.session() as s:
            s.add(
                m.Image(
                    id=image_id,
                    name=name,
                    owner=None,
                    status="saving",
                    visibility="public",
                    protected=False,
                    os_hidden=False,
                    disk_format=disk_format,
                    container_format=container_format,
                    min_disk=0,
                    min_ram=0,
                    tags=[],
                    properties=dict(properties or {}),
                    created_at=now,
                    updated_at=now,
                )
            )
        self._record_data(image_id, file_id, writer.digests, disk, ("saving",))
        old_files = [i.file_id for i in existing]
        with self.db.session() as s:
            s.execute(delete(m.Image).where(m.Image.id.in_([i.id for i in existing])))
        self.store.delete(old_files)
        log.info("registered public image %r (%s)", name, image_id)
        return image_id
