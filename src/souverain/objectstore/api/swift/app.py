"""The Swift v1 API: routes, the caller of each request, and Swift's error answers.

Mounted at `/object-storage` on the OpenStack listener: `/info` describes what runs,
`/v1/AUTH_<project>[/<container>[/<object>]]` are the account, its containers and
their objects, on the same buckets and bytes as S3. Every route names its policy
actions; the account's own readers and members are held to them, callers from other
projects and anonymous ones to the container's ACLs, temporary URLs to their signature.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp

from souverain.common.clock import Clock
from souverain.common.errors import ApiError
from souverain.common.middleware import state_of
from souverain.config import ObjectStoreSettings
from souverain.objectstore.api.swift.access import (
    Caller,
    account_project,
    check_manage,
    identify,
)
from souverain.objectstore.api.swift.account import AccountHandlers
from souverain.objectstore.api.swift.bulk import MAX_DELETES, BulkDelete, ExtractArchive
from souverain.objectstore.api.swift.container import POLICY_NAME, ContainerHandlers
from souverain.objectstore.api.swift.formpost import MAX_FORM_BYTES, FormPost, is_form
from souverain.objectstore.api.swift.objects import SYMLINK_LOOP_LIMIT, ObjectHandlers
from souverain.objectstore.api.swift.staticweb import StaticWeb, web_mode
from souverain.objectstore.api.swift.wire import (
    JSON,
    TEXT,
    XML,
    SwiftError,
    error_response,
    from_s3,
    new_trans_id,
    render_error,
)
from souverain.objectstore.errors import S3Error
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.swift import tempurl
from souverain.objectstore.swift.acl import AclError
from souverain.objectstore.swift.metadata import MetadataError, SwiftMetadata
from souverain.openstack.auth import TokenValidator, audit, authenticate
from souverain.openstack.faults import ErrorLayer
from souverain.openstack.routing import EdgeRoute

Handler = Callable[..., Awaitable[Response]]

ACCOUNT_ACTIONS = {
    "GET": "object-store:account:show",
    "HEAD": "object-store:account:show",
    "POST": "object-store:account:update",
    "DELETE": "object-store:account:bulk_delete",
    "PUT": "object-store:account:extract_archive",
}
CONTAINER_ACTIONS = {
    "GET": "object-store:container:show",
    "HEAD": "object-store:container:show",
    "PUT": "object-store:container:create",
    "POST": "object-store:container:update",
    "DELETE": "object-store:container:delete",
}
OBJECT_ACTIONS = {
    "GET": "object-store:object:show",
    "HEAD": "object-store:object:show",
    "PUT": "object-store:object:create",
    "POST": "object-store:object:update",
    "DELETE": "object-store:object:delete",
    "COPY": "object-store:object:copy",
}
TEMPURL_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
# No <allow-access-from>: no other site's plugin may read through a visitor's session.
CROSSDOMAIN = (
    '<?xml version="1.0"?>\n'
    "<!DOCTYPE cross-domain-policy SYSTEM "
    '"http://www.adobe.com/xml/dtds/cross-domain-policy.dtd" >\n'
    "<cross-domain-policy>\n"
    '<site-control permitted-cross-domain-policies="master-only"/>\n'
    "</cross-domain-policy>"
)


def capabilities(settings: ObjectStoreSettings) -> dict[str, Any]:
    """What GET /info lists: only what this API implements."""
    return {
        "swift": {
            "version": "2.34.0",
            "max_file_size": settings.max_object_bytes,
            "max_object_name_length": 1024,
            "container_listing_limit": 10000,
            "account_listing_limit": 10000,
            "max_container_name_length": 256,
            "max_meta_name_length": 128,
            "max_meta_value_length": 256,
            "max_meta_count": 90,
            "max_meta_overall_size": 4096,
            "max_header_size": 8192,
            "extra_header_count": 0,
            "strict_cors_mode": True,
            "allow_account_management": False,
            "account_autocreate": True,
            "policies": [{"name": POLICY_NAME, "aliases": POLICY_NAME, "default": True}],
        },
        "tempurl": {
            "methods": list(TEMPURL_METHODS),
            "incoming_remove_headers": [],
            "outgoing_remove_headers": [],
            "allowed_digests": ["sha1", "sha256", "sha512"],
        },
        "slo": {"max_manifest_segments": 1000, "max_manifest_size": 8388608, "min_segment_size": 1},
        "account_quotas": {},
        "container_quotas": {},
        "versioned_writes": {"allowed_flags": ["x-versions-location", "x-history-location"]},
        "dlo": {"max_segments": 1000},
        "expirer": {},
        "formpost": {},
        "staticweb": {},
        "crossdomain": {},
        "healthcheck": {},
        "symlink": {"symlink_loop_limit": SYMLINK_LOOP_LIMIT},
        "bulk_upload": {"max_containers_per_extraction": 10000, "max_failed_extractions": 1000},
        "bulk_delete": {"max_deletes_per_request": MAX_DELETES, "max_failed_deletes": MAX_DELETES},
    }


class SwiftApi:
    def __init__(
        self,
        service: ObjectStoreService,
        tokens: TokenValidator,
        settings: ObjectStoreSettings,
        clock: Clock,
    ) -> None:
        self.service = service
        self.tokens = tokens
        self.settings = settings
        self.metadata = SwiftMetadata(service.db, clock)
        self.accounts = AccountHandlers(service, self.metadata, clock)
        self.containers = ContainerHandlers(service, self.metadata)
        self.objects = ObjectHandlers(service, self.metadata, self.containers, settings)
        self.bulk_delete = BulkDelete(self.containers, self.objects)
        self.formpost = FormPost(self.objects)
        self.extract_archive = ExtractArchive(self.containers, self.objects)
        self.staticweb = StaticWeb(self.containers, self.objects, self.metadata)

    def routes(self) -> list[BaseRoute]:
        return [
            EdgeRoute("/info", self.info, {"GET": "object-store:info:show"}, public=True),
            EdgeRoute(
                "/healthcheck", self.healthcheck, {"GET": "object-store:healthcheck:show"}, True
            ),
            EdgeRoute(
                "/crossdomain.xml", self.crossdomain, {"GET": "object-store:crossdomain:show"}, True
            ),
            EdgeRoute("/v1/{account}", self.account, ACCOUNT_ACTIONS, public=False),
            EdgeRoute("/v1/{account}/", self.account, ACCOUNT_ACTIONS, public=False),
            EdgeRoute("/v1/{account}/{container}", self.container, CONTAINER_ACTIONS, public=False),
            EdgeRoute(
                "/v1/{account}/{container}/", self.container, CONTAINER_ACTIONS, public=False
            ),
            EdgeRoute(
                "/v1/{account}/{container}/{obj:path}", self.object, OBJECT_ACTIONS, public=False
            ),
        ]

    async def info(self, request: Request) -> Response:
        headers = _trans_headers()
        body = "" if request.method == "HEAD" else json.dumps(capabilities(self.settings))
        return Response(body, 200, headers=headers, media_type=JSON)

    async def healthcheck(self, request: Request) -> Response:
        """The load balancer's probe: this process answers."""
        return Response("OK", 200, headers=_trans_headers(), media_type=TEXT)

    async def crossdomain(self, request: Request) -> Response:
        """The cross-domain policy old browser plugins ask for: it grants no other site."""
        return Response(CROSSDOMAIN, 200, headers=_trans_headers(), media_type=XML)

    async def account(self, request: Request) -> Response:
        handler: Handler = self.accounts.show
        if "bulk-delete" in request.query_params and request.method in ("POST", "DELETE"):
            handler = self.bulk_delete
        elif request.method == "POST":
            handler = self.accounts.update
        elif request.method == "PUT" and "extract-archive" in request.query_params:
            handler = self.extract_archive
        elif request.method in ("DELETE", "PUT"):
            handler = _no_account_deletes
        return await self._serve(request, ACCOUNT_ACTIONS, handler)

    async def container(self, request: Request) -> Response:
        c = self.containers
        handlers = {"PUT": c.create, "POST": c.update, "DELETE": c.delete}
        handler: Handler = handlers.get(request.method, c.show)
        if request.method == "PUT" and "extract-archive" in request.query_params:
            handler = self.extract_archive
        elif web_mode(request):
            handler = self._web_container
        return await self._serve(request, CONTAINER_ACTIONS, handler, "container")

    async def _web_container(self, request: Request, caller: Caller, name: str) -> Response:
        page = await self.staticweb.container(request, caller, name)
        return page if page is not None else await self.containers.show(request, caller, name)

    async def _web_object(
        self, request: Request, caller: Caller, container: str, key: str
    ) -> Response:
        page = await self.staticweb.object(request, caller, container, key)
        return (
            page if page is not None else await self.objects.show(request, caller, container, key)
        )

    async def object(self, request: Request) -> Response:
        o = self.objects
        handlers = {"PUT": o.create, "POST": o.update, "DELETE": o.delete, "COPY": o.copy_to}
        handler: Handler = handlers.get(request.method, o.show)
        if is_form(request):
            handler = self.formpost
        elif web_mode(request):
            handler = self._web_object
        return await self._serve(request, OBJECT_ACTIONS, handler, "object")

    async def _serve(
        self, request: Request, actions: dict[str, str], handler: Handler, level: str = ""
    ) -> Response:
        extra = _trans_headers()
        action = actions.get(request.method, actions["GET"])
        state_of(request.scope)["policy_action"] = action
        try:
            caller = await self._caller(request, action, level)
            args = [
                request.path_params.get(n) for n in ("container", "obj") if n in request.path_params
            ]
            if request.method in ("PUT", "POST", "DELETE", "COPY"):
                audit(request, action, level or "account", "/".join(str(a) for a in args) or None)
            response = await handler(request, caller, *args)
        except SwiftError as exc:
            response = error_response(exc, request.method)
        except S3Error as exc:
            response = error_response(from_s3(exc), request.method)
        except (MetadataError, AclError) as exc:
            response = error_response(SwiftError(400, str(exc)), request.method)
        except ApiError as exc:
            response = error_response(SwiftError(exc.status, exc.message), request.method)
            response.headers.update(exc.headers)  # a 503's Retry-After
        response.headers.update(extra)
        return response

    async def _caller(self, request: Request, action: str, level: str) -> Caller:
        project_id = account_project(request.path_params["account"])
        query = request.query_params
        if level == "object" and "temp_url_sig" in query and "temp_url_expires" in query:
            return await asyncio.to_thread(self._temp_url_caller, request, project_id)
        if is_form(request):  # the form's signature decides, whoever sends it
            return Caller(project_id, None)
        ctx = None
        if request.headers.get("x-auth-token"):
            ctx = authenticate(self.tokens, request)
        return identify(ctx, project_id, action, request)

    def _temp_url_caller(self, request: Request, project_id: str) -> Caller:
        query = request.query_params
        url = tempurl.parse(
            query["temp_url_sig"], query["temp_url_expires"], query.get("temp_url_prefix")
        )
        if url is None or request.method not in TEMPURL_METHODS:
            raise SwiftError(401, "Temp URL invalid: its signature or expiry cannot be read.")
        keys = _keys(self.metadata.account(project_id))
        container = request.path_params.get("container", "")
        try:
            bucket = self.service.bucket(container)
            if bucket.project_id == project_id:
                keys += _keys(self.metadata.container(bucket.id).meta)
        except S3Error:
            pass
        root = request.scope.get("root_path", "")
        local = f"/v1/AUTH_{project_id}/{container}"
        name = request.path_params.get("obj", "")
        places = (root + local, local)
        if not keys or not tempurl.valid(url, request.method, places, name, keys, time.time()):
            raise SwiftError(401, "Temp URL invalid or expired.")
        return Caller(project_id, None, tempurl=True)


