"""Swift object requests: PUT (upload, copy, static manifest), GET and HEAD (ranges,
conditions, large objects), POST (metadata, expiry), DELETE, COPY.

Objects are S3 objects of the container's bucket: X-Object-Meta-* is the same user
metadata as x-amz-meta-*, and the bytes are the same bytes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import mimetypes
import time
import urllib.parse
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from souverain.config import ObjectStoreSettings
from souverain.objectstore.api.conditions import check_conditions, parse_range
from souverain.objectstore.api.swift import transfer
from souverain.objectstore.api.swift.access import Caller, check_read, check_write
from souverain.objectstore.api.swift.container import ContainerHandlers, expired
from souverain.objectstore.api.swift.wire import HTML, SwiftError, http_date, timestamp
from souverain.objectstore.errors import S3Error
from souverain.objectstore.policy import Principal
from souverain.objectstore.records import BucketInfo, NewObject, ObjectInfo
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.swift.expirer import Expirer
from souverain.objectstore.swift.manifest import ManifestError, parse_slo, split_path
from souverain.objectstore.swift.metadata import SwiftMetadata, check_metadata

MAX_OBJECT_NAME = 1024
# Headers kept with an object, as S3 keeps them (content-type & co)
KEPT = ("content-type", "content-disposition", "content-encoding", "cache-control", "expires")
SLO_HEADER = "x-static-large-object"
DLO_HEADER = "x-object-manifest"
DELETE_AT = "x-delete-at"
SYMLINK_HEADER = "x-symlink-target"
SYMLINK_LOOP_LIMIT = 2


class ObjectHandlers:
    def __init__(
        self,
        service: ObjectStoreService,
        metadata: SwiftMetadata,
        containers: ContainerHandlers,
        settings: ObjectStoreSettings,
    ) -> None:
        self.service = service
        self.metadata = metadata
        self.containers = containers
        self.settings = settings
        self.expirer = Expirer(service)

    # ------------------------------------------------------------------ reading

    def find(self, bucket: BucketInfo, key: str) -> ObjectInfo:
        """The key's live version; 404 when missing or past its X-Delete-At (then removed)."""
        try:
            obj = self.service.head_object(bucket, key)
        except S3Error:
            raise SwiftError(404, "The object was not found.") from None
        if expired(obj, dt.datetime.now(dt.UTC)):
            self.service.delete_object(_system(bucket), bucket, key)
            raise SwiftError(404, "The object was not found: it expired.")
        return obj

    async def show(self, request: Request, caller: Caller, container: str, key: str) -> Response:
        bucket = await asyncio.to_thread(self.containers.bucket, caller, container)
        check_read(caller, await asyncio.to_thread(self.metadata.container, bucket.id))
        obj = await asyncio.to_thread(self.find, bucket, key)
        if obj.headers.get(SYMLINK_HEADER) and request.query_params.get("symlink") != "get":
            bucket, obj = await asyncio.to_thread(self.follow, caller, obj)
            key = obj.key
        if request.query_params.get("multipart-manifest") == "get":
            found = await asyncio.to_thread(self.metadata.manifest, bucket.id, key, obj.etag)
            if found is not None:
                return Response(_json(found), 200, media_type="application/json; charset=utf-8")
        parts = await asyncio.to_thread(self.dlo_parts, caller, obj)
        size = sum(p.size for p in parts) if parts is not None else obj.size
        headers = _object_headers(obj, parts, size)
        conditions = {
            k.lower(): v for k, v in request.headers.items() if k.lower().startswith("if-")
        }
        check_conditions(conditions, _as_etag(obj, headers["Etag"]), headers)
        start, end, status = 0, size - 1, 200
        wanted = request.headers.get("range")
        if wanted and size > 0:
            found_range = parse_range(wanted, size)
            if found_range is not None:
                start, end = found_range
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if request.query_params.get("inline") is not None or "inline" in request.query_params:
            headers["Content-Disposition"] = "inline"
        headers["Content-Length"] = str(max(0, end - start + 1))
        for part in parts if parts is not None else [obj]:
            transfer.refuse_customer_key(part)  # before the status line goes out
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        chunks = (
            transfer.read_many(self.service, parts, start, end)
            if parts is not None
            else transfer.read_range(self.service, obj, start, end)
        )
        sent = [0]
        response = StreamingResponse(transfer.counted(chunks, sent), status, headers=headers)
        self.service.egress(bucket, max(0, end - start + 1))
        return response

    def follow(self, caller: Caller, link: ObjectInfo) -> tuple[BucketInfo, ObjectInfo]:
        """What a symlink points at (through at most SYMLINK_LOOP_LIMIT links); 404 when
        the target is gone, 409 for a loop."""
        obj = link
        for _ in range(SYMLINK_LOOP_LIMIT):
            container, key = split_path(obj.headers[SYMLINK_HEADER])
            bucket = self.containers.bucket(caller, container)
            check_read(caller, self.metadata.container(bucket.id))
            obj = self.find(bucket, key)
            if not obj.headers.get(SYMLINK_HEADER):
                return bucket, obj
        raise SwiftError(
            409, f"Too many levels of symbolic links, maximum allowed is {SYMLINK_LOOP_LIMIT}"
        )

    def dlo_parts(self, caller: Caller, obj: ObjectInfo) -> list[ObjectInfo] | None:
        """A dynamic large object's segments (objects under its manifest's prefix), in order."""
        manifest = obj.headers.get(DLO_HEADER)
        if not manifest:
            return None
        container, prefix = split_path(manifest)
        bucket = self.containers.bucket(caller, container)
        check_read(caller, self.metadata.container(bucket.id))
        page = self.service.list_objects(bucket, prefix, "", "", 1000)
        # listings carry no bytes: each segment is read as itself
        return [
            self.service.head_object(bucket, o.key)
            for o in page.objects
            if o.key != obj.key or o.bucket != obj.bucket
        ]

    # ------------------------------------------------------------------ writing

    async def create(self, request: Request, caller: Caller, container: str, key: str) -> Response:
        check_object_name(key)
        bucket = await asyncio.to_thread(self.containers.bucket, caller, container)
        meta = await asyncio.to_thread(self.metadata.container, bucket.id)
        check_write(caller, meta)
        template = new_template(request, key)
        source = request.headers.get("x-copy-from")
        manifest_put = request.query_params.get("multipart-manifest") == "put"
        if source:
            return await self.copy(request, caller, source, bucket, key, template)
        if template.headers.get(SYMLINK_HEADER) and request.headers.get("content-length") != "0":
            raise SwiftError(400, "Symlink requests require a zero byte body")
        if manifest_put:
            body = await _small_body(request, 2 * 1024 * 1024)
            new, segments = await asyncio.to_thread(self._gather_slo, caller, body, bucket)
        else:
            seal = None
            if self.service.sealer.has_default(bucket):
                seal = await asyncio.to_thread(self.service.sealer.default, bucket)
            new = await transfer.receive(self.service, self.settings, request, seal)
        wanted = request.headers.get("etag", "").strip('"')
        if wanted and not manifest_put and wanted != new.etag:
            await asyncio.to_thread(self.service.store.delete, (s[0] for s in new.segments))
            raise SwiftError(422, "The body's MD5 does not match the Etag sent.")
        _fill(new, template)
        if manifest_put:
            new.headers["x-swift-etag"] = new.etag
        info = await asyncio.to_thread(self.store, caller, bucket, meta.settings, key, new)
        if manifest_put:
            await asyncio.to_thread(
                self.metadata.save_manifest, bucket.id, key, info.etag, segments
            )
        etag = f'"{new.etag}"' if manifest_put else info.etag
        return _created(etag, info)

    def store(
        self,
        caller: Caller,
        bucket: BucketInfo,
        settings: dict[str, str],
        key: str,
        new: NewObject,
    ) -> ObjectInfo:
        """Record the new version: quotas checked, the old one kept if the container keeps
        versions; the new bytes are released if anything refuses."""
        try:
            self._check_container_quota(bucket, new.size)
            self._keep_version(caller, bucket, settings, key)
            info = self.service.put_object(caller.principal, bucket, key, new)
        except BaseException:
            self.service.store.delete(s[0] for s in new.segments)
            raise
        self._schedule(bucket, key, new.headers)
        return info

    def _schedule(self, bucket: BucketInfo, key: str, headers: dict[str, str]) -> None:
        """The expirer's note of when the key is due, or none (the old one no longer holds)."""
        at = headers.get(DELETE_AT, "")
        self.expirer.schedule(bucket.id, key, int(at) if at.isdigit() else None)

    def _check_container_quota(self, bucket: BucketInfo, size: int) -> None:
        meta = self.metadata.container(bucket.id).meta
        max_bytes, max_count = meta.get("quota-bytes"), meta.get("quota-count")
        if max_bytes is None and max_count is None:
            return
        stored, count = self.service.bucket_usage(bucket)
        if max_bytes is not None and stored + size > int(max_bytes):
            raise SwiftError(413, f"Upload exceeds the container's quota of {max_bytes} bytes.")
        if max_count is not None and count + 1 > int(max_count):
            raise SwiftError(413, f"Upload exceeds the container's quota of {max_count} objects.")

    def _keep_version(
        self, caller: Caller, bucket: BucketInfo, settings: dict[str, str], key: str
    ) -> None:
        """Before an overwrite in a versioned container: the current object into the
        versions container as `<3 hex digits of the name's length><name>/<timestamp>`."""
        location = settings.get("versions")
        if not location or settings.get("versions_mode") == "history":
            return
        try:
            current = self.service.head_object(bucket, key)
        except S3Error:
            return
        self._archive(caller, location, key, current)

    def _archive(self, caller: Caller, location: str, key: str, current: ObjectInfo) -> None:
        target = self.containers.bucket(caller, location)
        name = f"{len(key.encode()):03x}{key}/{time.time():.5f}"
        seal = self.service.sealer.default(target)
        copy = transfer.gather(self.service, self.settings, [current], seal)
        copy.headers, copy.user_meta = dict(current.headers), dict(current.user_meta)
        self.service.put_object(caller.principal, target, name, copy)

    def _gather_slo(
        self, caller: Caller, body: bytes, target: BucketInfo
    ) -> tuple[NewObject, list[dict[str, Any]]]:
        try:
            segments = parse_slo(body)
        except ManifestError as exc:
            raise SwiftError(400, str(exc)) from None
        sources: list[ObjectInfo] = []
        stored: list[dict[str, Any]] = []
        for i, seg in enumerate(segments):
            bucket = self.containers.bucket(caller, seg.container)
            check_read(caller, self.metadata.container(bucket.id))
            try:
                obj = self.find(bucket, seg.name)
            except SwiftError:
                raise SwiftError(400, f"Index {i}: segment {seg.path} was not found.") from None
            if seg.etag is not None and seg.etag.strip('"') != obj.etag:
                raise SwiftError(400, f"Index {i}: Etag mismatch for {seg.path}.")
            if seg.size is not None and seg.size != obj.size:
                raise SwiftError(400, f"Index {i}: Size mismatch for {seg.path}.")
            sources.append(obj)
            stored.append({"name": seg.path, "hash": obj.etag, "bytes": obj.size})
        new = transfer.gather(
            self.service, self.settings, sources, self.service.sealer.default(target)
        )
        joined = "".join(s.etag for s in sources).encode()
        new.etag = hashlib.md5(joined, usedforsecurity=False).hexdigest()
        new.headers[SLO_HEADER] = "True"
        return new, stored

    async def copy(
        self,
        request: Request,
        caller: Caller,
        source: str,
        bucket: BucketInfo,
        key: str,
        template: NewObject,
    ) -> Response:
        src_container, src_key = split_path(source)
        if not src_container or not src_key:
            raise SwiftError(412, "X-Copy-From must be <container>/<object>.")
        src_bucket = await asyncio.to_thread(self.containers.bucket, caller, src_container)
        check_read(caller, await asyncio.to_thread(self.metadata.container, src_bucket.id))
        src = await asyncio.to_thread(self.find, src_bucket, src_key)
        seal = await asyncio.to_thread(self.service.sealer.default, bucket)
        new = await asyncio.to_thread(transfer.gather, self.service, self.settings, [src], seal)
        fresh = request.headers.get("x-fresh-metadata", "").lower() in ("true", "1", "yes")
        if not fresh:
            new.headers = {k: v for k, v in src.headers.items() if k in KEPT}
            new.user_meta = dict(src.user_meta)
        explicit = {k.lower() for k in request.headers}
        for name in KEPT:
            if name in explicit and name in template.headers:
                new.headers[name] = template.headers[name]
        new.user_meta.update(template.user_meta)
        if DELETE_AT in template.headers:
            new.headers[DELETE_AT] = template.headers[DELETE_AT]
        meta = await asyncio.to_thread(self.metadata.container, bucket.id)
        info = await asyncio.to_thread(self.store, caller, bucket, meta.settings, key, new)
        response = _created(info.etag, info)
        for name, value in info.user_meta.items():
            response.headers[f"X-Object-Meta-{name.title()}"] = value
        response.headers["X-Copied-From"] = urllib.parse.quote(f"{src_container}/{src_key}")
        response.headers["X-Copied-From-Last-Modified"] = http_date(src.last_modified)
        return response

    async def copy_to(self, request: Request, caller: Caller, container: str, key: str) -> Response:
        """COPY: the object to the `Destination` header's container/object."""
        # a caller who may not read the source is refused before the request is checked
        source_bucket = await asyncio.to_thread(self.containers.bucket, caller, container)
        check_read(caller, await asyncio.to_thread(self.metadata.container, source_bucket.id))
        dest = request.headers.get("destination", "")
        dest_container, dest_key = split_path(dest)
        if not dest_container or not dest_key:
            raise SwiftError(412, "Destination must be <container>/<object>.")
        check_object_name(dest_key)
        bucket = await asyncio.to_thread(self.containers.bucket, caller, dest_container)
        check_write(caller, await asyncio.to_thread(self.metadata.container, bucket.id))
        template = new_template(request, dest_key)
        source = urllib.parse.quote(f"{container}/{key}")
        return await self.copy(request, caller, source, bucket, dest_key, template)

    async def update(self, request: Request, caller: Caller, container: str, key: str) -> Response:
        """POST: the object's metadata replaced by what the request carries."""
        bucket = await asyncio.to_thread(self.containers.bucket, caller, container)
        check_write(caller, await asyncio.to_thread(self.metadata.container, bucket.id))
        obj = await asyncio.to_thread(self.find, bucket, key)
        template = new_template(request, key, default_type=obj.headers.get("content-type", ""))
        headers = {k: v for k, v in obj.headers.items() if k in (SLO_HEADER, "x-swift-etag")}
        headers.update(template.headers)
        await asyncio.to_thread(
            self.service.objects.set_metadata, bucket, key, headers, template.user_meta
        )
        await asyncio.to_thread(self._schedule, bucket, key, headers)
        return Response(status_code=202, headers={"Content-Length": "0"}, media_type=HTML)

    async def delete(self, request: Request, caller: Caller, container: str, key: str) -> Response:
        bucket = await asyncio.to_thread(self.containers.bucket, caller, container)
        meta = await asyncio.to_thread(self.metadata.container, bucket.id)
        check_write(caller, meta)
        obj = await asyncio.to_thread(self.find, bucket, key)
        if request.query_params.get("multipart-manifest") == "delete":
            found = await asyncio.to_thread(self.metadata.manifest, bucket.id, key, obj.etag)
            for seg in found or []:
                await asyncio.to_thread(self._delete_segment, caller, str(seg["name"]))
        await asyncio.to_thread(self.remove, caller, bucket, meta.settings, key, obj)
        return Response(status_code=204, media_type=HTML)

    def _delete_segment(self, caller: Caller, path: str) -> None:
        seg_container, seg_key = split_path(path)
        try:
            bucket = self.containers.bucket(caller, seg_container)
            check_write(caller, self.metadata.container(bucket.id))
            self.service.delete_object(caller.principal, bucket, seg_key)
        except SwiftError:
            return

    def remove(
        self,
        caller: Caller,
        bucket: BucketInfo,
        settings: dict[str, str],
        key: str,
        obj: ObjectInfo,
    ) -> None:
        location = settings.get("versions")
        if location and settings.get("versions_mode") == "history":
            self._archive(caller, location, key, obj)
        elif location and self._restore(caller, bucket, location, key):
            return
        self.service.delete_object(caller.principal, bucket, key)
        self.metadata.drop_manifest(bucket.id, key)

    def _restore(self, caller: Caller, bucket: BucketInfo, location: str, key: str) -> bool:
        """Stack mode: the newest archived version back in place; whether there was one."""
        archive = self.containers.bucket(caller, location)
        prefix = f"{len(key.encode()):03x}{key}/"
        page = self.service.list_objects(archive, prefix, "", "", 10000)
        if not page.objects:
            return False
        newest = self.service.head_object(archive, page.objects[-1].key)
        copy = transfer.gather(self.service, self.settings, [newest])
        copy.headers, copy.user_meta = dict(newest.headers), dict(newest.user_meta)
        self.service.put_object(caller.principal, bucket, key, copy)
        self.service.delete_object(caller.principal, archive, newest.key)
        return True


