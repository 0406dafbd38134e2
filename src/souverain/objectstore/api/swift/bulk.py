"""Bulk operations on the account: delete (`?bulk-delete`, by DELETE or POST, a
newline-separated list of URL-encoded `/container/object` and `/container` paths) and
extract (`PUT ?extract-archive=tar`, a tar archive's files as objects).

The answer is always a 200 whose body carries the outcome (Swift's shape), in JSON when
the client accepts it, else as `Key: value` lines.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import tarfile
import tempfile
import urllib.parse
from typing import IO, Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.objectstore.api.swift import transfer
from souverain.objectstore.api.swift.access import Caller, check_manage, check_write
from souverain.objectstore.api.swift.container import ContainerHandlers
from souverain.objectstore.api.swift.objects import ObjectHandlers, check_object_name
from souverain.objectstore.api.swift.wire import JSON, TEXT, TITLES, SwiftError
from souverain.objectstore.errors import S3Error

MAX_DELETES = 10000
MAX_PATH_BYTES = 2048
MAX_BODY = MAX_DELETES * MAX_PATH_BYTES


async def read_paths(request: Request) -> list[str]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise SwiftError(413, f"At most {MAX_DELETES} paths per bulk delete.")
    lines = [line.strip() for line in body.decode("utf-8", "replace").splitlines()]
    paths = [urllib.parse.unquote(line) for line in lines if line]
    if len(paths) > MAX_DELETES:
        raise SwiftError(413, f"At most {MAX_DELETES} paths per bulk delete.")
    return paths


class BulkDelete:
    def __init__(self, containers: ContainerHandlers, objects: ObjectHandlers) -> None:
        self.containers = containers
        self.objects = objects

    async def __call__(self, request: Request, caller: Caller) -> Response:
        paths = await read_paths(request)
        outcome: dict[str, Any] = {"Number Deleted": 0, "Number Not Found": 0, "Errors": []}
        for path in paths:
            status = await asyncio.to_thread(self._delete_one, caller, path)
            if status == 204:
                outcome["Number Deleted"] += 1
            elif status == 404:
                outcome["Number Not Found"] += 1
            else:
                outcome["Errors"].append([path, _status_text(status)])
        failed = bool(outcome["Errors"])
        outcome["Response Status"] = "400 Bad Request" if failed else "200 OK"
        outcome["Response Body"] = ""
        if "application/json" in request.headers.get("accept", ""):
            return Response(json.dumps(outcome), 200, media_type=JSON)
        lines = [f"{k}: {v}" for k, v in outcome.items() if k != "Errors"]
        lines.append("Errors:")
        lines += [f"{path}, {status}" for path, status in outcome["Errors"]]
        return Response("\n".join(lines) + "\n", 200, media_type=TEXT)

    def _delete_one(self, caller: Caller, path: str) -> int:
        container, _, key = path.lstrip("/").partition("/")
        try:
            bucket = self.containers.bucket(caller, container)
            if not key:
                check_manage(caller)
                self.containers.service.delete_bucket(bucket)
                return 204
            meta = self.containers.metadata.container(bucket.id)
            check_write(caller, meta)
            obj = self.objects.find(bucket, key)
            self.objects.remove(caller, bucket, meta.settings, key, obj)
            return 204
        except SwiftError as exc:
            return exc.status
        except S3Error as exc:
            return 409 if exc.code == "BucketNotEmpty" else 400


def _status_text(status: int) -> str:
    return f"{status} {TITLES.get(status, 'Error')}"


TAR_FORMATS = ("tar", "tar.gz", "tgz", "tar.bz2", "tbz")  # read as a stream, compression found
MAX_ARCHIVE_FILES = 10000


class ExtractArchive:
    """`PUT ?extract-archive=tar|tar.gz|tar.bz2` on the account (the archive's first path
    part names each container, made if missing) or on a container (names stay under it).

    The archive is spooled to a temporary file and read as a stream; each file becomes
    one object through the same path as a PUT (quotas, versions)."""

    def __init__(self, containers: ContainerHandlers, objects: ObjectHandlers) -> None:
        self.containers = containers
        self.objects = objects

    async def __call__(self, request: Request, caller: Caller, container: str = "") -> Response:
        if request.query_params.get("extract-archive", "") not in TAR_FORMATS:
            raise SwiftError(400, f"Unsupported archive format; use one of {TAR_FORMATS}.")
        if not container:
            check_manage(caller)
        with tempfile.TemporaryFile() as spool:
            async for chunk in request.stream():
                await asyncio.to_thread(spool.write, chunk)
            spool.seek(0)
            outcome = await asyncio.to_thread(self._extract, caller, spool, container)
        failed = bool(outcome["Errors"])
        outcome["Response Status"] = "400 Bad Request" if failed else "201 Created"
        outcome["Response Body"] = ""
        if "application/json" in request.headers.get("accept", ""):
            return Response(json.dumps(outcome), 200, media_type=JSON)
        lines = [f"{k}: {v}" for k, v in outcome.items() if k != "Errors"]
        lines.append("Errors:")
        lines += [f"{path}, {status}" for path, status in outcome["Errors"]]
        return Response("\n".join(lines) + "\n", 200, media_type=TEXT)

    def _extract(self, caller: Caller, spool: IO[bytes], base: str) -> dict[str, Any]:
        outcome: dict[str, Any] = {"Number Files Created": 0, "Errors": []}
        try:
            archive = tarfile.open(fileobj=spool, mode="r|*")  # noqa: SIM115 - closed below
        except (tarfile.TarError, OSError, EOFError):
            raise SwiftError(400, "Invalid Tar File: the body is not a readable archive.") from None
        with archive:
            for count, member in enumerate(archive):
                if count >= MAX_ARCHIVE_FILES:
                    raise SwiftError(400, f"At most {MAX_ARCHIVE_FILES} files per archive.")
                if not member.isfile():
                    continue
                path = member.name
                while path.startswith(("./", "/")):
                    path = path[1:] if path.startswith("/") else path[2:]
                path = f"{base}/{path}" if base else path
                status = self._store(caller, path, archive, member)
                if status == 201:
                    outcome["Number Files Created"] += 1
                else:
                    outcome["Errors"].append([path, _status_text(status)])
        return outcome

    def _store(
        self, caller: Caller, path: str, archive: tarfile.TarFile, member: tarfile.TarInfo
    ) -> int:
        container, _, key = path.partition("/")
        source = archive.extractfile(member)
        if source is None:
            return 400
        try:
            check_object_name(key)
            try:
                bucket = self.containers.bucket(caller, container)
            except SwiftError:
                check_manage(caller)
                bucket = self.containers.new_bucket(caller, container)
            meta = self.containers.metadata.container(bucket.id)
            check_write(caller, meta)
            new = transfer.from_file(self.objects.service, self.objects.settings, source)
            new.headers = {
                "content-type": mimetypes.guess_type(key)[0] or "application/octet-stream"
            }
            self.objects.store(caller, bucket, meta.settings, key, new)
        except SwiftError as exc:
            return exc.status
        except S3Error:
            return 400
        return 201
