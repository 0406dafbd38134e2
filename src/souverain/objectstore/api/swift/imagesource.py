"""This cloud's objects as the image service's web-download reads them.

`read_object(ctx, path)` takes the URL path of an object of this cloud's Swift API
(`/object-storage/v1/AUTH_<project>/<container>/<object>`, percent-encoded as in a URL)
and yields its bytes, decided exactly as a Swift GET by the same caller: the account's
own readers and members as the policy says, anyone else only as the container's read
ACL allows. Expired objects, symlinks and dynamic large objects are followed as a GET
follows them (a static large object's bytes are the object's own). It lives beside the
Swift handlers because it reuses their rules; it never speaks HTTP.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest
from souverain.config import ObjectStoreSettings
from souverain.objectstore.api.swift import transfer
from souverain.objectstore.api.swift.access import account_project, caller_for, check_read
from souverain.objectstore.api.swift.container import ContainerHandlers
from souverain.objectstore.api.swift.objects import SYMLINK_HEADER, ObjectHandlers
from souverain.objectstore.api.swift.wire import SwiftError
from souverain.objectstore.errors import S3Error
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.swift.acl import AclError
from souverain.objectstore.swift.metadata import SwiftMetadata

SWIFT_PREFIX = "/object-storage/v1/"
READ_ACTION = "object-store:object:show"


class ObjectReadRefused(ApiError):
    """The object cannot be read by this caller; the image import fails with this message."""

    status = 400
    title = "Bad Request"


def object_location(path: str) -> tuple[str, str, str]:
    """(project, container, object) of an object's URL path; BadRequest for anything else."""
    if not path.startswith(SWIFT_PREFIX):
        raise BadRequest(f"Give the URL of an object under {SWIFT_PREFIX} of this cloud.")
    account, _, rest = path[len(SWIFT_PREFIX) :].partition("/")
    container, _, name = rest.partition("/")
    parts = [urllib.parse.unquote(p) for p in (account, container, name)]
    segments = [s for p in parts for s in p.split("/")]
    if not all(parts) or ".." in segments or any("\x00" in p for p in parts):
        raise BadRequest(
            "The object URL must be /object-storage/v1/AUTH_<project>/<container>/<object>, "
            "with no empty part and no '..'."
        )
    try:
        project_id = account_project(parts[0])
    except SwiftError as exc:
        raise BadRequest(exc.message) from None
    return project_id, parts[1], parts[2]


class SwiftObjectSource:
    """The `ObjectSource` the image service reads web-download objects through."""

    def __init__(
        self, service: ObjectStoreService, settings: ObjectStoreSettings, clock: Clock
    ) -> None:
        self.service = service
        metadata = SwiftMetadata(service.db, clock)
        self.containers = ContainerHandlers(service, metadata)
        self.objects = ObjectHandlers(service, metadata, self.containers, settings)

    def read_object(self, ctx: RequestContext, path: str) -> Iterator[bytes]:
        """The object's bytes in chunks; ObjectReadRefused when a Swift GET would fail."""
        project_id, container, name = object_location(path)
        try:
            chunks = self._open(ctx, project_id, container, name)
        except (SwiftError, S3Error, AclError) as exc:
            raise _refused(exc, path, ctx.project_id != project_id) from None
        return chunks

    def _open(
        self, ctx: RequestContext, project_id: str, container: str, name: str
    ) -> Iterator[bytes]:
        caller = caller_for(ctx, project_id, READ_ACTION)
        bucket = self.containers.bucket(caller, container)
        check_read(caller, self.objects.metadata.container(bucket.id))
        obj = self.objects.find(bucket, name)
        if obj.headers.get(SYMLINK_HEADER):
            bucket, obj = self.objects.follow(caller, obj)
        parts = self.objects.dlo_parts(caller, obj)
        if parts is not None:
            return transfer.read_many(self.service, parts, 0, sum(p.size for p in parts) - 1)
        return transfer.read_range(self.service, obj, 0, obj.size - 1)


def _refused(exc: Exception, path: str, foreign: bool) -> ObjectReadRefused:
    status = getattr(exc, "status", 400)
    if status in (401, 403) and foreign:
        why = (
            "you may not read it: it belongs to another project and its container's read "
            "ACL does not grant you (ask its owner to add your project to X-Container-Read)"
        )
    elif status == 404:
        why = "it does not exist (check the container and object names)"
    else:
        why = getattr(exc, "message", None) or str(exc) or "the object store refused it"
    return ObjectReadRefused(f"Cannot import object {path}: {why}.")
