"""Interoperable image import: staged data, the import itself, and the tasks that record it.

No HTTP. `glance-direct` stages the bytes in the image store (status `uploading`),
then an import inspects them against the image's disk_format and makes the image
`active` with that very file (`importing` meanwhile). `web-download` reads an object
of this cloud's own object store, through the `ObjectSource` seam; a URI anywhere
else is refused before anything happens, so the cloud never fetches from outside.
A failed import sends the image back to `queued` with no data kept, and its task
says why. `copy-image` needs several stores: this cloud has one, so it is refused.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import select, update

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest, Conflict, NotFound
from souverain.db.engine import Database
from souverain.image import models as m
from souverain.image.access import owned, visible
from souverain.image.store import Digests, DiskInfo, ImageStore, ImageWriter, InvalidImage, inspect

log = logging.getLogger("souverain.image")

TASK_TYPE = "api_image_import"
# where the object store's API is mounted under the cloud's public URL
OBJECT_STORE_PREFIX = "/object-store/"
TASK_LIFETIME = dt.timedelta(hours=48)  # how long a finished task stays listed


class NotImplementedByCloud(ApiError):
    status = 501
    title = "Not Implemented"


class ObjectSource(Protocol):
    """This cloud's object store, read as the caller: `path` is the URL path of an object."""

    def read_object(self, ctx: RequestContext, path: str) -> Iterator[bytes]: ...


# the service's own step that records an image's data (status, checksums, metering)
RecordData = Callable[[str, str, Digests, DiskInfo, tuple[str, ...]], m.Image]


@dataclass(frozen=True)
class ImportRequest:
    method: str  # glance-direct | web-download | copy-image
    uri: str | None = None


def import_request(body: Any) -> ImportRequest:
    """The body of POST /v2/images/{id}/import, checked."""
    method = body.get("method") if isinstance(body, dict) else None
    name = method.get("name") if isinstance(method, dict) else None
    if name not in ("glance-direct", "web-download", "copy-image", "glance-download"):
        raise BadRequest(
            'Give the import method as {"method": {"name": ...}}: glance-direct or web-download.'
        )
    assert isinstance(method, dict)
    if name in ("copy-image", "glance-download"):
        raise NotImplementedByCloud(
            f"Import method {name} is not available: this cloud has one image store and "
            "one region. Use glance-direct (stage, then import) or web-download."
        )
    uri = method.get("uri")
    if name == "web-download" and (not isinstance(uri, str) or not uri):
        raise BadRequest("web-download needs the object's URL in method.uri.")
    return ImportRequest(str(name), uri if name == "web-download" else None)