async def _no_account_deletes(request: Request, caller: Caller) -> Response:
    check_manage(caller)  # a stranger is refused before learning what the method does
    raise SwiftError(405, "Accounts are projects: make or delete them in identity.")


def _keys(meta: dict[str, str]) -> list[str]:
    return [meta[k] for k in ("temp-url-key", "temp-url-key-2") if meta.get(k)]


def _trans_headers() -> dict[str, str]:
    """Swift's transaction id; the request log adds X-Openstack-Request-Id to every answer."""
    return {"X-Trans-Id": new_trans_id()}


def build_app(
    service: ObjectStoreService,
    tokens: TokenValidator,
    settings: ObjectStoreSettings,
    clock: Clock,
) -> ASGIApp:
    """The API under one error layer: anything unexpected is a 500 in Swift's shape, with no
    internals; a path or method no route takes is Swift's 404 or 405."""
    router = Router(routes=SwiftApi(service, tokens, settings, clock).routes())
    return ErrorLayer(router, render_error)


def body_limit_for(settings: ObjectStoreSettings) -> Callable[[str, str], int | None]:
    """Object uploads may be as large as an S3 PUT; every other request keeps the server's."""

    def limit(method: str, path: str) -> int | None:
        if method == "PUT":  # an object, or an archive to extract
            return settings.max_object_bytes
        if method == "POST" and path.count("/") >= 4:  # a FormPost's files
            return MAX_FORM_BYTES
        return None

    return limit