# ---------------------------------------------------------------------- helpers


def check_object_name(key: str) -> None:
    if not key or len(key.encode("utf-8", "surrogatepass")) > MAX_OBJECT_NAME:
        size = len(key.encode("utf-8", "surrogatepass"))
        raise SwiftError(400, f"Object name length of {size} longer than {MAX_OBJECT_NAME}")
    if "\x00" in key:
        raise SwiftError(400, "Object names may not hold NUL characters.")


def new_template(request: Request, key: str, default_type: str = "") -> NewObject:
    """What a PUT or POST says of the object besides its bytes: headers, metadata, expiry."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    kept = {name: headers[name] for name in KEPT if headers.get(name)}
    if "content-type" not in kept:
        guessed = default_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
        kept["content-type"] = guessed
    user_meta = {
        name[len("x-object-meta-") :]: value
        for name, value in headers.items()
        if name.startswith("x-object-meta-") and len(name) > len("x-object-meta-")
    }  # an empty value is kept on objects (not on accounts and containers)
    try:
        check_metadata(user_meta)
    except ValueError as exc:
        raise SwiftError(400, str(exc)) from None
    if headers.get(DLO_HEADER):
        kept[DLO_HEADER] = headers[DLO_HEADER]
    if headers.get(SYMLINK_HEADER):
        container, name = split_path(headers[SYMLINK_HEADER])
        if not container or not name:
            raise SwiftError(
                412, "X-Symlink-Target header must be of the form <container name>/<object name>"
            )
        kept[SYMLINK_HEADER] = f"{container}/{name}"
    delete_at = _delete_at(headers)
    if delete_at is not None:
        kept[DELETE_AT] = str(delete_at)
    return NewObject(0, "", [], headers=kept, user_meta=user_meta)


def _delete_at(headers: dict[str, str]) -> int | None:
    if "x-delete-after" in headers:
        raw = headers["x-delete-after"].strip()
        if not raw.isdigit():
            raise SwiftError(400, "Non-integer X-Delete-After")
        return int(time.time()) + int(raw)
    if "x-delete-at" in headers:
        raw = headers["x-delete-at"].strip()
        if not raw.isdigit():
            raise SwiftError(400, "Non-integer X-Delete-At")
        if int(raw) <= time.time():
            raise SwiftError(400, "X-Delete-At in past")
        return int(raw)
    return None


def _fill(new: NewObject, template: NewObject) -> None:
    new.headers = {**template.headers, **new.headers}
    new.user_meta = dict(template.user_meta)


def _system(bucket: BucketInfo) -> Principal:
    return Principal("swift-expirer", bucket.project_id, frozenset({"member"}))


async def _small_body(request: Request, limit: int) -> bytes:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise SwiftError(413, f"Manifests are at most {limit} bytes.")
    return bytes(data)


def _json(value: Any) -> str:
    return json.dumps(value)


def _as_etag(obj: ObjectInfo, etag: str) -> ObjectInfo:
    """The object as the preconditions compare it: with the etag the client was shown."""
    return replace(obj, etag=etag.strip('"'))


def _object_headers(obj: ObjectInfo, parts: list[ObjectInfo] | None, size: int) -> dict[str, str]:
    etag = obj.etag
    if parts is not None:
        joined = "".join(p.etag for p in parts).encode()
        etag = '"' + hashlib.md5(joined, usedforsecurity=False).hexdigest() + '"'
    elif obj.headers.get(SLO_HEADER):
        etag = '"' + obj.headers.get("x-swift-etag", obj.etag) + '"'
    headers = {
        "Etag": etag,
        "Last-Modified": http_date(obj.last_modified),
        "X-Timestamp": timestamp(obj.last_modified),
        "Accept-Ranges": "bytes",
        "Content-Type": obj.headers.get("content-type", "application/octet-stream"),
    }
    for name, value in obj.headers.items():
        if name in ("content-type", "x-swift-etag"):
            continue
        headers[name.title()] = value
    for name, value in obj.user_meta.items():
        headers[f"X-Object-Meta-{name.title()}"] = value
    return headers


def _created(etag: str, info: ObjectInfo) -> Response:
    headers = {
        "Etag": etag,
        "Last-Modified": http_date(info.last_modified),
        "Content-Length": "0",
    }
    return Response(status_code=201, headers=headers, media_type=HTML)
