"""Swift container requests: PUT (create or update), HEAD, GET (the listing), POST, DELETE.

A container is a bucket of the account's project, seen by S3 under the same name;
bucket names are one namespace for the whole cloud, so a name another project holds
is a 409. What Swift adds (metadata, ACLs, quotas, versions location) is kept beside.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.objectstore.api.swift.access import (
    Caller,
    check_manage,
    check_read,
)
from souverain.objectstore.api.swift.listing import ListingParams, in_window, listing_params
from souverain.objectstore.api.swift.wire import (
    HTML,
    TEXT,
    SwiftError,
    iso,
    listing,
    listing_format,
    meta_changes,
    meta_headers,
    timestamp,
)
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import BucketInfo, ObjectInfo
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.swift.acl import is_public_read, parse_acl
from souverain.objectstore.swift.metadata import ContainerMeta, SwiftMetadata

MAX_CONTAINER_NAME = 256
POLICY_NAME = "Policy-0"
QUOTA_KEYS = ("quota-bytes", "quota-count")


def check_container_name(name: str) -> None:
    size = len(name.encode("utf-8", "surrogatepass"))
    if not name:
        raise SwiftError(400, "A container name is needed.")
    if size > MAX_CONTAINER_NAME:
        raise SwiftError(400, f"Container name length of {size} longer than {MAX_CONTAINER_NAME}")
    if "/" in name or any(ord(c) < 32 for c in name):
        raise SwiftError(400, "Container names may not hold '/' or control characters.")


def expired(obj: ObjectInfo, now: dt.datetime) -> bool:
    at = obj.headers.get("x-delete-at") or ""
    return at.isdigit() and int(at) <= now.timestamp()


class ContainerHandlers:
    def __init__(self, service: ObjectStoreService, metadata: SwiftMetadata) -> None:
        self.service = service
        self.metadata = metadata

    def bucket(self, caller: Caller, name: str) -> BucketInfo:
        """The account's container of that name; 404 for a missing one or another's.

        A caller who does not manage the account learns only that it is refused, whether
        the container exists or not (its ACLs are checked once it is found)."""
        check_container_name(name)
        try:
            bucket = self.service.bucket(name)
        except S3Error:
            bucket = None
        if bucket is None or bucket.project_id != caller.project_id:
            if not caller.manages:
                raise caller.refuse()
            raise SwiftError(404, f"No container {name!r} in this account.")
        return bucket

    async def create(self, request: Request, caller: Caller, name: str) -> Response:
        check_manage(caller)
        check_container_name(name)
        meta, settings = _changes(request)
        try:
            bucket = await asyncio.to_thread(self.bucket, caller, name)
            status = 202
        except SwiftError:
            bucket = await asyncio.to_thread(self.new_bucket, caller, name)
            status = 201
        await self._apply(bucket, meta, settings)
        return Response(status_code=status, headers={"Content-Length": "0"}, media_type=HTML)

    def new_bucket(self, caller: Caller, name: str) -> BucketInfo:
        try:
            return self.service.buckets.create_bucket(
                caller.principal, name, None, name_rule=check_container_name
            )
        except S3Error as exc:
            if exc.code in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                raise SwiftError(
                    409, f"The name {name!r} is taken by another account; choose another."
                ) from None
            raise

    async def _apply(
        self, bucket: BucketInfo, meta: dict[str, str | None], settings: dict[str, str | None]
    ) -> ContainerMeta:
        if not meta and not settings:
            return await asyncio.to_thread(self.metadata.container, bucket.id)
        stored = await asyncio.to_thread(self.metadata.update_container, bucket.id, meta, settings)
        if "read" in settings:  # S3 reads the same rule: public-read when anyone may read
            public = is_public_read(parse_acl(stored.settings.get("read", "")))
            acl = "public-read" if public else "private"
            if bucket.acl != acl and bucket.acl in ("private", "public-read"):
                await asyncio.to_thread(self.service.set_bucket_acl, bucket, acl)
        return stored

    async def update(self, request: Request, caller: Caller, name: str) -> Response:
        check_manage(caller)
        bucket = await asyncio.to_thread(self.bucket, caller, name)
        meta, settings = _changes(request)
        await self._apply(bucket, meta, settings)
        return Response(status_code=204, headers={"Content-Length": "0"}, media_type=HTML)

    async def delete(self, request: Request, caller: Caller, name: str) -> Response:
        check_manage(caller)
        bucket = await asyncio.to_thread(self.bucket, caller, name)
        try:
            await asyncio.to_thread(self.service.delete_bucket, bucket)
        except S3Error as exc:
            if exc.code == "BucketNotEmpty":
                raise SwiftError(
                    409, "There was a conflict when trying to complete your request."
                ) from None
            raise
        return Response(status_code=204, media_type=HTML)

    def headers(self, caller: Caller, bucket: BucketInfo, meta: ContainerMeta) -> dict[str, str]:
        stored, count = self.service.bucket_usage(bucket)
        headers = {
            "X-Container-Object-Count": str(count),
            "X-Container-Bytes-Used": str(stored),
            "X-Timestamp": timestamp(bucket.created_at),
            "X-Storage-Policy": POLICY_NAME,
            **meta_headers("X-Container-Meta-", meta.meta),
        }
        settings = meta.settings
        if settings.get("versions"):
            mode = settings.get("versions_mode", "stack")
            name = "X-History-Location" if mode == "history" else "X-Versions-Location"
            headers[name] = settings["versions"]
        if caller.manages:
            for key, header in (("read", "X-Container-Read"), ("write", "X-Container-Write")):
                if settings.get(key):
                    headers[header] = settings[key]
        else:
            headers = {k: v for k, v in headers.items() if "temp-url-key" not in k.lower()}
        return headers

    async def show(self, request: Request, caller: Caller, name: str) -> Response:
        bucket = await asyncio.to_thread(self.bucket, caller, name)
        meta = await asyncio.to_thread(self.metadata.container, bucket.id)
        check_read(caller, meta, listing=True)
        headers = await asyncio.to_thread(self.headers, caller, bucket, meta)
        headers["Accept-Ranges"] = "bytes"
        if request.method == "HEAD":
            return Response(status_code=204, headers=headers, media_type=TEXT)
        params = listing_params(request.query_params)
        now = dt.datetime.now(dt.UTC)
        items = await asyncio.to_thread(self.objects, bucket, params, now)
        fmt = listing_format(request.query_params, request.headers.get("accept", ""))
        return listing("container", name, items, fmt, headers)

    def objects(
        self, bucket: BucketInfo, params: ListingParams, now: dt.datetime
    ) -> list[dict[str, Any]]:
        """One page of the container's objects and roll-ups, as JSON shows them."""
        if params.reverse:
            page = self.service.list_objects(bucket, params.prefix, params.delimiter, "", 10000)
        else:
            page = self.service.list_objects(
                bucket, params.prefix, params.delimiter, params.marker, params.limit
            )
        entries: list[tuple[str, dict[str, Any]]] = [(p, {"subdir": p}) for p in page.prefixes]
        for obj in page.objects:
            if not expired(obj, now):
                entries.append((obj.key, _object_item(obj, f"AUTH_{bucket.project_id}")))
        entries.sort(key=lambda e: e[0].encode("utf-8", "surrogatepass"), reverse=params.reverse)
        shown = [item for key, item in entries if in_window(key, params)]
        return shown[: params.limit]


