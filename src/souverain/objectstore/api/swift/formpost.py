"""FormPost requests: a signed HTML form's files stored under the form's object prefix.

The form's signature stands in for a token; the body is read whole, bounded by the
server's body limit (a POST is not an object upload).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from souverain.objectstore.api.swift.access import Caller
from souverain.objectstore.api.swift.objects import ObjectHandlers, check_object_name
from souverain.objectstore.api.swift.wire import HTML, SwiftError
from souverain.objectstore.records import NewObject
from souverain.objectstore.swift.formpost import (
    FormError,
    check_limits,
    check_signature,
    parse_form,
)

MAX_FORM_BYTES = 16 * 1024 * 1024  # read whole: a form is for a browser's few files


def is_form(request: Request) -> bool:
    return request.method == "POST" and request.headers.get("content-type", "").startswith(
        "multipart/form-data"
    )


class FormPost:
    def __init__(self, objects: ObjectHandlers) -> None:
        self.objects = objects

    async def __call__(
        self, request: Request, caller: Caller, container: str, prefix: str
    ) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise SwiftError(413, "FormPost: the form is too large")
        try:
            form = parse_form(request.headers["content-type"], bytes(body))
            keys = await asyncio.to_thread(self._keys, caller, container)
            root = request.scope.get("root_path", "")
            path = request.url.path
            local = path[len(root) :] if root and path.startswith(root) else path
            check_signature(form, {path, local}, keys, time.time())
            check_limits(form)
        except FormError as exc:
            raise SwiftError(exc.status, str(exc)) from None
        signed = Caller(caller.project_id, None, tempurl=True)
        bucket = await asyncio.to_thread(self.objects.containers.bucket, signed, container)
        meta = await asyncio.to_thread(self.objects.metadata.container, bucket.id)
        for upload in form.files:
            key = prefix + upload.filename
            check_object_name(key)
            etag = hashlib.md5(upload.data, usedforsecurity=False).hexdigest()
            new = NewObject(
                len(upload.data),
                etag,
                [],
                headers={"content-type": upload.content_type},
                data=upload.data,
            )
            await asyncio.to_thread(self.objects.store, signed, bucket, meta.settings, key, new)
        redirect = form.fields.get("redirect", "")
        if redirect:
            query = urllib.parse.urlencode({"status": 201, "message": ""})
            joiner = "&" if "?" in redirect else "?"
            return RedirectResponse(f"{redirect}{joiner}{query}", status_code=303)
        return Response("<html><h1>Created</h1></html>", 201, media_type=HTML)

    def _keys(self, caller: Caller, container: str) -> list[str]:
        meta = self.objects.metadata
        found = meta.account(caller.project_id)
        keys = [found[k] for k in ("temp-url-key", "temp-url-key-2") if found.get(k)]
        try:
            bucket = self.objects.containers.bucket(Caller(caller.project_id, None), container)
        except SwiftError:
            return keys
        settings = meta.container(bucket.id).meta
        return keys + [settings[k] for k in ("temp-url-key", "temp-url-key-2") if settings.get(k)]