class ImageImports:
    def __init__(
        self,
        db: Database,
        store: ImageStore,
        clock: Clock,
        record: RecordData,
        objects: ObjectSource | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.clock = clock
        self.record = record
        self.objects = objects  # this cloud's object store (web-download); None: not offered

    def methods(self) -> list[str]:
        """The import methods this cloud offers now."""
        return ["glance-direct", "web-download"] if self.objects else ["glance-direct"]

    # ------------------------------------------------------------------ staging

    def begin_stage(self, ctx: RequestContext, image_id: str) -> str:
        """Take a queued image for staging (queued -> uploading); its stored id."""
        with self.db.session() as s:
            image = owned(s, ctx, image_id, "stage data for")
            if image.status != "queued":
                raise Conflict(
                    f"Image {image_id} is {image.status}: data can be staged only once, for "
                    "a queued image."
                )
            found = image.id
        with self.db.session() as s:
            taken = s.execute(
                update(m.Image)
                .where(m.Image.id == found, m.Image.status == "queued")
                .values(status="uploading", updated_at=self.clock.now())
                .returning(m.Image.id)
            ).first()
        if taken is None:
            raise Conflict(f"Image {image_id} is already receiving data.")
        return found

    def finish_stage(self, image_id: str, writer: ImageWriter) -> None:
        """The staged bytes are durable; the image points at them, still `uploading`."""
        file_id = writer.commit()
        with self.db.session() as s:
            kept = s.execute(
                update(m.Image)
                .where(m.Image.id == image_id, m.Image.status == "uploading")
                .values(staged_file_id=file_id, updated_at=self.clock.now())
                .returning(m.Image.id)
            ).first()
        if kept is None:  # deleted while staging
            self.store.delete([file_id])
            raise Conflict(f"Image {image_id} was deleted while its data was staged.")

    def abandon_stage(self, image_id: str) -> None:
        """Staging failed: back to queued, nothing kept."""
        with self.db.session() as s:
            s.execute(
                update(m.Image)
                .where(
                    m.Image.id == image_id,
                    m.Image.status == "uploading",
                    m.Image.staged_file_id.is_(None),
                )
                .values(status="queued", updated_at=self.clock.now())
            )

    # ------------------------------------------------------------------ import

    def start(
        self, ctx: RequestContext, image_id: str, req: ImportRequest, origin: str
    ) -> m.ImageTask:
        """Check the request, take the image (-> importing) and record its task.

        `origin` is this cloud's public base URL: web-download reads only under it.
        """
        if req.method == "web-download":
            self._check_own_object_store(req.uri or "", origin)
        want = "uploading" if req.method == "glance-direct" else "queued"
        with self.db.session() as s:
            image = owned(s, ctx, image_id, "import data into")
            if image.status != want or (want == "uploading" and image.staged_file_id is None):
                raise Conflict(self._wrong_status(req.method, image.status))
            if not image.disk_format or not image.container_format:
                raise BadRequest(
                    "Properties disk_format and container_format must be set prior to "
                    "importing image data."
                )
            taken = s.execute(
                update(m.Image)
                .where(m.Image.id == image.id, m.Image.status == want)
                .values(status="importing", updated_at=self.clock.now())
                .returning(m.Image.id)
            ).first()
            if taken is None:
                raise Conflict(f"Image {image_id} is already being imported.")
            now = self.clock.now()
            task = m.ImageTask(
                id=str(uuid.uuid4()),
                type=TASK_TYPE,
                status="processing",
                owner=image.owner or ctx.project_id or "",
                image_id=image.id,
                input={"image_id": image.id, "import_req": {"method": _method_view(req)}},
                result=None,
                message="",
                created_at=now,
                updated_at=now,
                expires_at=None,
            )
            s.add(task)
            s.flush()
            return task

    @staticmethod
    def _wrong_status(method: str, status: str) -> str:
        if method == "glance-direct":
            return (
                f"Image is {status}: glance-direct imports staged data; stage it first "
                "(PUT /v2/images/{id}/stage) on a queued image."
            )
        return f"Image is {status}: web-download imports into a queued image only."

    def _check_own_object_store(self, uri: str, origin: str) -> None:
        """Only an object of this cloud's object store; never a fetch from elsewhere."""
        ours = urlsplit(origin)
        theirs = urlsplit(uri)
        same_origin = (
            theirs.scheme == ours.scheme
            and theirs.hostname == ours.hostname
            and theirs.port == ours.port
        )
        path = theirs.path
        if not same_origin or not path.startswith(OBJECT_STORE_PREFIX) or ".." in path:
            raise BadRequest(
                "web-download imports only from this cloud's own object store: give the URL "
                f"of an object under {origin.rstrip('/')}{OBJECT_STORE_PREFIX}. "
                "Upload other data with glance-direct (stage, then import)."
            )
        if self.objects is None:
            raise BadRequest(
                "web-download is not available on this cloud (its object store is not linked "
                "to the image service): use glance-direct."
            )

    def run(self, ctx: RequestContext, task_id: str, req: ImportRequest) -> None:
        """Carry out a started import; the task ends in success or failure, never raises."""
        with self.db.session() as s:
            task = s.get(m.ImageTask, task_id)
            image = s.get(m.Image, task.image_id) if task and task.image_id else None
            if task is None or image is None:
                return
            image_id, disk_format, staged = (
                image.id,
                image.disk_format or "raw",
                image.staged_file_id,
            )
        try:
            if req.method == "web-download":
                staged = self._download(ctx, image_id, req.uri or "")
            assert staged is not None
            digests, disk = self._inspect(staged, disk_format)
            self.record(image_id, staged, digests, disk, ("importing",))
        except Exception as exc:  # the task records every failure; the caller polls it
            message = str(exc) if isinstance(exc, ApiError | InvalidImage) else "import failed"
            if not isinstance(exc, ApiError | InvalidImage):
                log.exception("import of image %s failed", image_id)
            self._fail(task_id, image_id, message)
            return
        self._finish_task(task_id, "success", "", {"image_id": image_id})

    def _download(self, ctx: RequestContext, image_id: str, uri: str) -> str:
        assert self.objects is not None
        writer = self.store.writer()
        try:
            for chunk in self.objects.read_object(ctx, urlsplit(uri).path):
                writer.write(chunk)
            file_id = writer.commit()
        except BaseException:
            writer.abort()
            raise
        with self.db.session() as s:
            s.execute(update(m.Image).where(m.Image.id == image_id).values(staged_file_id=file_id))
        return file_id

    def _inspect(self, file_id: str, disk_format: str) -> tuple[Digests, DiskInfo]:
        digests = Digests()
        reader = self.store.open(file_id)
        try:
            for chunk in reader.chunks():
                digests.update(chunk)
        finally:
            reader.close()
        return digests, inspect(self.store.path(file_id), disk_format)

    def _fail(self, task_id: str, image_id: str, message: str) -> None:
        with self.db.session() as s:
            image = s.get(m.Image, image_id)
            staged = None
            if image is not None and image.status == "importing":
                staged, image.staged_file_id = image.staged_file_id, None
                image.status = "queued"
                image.updated_at = self.clock.now()
        self.store.delete([staged])
        self._finish_task(task_id, "failure", message, None)

    def _finish_task(
        self, task_id: str, status: str, message: str, result: dict[str, Any] | None
    ) -> None:
        now = self.clock.now()
        with self.db.session() as s:
            task = s.get(m.ImageTask, task_id)
            if task is not None:
                task.status, task.message, task.result = status, message, result
                task.updated_at = now
                task.expires_at = now + TASK_LIFETIME

    # ------------------------------------------------------------------ tasks

    def list_tasks(self, ctx: RequestContext, image_id: str | None = None) -> list[m.ImageTask]:
        """The caller's project's tasks (an admin's: all), newest first; of one image if given."""
        with self.db.session() as s:
            stmt = select(m.ImageTask).order_by(m.ImageTask.created_at.desc(), m.ImageTask.id)
            if image_id is not None:
                stmt = stmt.where(m.ImageTask.image_id == visible(s, ctx, image_id).id)
            if not ctx.is_admin:
                stmt = stmt.where(m.ImageTask.owner == (ctx.project_id or ""))
            return list(s.scalars(stmt))

    def show_task(self, ctx: RequestContext, task_id: str) -> m.ImageTask:
        with self.db.session() as s:
            task = s.get(m.ImageTask, task_id)
            if task is None or not (ctx.is_admin or task.owner == ctx.project_id):
                raise _task_not_found(task_id)
            return task

    # ------------------------------------------------------------------ start-up

    def sweep(self) -> None:
        """After a crash: imports cut short fail, their images go back as before."""
        with self.db.session() as s:
            cut = list(
                s.scalars(
                    select(m.ImageTask).where(m.ImageTask.status.in_(("pending", "processing")))
                )
            )
            ids = [(t.id, t.image_id) for t in cut]
        for task_id, image_id in ids:
            self._fail(task_id, image_id or "", "The import was interrupted by a restart.")
        with self.db.session() as s:
            s.execute(
                update(m.Image)
                .where(m.Image.status == "uploading", m.Image.staged_file_id.is_(None))
                .values(status="queued", updated_at=self.clock.now())
            )


def _method_view(req: ImportRequest) -> dict[str, str]:
    return {"name": req.method, **({"uri": req.uri} if req.uri else {})}


def _task_not_found(task_id: str) -> ApiError:
    return NotFound(f"No task found with ID {task_id[:64]}")