def _object_item(obj: ObjectInfo, account: str) -> dict[str, Any]:
    etag = obj.headers.get("x-swift-etag") or obj.etag
    item: dict[str, Any] = {
        "hash": etag,
        "last_modified": iso(obj.last_modified),
        "bytes": obj.size,
        "name": obj.key,
        "content_type": obj.headers.get("content-type", "application/octet-stream"),
    }
    target = obj.headers.get("x-symlink-target")
    if target:
        item["symlink_path"] = f"/v1/{account}/{target}"
    return item


def _changes(request: Request) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """(metadata, settings) a PUT or POST sets or removes; 400 for values Swift refuses."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    meta = meta_changes(headers, "x-container-meta-", "x-remove-container-meta-")
    for key in QUOTA_KEYS:
        value = meta.get(key)
        if value is not None and not value.isdigit():
            raise SwiftError(400, f"X-Container-Meta-{key} must be a whole number.")
    settings: dict[str, str | None] = {}
    for key in ("read", "write"):
        if f"x-container-{key}" in headers:
            value = headers[f"x-container-{key}"].strip()
            parse_acl(value, write=key == "write")  # AclError: a 400
            settings[key] = value or None
        if f"x-remove-container-{key}" in headers:
            settings[key] = None
    for header, mode in (("x-versions-location", "stack"), ("x-history-location", "history")):
        if headers.get(header, "").strip():
            location = headers[header].strip()
            check_container_name(location)
            settings.update(versions=location, versions_mode=mode)
        if f"x-remove-{header[2:]}" in headers or (header in headers and not headers[header]):
            settings.update(versions=None, versions_mode=None)
    return meta, settings
