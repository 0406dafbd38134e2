"""Bulk delete (`?bulk-delete` on the account, by DELETE or POST): a newline-separated list
of URL-encoded `/container/object` and `/container` paths, deleted in one request.

The answer is always a 200 whose body carries the outcome (Swift's shape), in JSON when
the client accepts it, else as `Key: value` lines.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.objectstore.api.swift.access import Caller, check_manage, check_write
from souverain.objectstore.api.swift.container import ContainerHandlers
from souverain.objectstore.api.swift.objects import ObjectHandlers
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
