"""Nova v2.1 wire format: microversions, routes, request validation, response shapes.

This module turns HTTP into calls on `ComputeService` and back. Response
shapes follow the negotiated microversion where a client can tell the
difference (the flavor embedded in a server from 2.47, `description` from
2.19, tags from 2.26, the createImage body from 2.45, ...).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from souverain.common.clock import isotime, parse_isotime
from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest, NotFound
from souverain.common.jsoncodec import JSONResponse, encode
from souverain.common.middleware import state_of
from souverain.common.pagination import paginate
from souverain.compute.service import (
    QUOTA_RESOURCES,
    BootVolume,
    ComputeService,
    ServerRequest,
)
from souverain.openstack.auth import audit, authenticate
from souverain.openstack.body import read_json
from souverain.openstack.faults import ErrorLayer
from souverain.openstack.links import base_url
from souverain.openstack.query import parse_limit

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 100)
VERSION_HEADERS = ("openstack-api-version", "x-openstack-nova-api-version")

FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    500: "computeFault",
    501: "notImplemented",
    503: "serviceUnavailable",
}

NAME_RE = re.compile(r"^(?![\s])[^\x00-\x1f\x7f]{1,255}(?<![\s])$")
KEYPAIR_NAME_RE = re.compile(r"^[A-Za-z0-9 _@.-]{1,255}$")
TAG_RE = re.compile(r"^[^,/]{1,60}$")
# Every status Nova knows; from 2.38 a filter on any other is a 400, before it matches nothing.
SERVER_STATUSES = frozenset(
    [
        "ACTIVE",
        "BUILD",
        "DELETED",
        "ERROR",
        "HARD_REBOOT",
        "MIGRATING",
        "PASSWORD",
        "PAUSED",
        "REBOOT",
        "REBUILD",
        "RESCUE",
        "RESIZE",
        "REVERT_RESIZE",
        "SHELVED",
        "SHELVED_OFFLOADED",
        "SHUTOFF",
        "SOFT_DELETED",
        "SUSPENDED",
        "UNKNOWN",
        "VERIFY_RESIZE",
    ]
)
# Server bodies encoded at a time in a list (see _encode_items).
BODIES_PER_BATCH = 500
# A server list's sort_key (Nova's names) -> the server column it sorts on.
SERVER_SORT_KEYS = {
    "display_name": "name",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "vm_state": "vm_state",
    "task_state": "task_state",
    "uuid": "id",
    "launched_at": "launched_at",
    "host": "host",
    "image_ref": "image_id",
}


def render_error(_path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    """Nova's fault body: `{"itemNotFound": {"code": 404, "message": "..."}}`."""
    name = FAULT_NAMES.get(status, "computeFault")
    return json.dumps({name: {"code": status, "message": message}}).encode(), "application/json"


class NotAcceptable(ApiError):
    status = 406
    title = "Not Acceptable"


def _version_text(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def negotiate(request: Request) -> tuple[int, int]:
    """The microversion the client asked for (2.1 when it asked for none)."""
    raw = None
    header = request.headers.get("openstack-api-version")
    if header:
        parts = header.strip().split()
        if len(parts) == 2 and parts[0].lower() == "compute":
            raw = parts[1]
    if raw is None:
        raw = request.headers.get("x-openstack-nova-api-version")
    if raw is None:
        return MIN_VERSION
    if raw.strip().lower() == "latest":
        return MAX_VERSION
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", raw)
    if not match:
        raise BadRequest(
            f"API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum."
        )
    version = (int(match[1]), int(match[2]))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise NotAcceptable(
            f"Version {raw} is not supported by the API. Minimum is "
            f"{_version_text(MIN_VERSION)} and maximum is {_version_text(MAX_VERSION)}."
        )
    return version


def _str_map(value: Any, field: str, max_items: int = 128) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadRequest(f"Invalid input for field/attribute {field}: must be an object.")
    if len(value) > max_items:
        raise BadRequest(f"Invalid input for field/attribute {field}: more than {max_items} items.")
    for key, item in value.items():
        if not (1 <= len(key) <= 255) or not isinstance(item, str) or len(item) > 255:
            raise BadRequest(
                f"Invalid input for field/attribute {field}: keys are 1-255 characters and "
                "values strings of at most 255 characters."
            )
    return dict(value)


def _name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise BadRequest(
            f"Invalid input for field/attribute {field}: 1-255 printable characters "
            "without leading or trailing whitespace."
        )
    return value


# Nova's quota keys this cloud does not enforce, with the values Nova shows for them;
# the network ones went with 2.36, the injected-file ones with 2.57.
_FIXED_QUOTAS_ALWAYS = {"server_groups": 10, "server_group_members": 10}
_FIXED_QUOTAS_BEFORE_2_57 = {
    "injected_files": 5,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
}
_FIXED_QUOTAS_BEFORE_2_36 = {
    "fixed_ips": -1,
    "floating_ips": 10,
    "security_groups": 10,
    "security_group_rules": 20,
}


def _quota_values(limits: dict[str, int], v: tuple[int, int]) -> dict[str, int]:
    """Every key of Nova's quota set at version `v`: ours from `limits`, the rest fixed."""
    values = {key: limits[key] for key in QUOTA_RESOURCES}
    values.update(_FIXED_QUOTAS_ALWAYS)
    if v < (2, 57):
        values.update(_FIXED_QUOTAS_BEFORE_2_57)
    if v < (2, 36):
        values.update(_FIXED_QUOTAS_BEFORE_2_36)
    return values


def _quota_changes(body: Any) -> tuple[dict[str, int], bool]:
    """A PUT's `{"quota_set": {...}}`: the limits to set (ints >= -1) and `force`."""
    data = body.get("quota_set") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not data:
        raise BadRequest("Invalid input for field/attribute quota_set.")
    force = data.get("force", False)
    if not isinstance(force, bool):
        if str(force).lower() not in ("true", "false"):
            raise BadRequest("Invalid input for field/attribute force: must be a boolean.")
        force = str(force).lower() == "true"
    changes: dict[str, int] = {}
    for key, value in data.items():
        if key == "force":
            continue
        if key not in QUOTA_RESOURCES:
            raise BadRequest(
                f"Invalid input for field/attribute quota_set. Additional properties are not "
                f"allowed ('{str(key)[:64]}' was unexpected)"
            )
        changes[key] = _int(value, key, minimum=-1)
    return changes, force


def _int(value: Any, field: str, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise BadRequest(f"Invalid input for field/attribute {field}: must be an integer.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(
            f"Invalid input for field/attribute {field}: must be an integer."
        ) from None
    if isinstance(value, float) and value != number:
        raise BadRequest(f"Invalid input for field/attribute {field}: must be an integer.")
    if number < minimum or number > 2**31 - 1:
        raise BadRequest(f"Invalid input for field/attribute {field}: out of range.")
    return number


def _require_version(v: tuple[int, int], first: tuple[int, int]) -> None:
    """A route that starts at microversion `first` does not exist before it: 404, as Nova."""
    if v < first:
        raise NotFound("The resource could not be found.")


def _ref(value: Any, field: str) -> str:
    """An id, or a URL whose last segment is the id (old clients send links)."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"Invalid input for field/attribute {field}: must be a non-empty string.")
    text = value.rstrip("/").rsplit("/", 1)[-1]
    if len(text) > 255:
        raise BadRequest(f"Invalid input for field/attribute {field}: too long.")
    return text


class ComputeApi:
    def __init__(self, service: ComputeService, public_url: str = "") -> None:
        self.service = service
        self.public_url = public_url

    # -------------------------------------------------------------- plumbing

    def base(self, request: Request) -> str:
        """Worked out once per request: a list of 1,000 servers links to it 3,000 times."""
        state = state_of(request.scope)
        if "compute_base" not in state:
            state["compute_base"] = base_url(request, self.public_url, "/compute")
        return str(state["compute_base"])

    def _call(
        self, handler: Callable[[Request, RequestContext, tuple[int, int]], Any], auth: bool = True
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            version = negotiate(request)
            text = _version_text(version)
            # Nova puts these on faults too; clients read the request id from either name.
            headers = {
                "OpenStack-API-Version": f"compute {text}",
                "X-OpenStack-Nova-API-Version": text,
                "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
                "X-Compute-Request-Id": state_of(request.scope).get("request_id", ""),
            }
            try:
                ctx = authenticate(self.service.identity, request)
                response: Response = await handler(request, ctx, version)
            except ApiError as exc:
                exc.headers.update(headers)
                raise
            response.headers.update(headers)
            return response

        return endpoint

    def routes(self) -> list[Route]:
        c = self._call
        r = [
            Route("/", self.versions, methods=["GET"]),
            Route("/v2.1", self.version, methods=["GET"]),
            Route("/v2.1/", self.version, methods=["GET"]),
            Route("/v2.1/flavors", c(self.flavors), methods=["GET", "POST"]),
            Route("/v2.1/flavors/detail", c(self.flavors_detail), methods=["GET"]),
            Route("/v2.1/flavors/{id}", c(self.flavor), methods=["GET", "PUT", "DELETE"]),
            Route(
                "/v2.1/flavors/{id}/os-extra_specs", c(self.extra_specs), methods=["GET", "POST"]
            ),
            Route(
                "/v2.1/flavors/{id}/os-extra_specs/{key}",
                c(self.extra_spec),
                methods=["GET", "PUT", "DELETE"],
            ),
            Route("/v2.1/flavors/{id}/os-flavor-access", c(self.flavor_access), methods=["GET"]),
            Route("/v2.1/flavors/{id}/action", c(self.flavor_action), methods=["POST"]),
            Route("/v2.1/os-keypairs", c(self.keypairs), methods=["GET", "POST"]),
            Route("/v2.1/os-keypairs/{name}", c(self.keypair), methods=["GET", "DELETE"]),
            Route("/v2.1/servers", c(self.servers), methods=["GET", "POST"]),
            Route("/v2.1/servers/detail", c(self.servers_detail), methods=["GET"]),
            Route("/v2.1/servers/{id}", c(self.server), methods=["GET", "PUT", "DELETE"]),
            Route("/v2.1/servers/{id}/action", c(self.server_action), methods=["POST"]),
            Route("/v2.1/servers/{id}/metadata", c(self.metadata), methods=["GET", "POST", "PUT"]),
            Route(
                "/v2.1/servers/{id}/metadata/{key}",
                c(self.metadata_item),
                methods=["GET", "PUT", "DELETE"],
            ),
            Route("/v2.1/servers/{id}/tags", c(self.tags), methods=["GET", "PUT", "DELETE"]),
            Route("/v2.1/servers/{id}/tags/{tag}", c(self.tag), methods=["GET", "PUT", "DELETE"]),
            Route("/v2.1/servers/{id}/os-instance-actions", c(self.actions), methods=["GET"]),
            Route("/v2.1/servers/{id}/os-instance-actions/{req}", c(self.action), methods=["GET"]),
            Route("/v2.1/servers/{id}/ips", c(self.ips), methods=["GET"]),
            Route("/v2.1/servers/{id}/os-interface", c(self.interfaces), methods=["GET", "POST"]),
            Route(
                "/v2.1/servers/{id}/os-interface/{port}",
                c(self.interface),
                methods=["GET", "DELETE"],
            ),
            Route(
                "/v2.1/servers/{id}/os-volume_attachments",
                c(self.volume_attachments),
                methods=["GET", "POST"],
            ),
            Route(
                "/v2.1/servers/{id}/os-volume_attachments/{volume}",
                c(self.volume_attachment),
                methods=["GET", "PUT", "DELETE"],
            ),
            Route("/v2.1/os-availability-zone", c(self.zones), methods=["GET"]),
            Route("/v2.1/os-availability-zone/detail", c(self.zones_detail), methods=["GET"]),
            Route("/v2.1/limits", c(self.limits), methods=["GET"]),
            Route(
                "/v2.1/os-quota-sets/{project}",
                c(self.quota_set),
                methods=["GET", "PUT", "DELETE"],
            ),
            Route(
                "/v2.1/os-quota-sets/{project}/defaults", c(self.quota_defaults), methods=["GET"]
            ),
            Route("/v2.1/os-quota-sets/{project}/detail", c(self.quota_detail), methods=["GET"]),
            Route("/v2.1/os-hypervisors", c(self.hypervisors), methods=["GET"]),
            Route("/v2.1/os-hypervisors/detail", c(self.hypervisors_detail), methods=["GET"]),
            Route("/v2.1/os-hypervisors/statistics", c(self.hypervisor_stats), methods=["GET"]),
            Route("/v2.1/os-hypervisors/{id}", c(self.hypervisor), methods=["GET"]),
            Route("/v2.1/os-services", c(self.services), methods=["GET"]),
            Route("/v2.1/extensions", c(self.extensions), methods=["GET"]),
        ]
        return r

    # -------------------------------------------------------------- versions

    def _version_doc(self, request: Request) -> dict[str, Any]:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": _version_text(MAX_VERSION),
            "min_version": _version_text(MIN_VERSION),
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self.base(request)}/v2.1/"}],
            "media-types": [
                {
                    "base": "application/json",
                    "type": "application/vnd.openstack.compute+json;version=2.1",
                }
            ],
        }

    async def versions(self, request: Request) -> Response:
        return JSONResponse({"versions": [self._version_doc(request)]})

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": self._version_doc(request)})

    # -------------------------------------------------------------- flavors

    def _flavor_link(self, request: Request, flavor_id: str) -> list[dict[str, str]]:
        return [
            {"rel": "self", "href": f"{self.base(request)}/v2.1/flavors/{flavor_id}"},
            {"rel": "bookmark", "href": f"{self.base(request)}/flavors/{flavor_id}"},
        ]

    def _flavor_body(
        self, request: Request, f: dict[str, Any], v: tuple[int, int], detail: bool = True
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f["id"],
            "name": f["name"],
            "links": self._flavor_link(request, f["id"]),
        }
        if v >= (2, 55):
            body["description"] = f["description"]
        if not detail:
            return body
        body.update(
            {
                "ram": f["ram"],
                "disk": f["disk"],
                "vcpus": f["vcpus"],
                "swap": f["swap"] if (f["swap"] or v >= (2, 75)) else "",
                "OS-FLV-EXT-DATA:ephemeral": f["ephemeral"],
                "OS-FLV-DISABLED:disabled": f["disabled"],
                "rxtx_factor": f["rxtx_factor"],
                "os-flavor-access:is_public": f["is_public"],
            }
        )
        if v >= (2, 61):
            body["extra_specs"] = f["extra_specs"]
        return body

    def _flavor_list(
        self, request: Request, ctx: RequestContext, v: tuple[int, int], detail: bool
    ) -> Response:
        q = request.query_params
        raw_public = q.get("is_public", "true").lower()
        is_public: bool | None = {"none": None, "false": False, "0": False}.get(raw_public, True)
        flavors = self.service.list_flavors(
            ctx,
            is_public,
            _int(q.get("minRam", 0), "minRam"),
            _int(q.get("minDisk", 0), "minDisk"),
        )
        sort_key = q.get("sort_key", "flavorid")
        keys = {
            "flavorid": "id",
            "id": "id",
            "name": "name",
            "memory_mb": "ram",
            "ram": "ram",
            "vcpus": "vcpus",
            "root_gb": "disk",
            "disk": "disk",
        }
        if sort_key not in keys:
            raise BadRequest(f"Invalid sort_key {sort_key!r}.")
        reverse = q.get("sort_dir", "asc") == "desc"
        if "sort_key" in q:
            flavors.sort(key=lambda f: f[keys[sort_key]], reverse=reverse)
        page = paginate(
            flavors, lambda f: str(f["id"]), parse_limit(q.get("limit")), q.get("marker")
        )
        body: dict[str, Any] = {
            "flavors": [self._flavor_body(request, f, v, detail) for f in page.items]
        }
        if page.next_marker is not None:
            body["flavors_links"] = [
                {
                    "rel": "next",
                    "href": str(request.url.include_query_params(marker=page.next_marker)),
                }
            ]
        return JSONResponse(body)

    async def flavors(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        if request.method == "GET":
            return self._flavor_list(request, ctx, v, detail=False)
        body = await read_json(request)
        data = body.get("flavor")
        if not isinstance(data, dict):
            raise BadRequest("Expecting to find flavor in request body.")
        doc: dict[str, Any] = {
            "name": _name(data.get("name"), "name"),
            "ram": _int(data.get("ram"), "ram", 1),
            "vcpus": _int(data.get("vcpus"), "vcpus", 1),
            "disk": _int(data.get("disk"), "disk", 0),
            "ephemeral": _int(data.get("OS-FLV-EXT-DATA:ephemeral", 0), "ephemeral"),
            "swap": _int(data.get("swap", 0) or 0, "swap"),
            "is_public": bool(data.get("os-flavor-access:is_public", True)),
        }
        if data.get("id") is not None:
            flavor_id = str(data["id"])
            if not re.fullmatch(r"[A-Za-z0-9._ -]{1,255}", flavor_id):
                raise BadRequest("Invalid input for field/attribute id.")
            doc["id"] = flavor_id
        if "rxtx_factor" in data:
            doc["rxtx_factor"] = float(data["rxtx_factor"])
        if "description" in data and v >= (2, 55):
            doc["description"] = data["description"]
        audit(request, "compute.flavor.create", "flavor", doc.get("id"))
        flavor = self.service.create_flavor(ctx, doc)
        audit(request, "compute.flavor.create", "flavor", flavor["id"])
        return JSONResponse({"flavor": self._flavor_body(request, flavor, v)})

    async def flavors_detail(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        return self._flavor_list(request, ctx, v, detail=True)

    async def flavor(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        flavor_id = request.path_params["id"]
        if request.method == "DELETE":
            audit(request, "compute.flavor.delete", "flavor", flavor_id)
            self.service.delete_flavor(ctx, flavor_id)
            return Response(status_code=202)
        if request.method == "PUT":
            body = await read_json(request)
            data = body.get("flavor") or {}
            audit(request, "compute.flavor.update", "flavor", flavor_id)
            flavor = self.service.update_flavor(ctx, flavor_id, data.get("description"))
            return JSONResponse({"flavor": self._flavor_body(request, flavor, v)})
        return JSONResponse(
            {"flavor": self._flavor_body(request, self.service.get_flavor(ctx, flavor_id), v)}
        )

    async def extra_specs(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        flavor_id = request.path_params["id"]
        if request.method == "GET":
            return JSONResponse({"extra_specs": self.service.flavor_extra_specs(ctx, flavor_id)})
        body = await read_json(request)
        specs = _str_map(body.get("extra_specs"), "extra_specs")
        audit(request, "compute.flavor.extra_specs", "flavor", flavor_id)
        return JSONResponse(
            {"extra_specs": self.service.set_flavor_extra_specs(ctx, flavor_id, specs)}
        )

    async def extra_spec(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        flavor_id, key = request.path_params["id"], request.path_params["key"]
        if request.method == "GET":
            specs = self.service.flavor_extra_specs(ctx, flavor_id)
            if key not in specs:
                raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
            return JSONResponse({key: specs[key]})
        audit(request, "compute.flavor.extra_specs", "flavor", flavor_id)
        if request.method == "DELETE":
            self.service.delete_flavor_extra_spec(ctx, flavor_id, key)
            return Response(status_code=200)
        body = _str_map(await read_json(request), "extra_specs", 1)
        if list(body) != [key]:
            raise BadRequest("Request body and URI mismatch")
        return JSONResponse(self.service.set_flavor_extra_specs(ctx, flavor_id, body))

    async def flavor_access(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        access = self.service.flavor_access(ctx, request.path_params["id"])
        return JSONResponse({"flavor_access": access})

    async def flavor_action(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        flavor_id = request.path_params["id"]
        body = await read_json(request)
        for name, add in (("addTenantAccess", True), ("removeTenantAccess", False)):
            if name in body:
                tenant = (body[name] or {}).get("tenant")
                if not isinstance(tenant, str) or not tenant:
                    raise BadRequest(f"Missing tenant parameter in {name}.")
                audit(request, f"compute.flavor.{name}", "flavor", flavor_id)
                access = self.service.change_flavor_access(ctx, flavor_id, tenant, add)
                return JSONResponse({"flavor_access": access})
        raise BadRequest("Unsupported flavor action: use addTenantAccess or removeTenantAccess.")

    # -------------------------------------------------------------- keypairs

    def _keypair_body(self, k: dict[str, Any], v: tuple[int, int], full: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": k["name"],
            "public_key": k["public_key"],
            "fingerprint": k["fingerprint"],
        }
        if v >= (2, 2):
            body["type"] = k["type"]
        if full:
            body.update(
                {
                    "user_id": k["user_id"],
                    "id": k["id"],
                    "created_at": isotime(k["created_at"], subsecond=True),
                    "deleted": False,
                    "deleted_at": None,
                    "updated_at": None,
                }
            )
        if "private_key" in k:
            body["private_key"] = k["private_key"]
            body["user_id"] = k["user_id"]
        return body

    async def keypairs(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        user_id = request.query_params.get("user_id") if v >= (2, 10) else None
        if request.method == "GET":
            items = self.service.list_keypairs(ctx, user_id)
            page = paginate(
                items,
                lambda k: k["name"],
                parse_limit(request.query_params.get("limit")),
                request.query_params.get("marker"),
            )
            return JSONResponse(
                {"keypairs": [{"keypair": self._keypair_body(k, v, False)} for k in page.items]}
            )
        body = await read_json(request)
        data = body.get("keypair")
        if not isinstance(data, dict):
            raise BadRequest("Expecting to find keypair in request body.")
        name = data.get("name")
        if not isinstance(name, str) or not KEYPAIR_NAME_RE.match(name):
            raise BadRequest(
                "Invalid input for field/attribute name: keypair names are 1-255 characters "
                "of letters, digits, spaces, '_', '-', '.' and '@'."
            )
        public_key = data.get("public_key")
        if public_key is not None and not isinstance(public_key, str):
            raise BadRequest("Invalid input for field/attribute public_key.")
        key_type = data.get("type", "ssh") if v >= (2, 2) else "ssh"
        if key_type not in ("ssh", "x509"):
            raise BadRequest("Invalid input for field/attribute type: ssh or x509.")
        if key_type == "x509":
            raise BadRequest("x509 keypairs are not supported by this cloud; use ssh.")
        owner = data.get("user_id") if v >= (2, 10) else None
        audit(request, "compute.keypair.create", "keypair", name)
        created = self.service.create_keypair(ctx, name, public_key, key_type, owner)
        status = 201 if v >= (2, 2) else 200
        return JSONResponse({"keypair": self._keypair_body(created, v, False)}, status_code=status)

    async def keypair(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        name = request.path_params["name"]
        user_id = request.query_params.get("user_id") if v >= (2, 10) else None
        if request.method == "DELETE":
            audit(request, "compute.keypair.delete", "keypair", name)
            self.service.delete_keypair(ctx, name, user_id)
            return Response(status_code=204 if v >= (2, 2) else 202)
        return JSONResponse(
            {"keypair": self._keypair_body(self.service.get_keypair(ctx, name, user_id), v, True)}
        )

    # -------------------------------------------------------------- servers

    def _server_links(self, request: Request, server_id: str) -> list[dict[str, str]]:
        return [
            {"rel": "self", "href": f"{self.base(request)}/v2.1/servers/{server_id}"},
            {"rel": "bookmark", "href": f"{self.base(request)}/servers/{server_id}"},
        ]

    def _server_body(
        self, request: Request, ctx: RequestContext, s: dict[str, Any], v: tuple[int, int]
    ) -> dict[str, Any]:
        flavor = s["flavor"]
        if v >= (2, 47):
            flavor_body: dict[str, Any] = {
                "vcpus": flavor["vcpus"],
                "ram": flavor["ram"],
                "disk": flavor["disk"],
                "ephemeral": flavor.get("ephemeral", 0),
                "swap": flavor.get("swap", 0),
                "original_name": flavor["name"],
                "extra_specs": flavor.get("extra_specs", {}),
            }
        else:
            flavor_body = {"id": flavor["id"], "links": self._flavor_link(request, flavor["id"])}
        host_id = (
            hashlib.sha224((s["project_id"] + (s["host"] or "")).encode()).hexdigest()
            if s["host"]
            else ""
        )
        body: dict[str, Any] = {
            "id": s["id"],
            "name": s["name"],
            "status": s["status"],
            "tenant_id": s["project_id"],
            "user_id": s["user_id"],
            "metadata": s["metadata"],
            "hostId": host_id,
            "image": (
                {
                    "id": s["image_id"],
                    "links": [
                        {"rel": "bookmark", "href": f"{self.base(request)}/images/{s['image_id']}"}
                    ],
                }
                if s["image_id"]
                else ""
            ),
            "flavor": flavor_body,
            "created": isotime(s["created_at"], subsecond=False),
            "updated": isotime(s["updated_at"], subsecond=False),
            "addresses": s["addresses"],
            "accessIPv4": "",
            "accessIPv6": "",
            "links": self._server_links(request, s["id"]),
            "OS-DCF:diskConfig": "MANUAL",
            "progress": 100 if s["status"] == "ACTIVE" else 0,
            "OS-EXT-AZ:availability_zone": s["availability_zone"],
            "config_drive": "True" if s["config_drive"] else "",
            "key_name": s["key_name"],
            "OS-SRV-USG:launched_at": _usage_time(s["launched_at"]),
            "OS-SRV-USG:terminated_at": _usage_time(s["terminated_at"]),
            "OS-EXT-STS:task_state": s["task_state"],
            "OS-EXT-STS:vm_state": s["vm_state"],
            "OS-EXT-STS:power_state": s["power_state"],
            "os-extended-volumes:volumes_attached": [
                a if v >= (2, 3) else {"id": a["id"]} for a in s.get("volumes_attached", [])
            ],
        }
        if s["fault"]:
            fault = dict(s["fault"])
            if ctx.is_admin:
                fault.setdefault("details", "")
            body["fault"] = fault
        if ctx.is_admin:
            body["OS-EXT-SRV-ATTR:host"] = s["host"]
            body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = s["host"]
            body["OS-EXT-SRV-ATTR:instance_name"] = f"instance-{s['id']}"
            if v >= (2, 3):
                body["OS-EXT-SRV-ATTR:reservation_id"] = s["reservation_id"]
                body["OS-EXT-SRV-ATTR:launch_index"] = s["launch_index"]
                body["OS-EXT-SRV-ATTR:kernel_id"] = ""
                body["OS-EXT-SRV-ATTR:ramdisk_id"] = ""
                body["OS-EXT-SRV-ATTR:root_device_name"] = "/dev/vda"
                body["OS-EXT-SRV-ATTR:user_data"] = s["user_data"]
        if v >= (2, 90) or (ctx.is_admin and v >= (2, 3)):
            body["OS-EXT-SRV-ATTR:hostname"] = s["hostname"]
        if v >= (2, 9):
            body["locked"] = s["locked"]
        if v >= (2, 16) and ctx.is_admin:
            body["host_status"] = "UP" if s["host"] else ""
        if v >= (2, 19):
            body["description"] = s["description"]
        if v >= (2, 26):
            body["tags"] = s["tags"]
        if v >= (2, 63):
            body["trusted_image_certificates"] = None
        if v >= (2, 71):
            body["server_groups"] = []
        if v >= (2, 73):
            body["locked_reason"] = None
        if v >= (2, 96):
            body["pinned_availability_zone"] = None
        return body

    def _list_filters(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> dict[str, Any]:
        q = request.query_params
        filters: dict[str, Any] = {}
        status = q.get("status")
        if status is not None and v >= (2, 38) and status.upper() not in SERVER_STATUSES:
            raise BadRequest(f"Invalid status value: {status}")
        for key in ("name", "status", "image", "flavor", "host", "project_id", "tenant_id"):
            if key in q:
                filters["project_id" if key == "tenant_id" else key] = q[key]
        if "image" in filters:
            filters["image"] = filters["image"].rstrip("/").rsplit("/", 1)[-1]
        if "flavor" in filters:
            filters["flavor"] = filters["flavor"].rstrip("/").rsplit("/", 1)[-1]
        if "changes-since" in q:
            try:
                filters["changes-since"] = parse_isotime(q["changes-since"])
            except ValueError:
                raise BadRequest("Invalid input for query parameters changes-since.") from None
        all_tenants = q.get("all_tenants")
        if all_tenants is not None:
            filters["all_tenants"] = all_tenants.lower() not in ("0", "false", "off", "no")
            if not ctx.is_admin:
                filters["all_tenants"] = False
        if q.get("deleted", "").lower() in ("true", "1"):
            filters["deleted"] = True
        for key in ("tags", "tags-any", "not-tags", "not-tags-any"):
            if key in q:
                filters[key] = [t for t in q[key].split(",") if t]
        return filters

    def _server_list(
        self, request: Request, ctx: RequestContext, v: tuple[int, int], detail: bool
    ) -> Response:
        rows = self.service.find_servers(ctx, self._list_filters(request, ctx, v))
        sort_key = request.query_params.get("sort_key")
        if sort_key:
            if sort_key not in SERVER_SORT_KEYS:
                raise BadRequest(f"Invalid sort_key {sort_key!r}.")
            field = SERVER_SORT_KEYS[sort_key]
            reverse = request.query_params.get("sort_dir", "desc") == "desc"
            rows.sort(
                key=lambda r: (getattr(r, field) is None, getattr(r, field) or ""), reverse=reverse
            )
        page = paginate(
            rows,
            lambda r: r.id,
            parse_limit(request.query_params.get("limit")),
            request.query_params.get("marker"),
        )
        # Views only for the page, and only for the detailed list: the brief one is id and name.
        items: Iterator[dict[str, Any]]
        if detail:
            views = self.service.views_of_servers([r.id for r in page.items])
            items = (self._server_body(request, ctx, s, v) for s in views)
        else:
            items = (
                {"id": r.id, "name": r.name, "links": self._server_links(request, r.id)}
                for r in page.items
            )
        body = b'{"servers":' + _encode_items(items)
        if page.next_marker is not None:
            href = str(request.url.include_query_params(marker=page.next_marker))
            body += b',"servers_links":' + encode([{"rel": "next", "href": href}])
        return Response(body + b"}", media_type=JSONResponse.media_type)

    async def servers(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._server_list, request, ctx, v, False)
        body = await read_json(request)
        data = body.get("server")
        if not isinstance(data, dict):
            raise BadRequest("Expecting to find server in request body.")
        req = self._server_request(data, v, body.get("os:scheduler_hints"))
        audit(request, "compute.server.create", "server", None)
        created = await run_in_threadpool(self.service.create_servers, ctx, req)
        audit(request, "compute.server.create", "server", created[0]["id"])
        if data.get("return_reservation_id") in (True, "True", "true"):
            return JSONResponse({"reservation_id": created[0]["reservation_id"]}, status_code=202)
        first = created[0]
        server = {
            "id": first["id"],
            "links": self._server_links(request, first["id"]),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{"name": "default"}],
        }
        return JSONResponse(
            {"server": server},
            status_code=202,
            headers={"Location": f"{self.base(request)}/v2.1/servers/{first['id']}"},
        )

    def _server_request(
        self, data: dict[str, Any], v: tuple[int, int], _hints: Any
    ) -> ServerRequest:
        name = _name(data.get("name"), "name")
        mapping = data.get("block_device_mapping_v2")
        boot_volume = _boot_volume(mapping)
        if boot_volume is not None:
            image_ref = ""
        elif mapping and data.get("imageRef") in ("", None):
            image_ref = _ref(mapping[0].get("uuid"), "block_device_mapping_v2.uuid")
        elif "imageRef" not in data or data["imageRef"] in ("", None):
            raise BadRequest("Invalid input for field/attribute imageRef: it is required.")
        else:
            image_ref = _ref(data["imageRef"], "imageRef")
        if "flavorRef" not in data:
            raise BadRequest("Invalid input for field/attribute flavorRef: it is required.")
        flavor_ref = _ref(data["flavorRef"], "flavorRef")
        key_name = data.get("key_name")
        if key_name is not None and (not isinstance(key_name, str) or not key_name):
            raise BadRequest("Invalid input for field/attribute key_name.")
        user_data = data.get("user_data")
        if user_data is not None and not isinstance(user_data, str):
            raise BadRequest("Invalid input for field/attribute user_data: must be base64 text.")
        metadata = _str_map(data.get("metadata", {}), "metadata")
        if "networks" in data:
            networks = data["networks"]
            if isinstance(networks, str):
                if networks not in ("auto", "none"):
                    raise BadRequest(
                        "Invalid input for field/attribute networks: 'auto', 'none' or a list."
                    )
            elif isinstance(networks, list):
                for item in networks:
                    if not isinstance(item, dict):
                        raise BadRequest("Invalid input for field/attribute networks.")
            else:
                raise BadRequest("Invalid input for field/attribute networks.")
        elif v >= (2, 37):
            raise BadRequest(
                "Invalid input for field/attribute networks: it is required from 2.37."
            )
        else:
            networks = "auto"
        min_count = _int(data.get("min_count", 1), "min_count", 1)
        max_count = _int(data.get("max_count", min_count), "max_count", 1)
        if min_count > max_count:
            raise BadRequest("min_count must be <= max_count")
        if max_count > 50:
            raise BadRequest("max_count must be at most 50 in one request.")
        zone = data.get("availability_zone")
        if zone is not None and (not isinstance(zone, str) or not zone):
            raise BadRequest("Invalid input for field/attribute availability_zone.")
        description = data.get("description") if v >= (2, 19) else None
        if description is not None and (not isinstance(description, str) or len(description) > 255):
            raise BadRequest("Invalid input for field/attribute description.")
        tags: tuple[str, ...] = ()
        if v >= (2, 52) and "tags" in data:
            raw = data["tags"]
            if (
                not isinstance(raw, list)
                or len(raw) > 50
                or not all(isinstance(t, str) and TAG_RE.match(t) for t in raw)
            ):
                raise BadRequest("Invalid input for field/attribute tags.")
            tags = tuple(raw)
        groups = data.get("security_groups", [])
        if (
            not isinstance(groups, list)
            or len(groups) > 16
            or not all(
                isinstance(g, dict) and isinstance(g.get("name"), str) and 0 < len(g["name"]) <= 255
                for g in groups
            )
        ):
            raise BadRequest("Invalid input for field/attribute security_groups: [{name}].")
        hostname = data.get("hostname") if v >= (2, 90) else None
        if "personality" in data and v >= (2, 57):
            raise BadRequest("Additional properties are not allowed ('personality' was unexpected)")
        return ServerRequest(
            name=name,
            image_ref=image_ref,
            flavor_ref=flavor_ref,
            key_name=key_name,
            user_data=user_data,
            metadata=metadata,
            networks=networks,
            security_groups=tuple(dict.fromkeys(g["name"] for g in groups)),
            availability_zone=zone,
            min_count=min_count,
            max_count=max_count,
            description=description,
            hostname=hostname,
            tags=tags,
            boot_volume=boot_volume,
        )

    async def servers_detail(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        return await run_in_threadpool(self._server_list, request, ctx, v, True)

    async def server(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        server_id = request.path_params["id"]
        if request.method == "DELETE":
            audit(request, "compute.server.delete", "server", server_id)
            await run_in_threadpool(self.service.delete_server, ctx, server_id)
            return Response(status_code=204)
        if request.method == "PUT":
            body = await read_json(request)
            data = body.get("server")
            if not isinstance(data, dict) or not data:
                raise BadRequest("Expecting to find server in request body.")
            changes: dict[str, Any] = {}
            for key, value in data.items():
                if key == "name":
                    changes["name"] = _name(value)
                elif key == "description" and v >= (2, 19):
                    if value is not None and (not isinstance(value, str) or len(value) > 255):
                        raise BadRequest("Invalid input for field/attribute description.")
                    changes["description"] = value
                elif key == "hostname" and v >= (2, 90):
                    changes["hostname"] = _name(value, "hostname")
                elif key in ("accessIPv4", "accessIPv6", "OS-DCF:diskConfig"):
                    continue
                else:
                    raise BadRequest(
                        f"Additional properties are not allowed ('{key}' was unexpected)"
                    )
            audit(request, "compute.server.update", "server", server_id)
            updated = self.service.update_server(ctx, server_id, changes)
            return JSONResponse({"server": self._server_body(request, ctx, updated, v)})
        server = self.service.get_server(ctx, server_id)
        return JSONResponse({"server": self._server_body(request, ctx, server, v)})

    async def server_action(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        server_id = request.path_params["id"]
        body = await read_json(request)
        if len(body) != 1:
            raise BadRequest("The action body names exactly one action.")
        ((name, args),) = body.items()
        svc = self.service
        audit(request, f"compute.server.{name}", "server", server_id)
        simple: dict[str, Callable[[RequestContext, str], None]] = {
            "os-stop": svc.stop,
            "os-start": svc.start,
            "pause": svc.pause,
            "unpause": svc.unpause,
            "suspend": svc.suspend,
            "resume": svc.resume,
            "confirmResize": svc.confirm_resize,
            "revertResize": svc.revert_resize,
        }
        if name in simple:
            await run_in_threadpool(simple[name], ctx, server_id)
            return Response(status_code=204 if name == "confirmResize" else 202)
        if name == "reboot":
            kind = (args or {}).get("type") if isinstance(args, dict) else None
            if not isinstance(kind, str) or kind.upper() not in ("SOFT", "HARD"):
                raise BadRequest("Invalid input for field/attribute type: SOFT or HARD.")
            await run_in_threadpool(svc.reboot, ctx, server_id, kind.upper() == "HARD")
            return Response(status_code=202)
        if name in ("lock", "unlock"):
            svc.lock(ctx, server_id, name == "lock")
            return Response(status_code=202)
        if name == "os-getConsoleOutput":
            length: int | None = None
            raw = (args or {}).get("length") if isinstance(args, dict) else None
            if raw is not None:
                try:
                    length = int(raw)
                except (TypeError, ValueError):
                    raise BadRequest("Invalid input for field/attribute length.") from None
                if length < -1:
                    raise BadRequest("Invalid input for field/attribute length.")
                if length == -1:
                    length = None
            output = await run_in_threadpool(svc.console_output, ctx, server_id, length)
            return JSONResponse({"output": output})
        if name == "createImage":
            if not isinstance(args, dict):
                raise BadRequest("Invalid input for field/attribute createImage.")
            image_name = _name(args.get("name"), "name")
            metadata = _str_map(args.get("metadata", {}), "metadata")
            image_id = await run_in_threadpool(
                svc.create_image, ctx, server_id, image_name, metadata
            )
            location = f"{self.base(request).rsplit('/compute', 1)[0]}/image/v2/images/{image_id}"
            if v >= (2, 45):
                return JSONResponse({"image_id": image_id}, status_code=202)
            return Response(status_code=202, headers={"Location": location})
        if name == "rebuild":
            if not isinstance(args, dict) or "imageRef" not in args:
                raise BadRequest("Invalid input for field/attribute imageRef: it is required.")
            changes: dict[str, Any] = {}
            if "name" in args:
                changes["name"] = _name(args["name"])
            if "metadata" in args:
                changes["metadata"] = _str_map(args["metadata"], "metadata")
            if "description" in args and v >= (2, 19):
                changes["description"] = args["description"]
            if "key_name" in args and v >= (2, 54):
                changes["key_name"] = args["key_name"]
            if "user_data" in args and v >= (2, 57):
                changes["user_data"] = args["user_data"]
            server = await run_in_threadpool(
                svc.rebuild, ctx, server_id, _ref(args["imageRef"], "imageRef"), changes
            )
            server["status"] = "REBUILD"
            return JSONResponse(
                {"server": self._server_body(request, ctx, server, v)}, status_code=202
            )
        if name == "resize":
            if not isinstance(args, dict) or "flavorRef" not in args:
                raise BadRequest("Invalid input for field/attribute flavorRef: it is required.")
            await run_in_threadpool(
                svc.resize, ctx, server_id, _ref(args["flavorRef"], "flavorRef")
            )
            return Response(status_code=202)
        raise BadRequest(f"There is no such action: {name}")

    # -------------------------------------------------------------- metadata, tags, actions

    async def metadata(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        server_id = request.path_params["id"]
        if request.method == "GET":
            return JSONResponse({"metadata": self.service.metadata(ctx, server_id)})
        body = await read_json(request)
        items = _str_map(body.get("metadata"), "metadata")
        audit(request, "compute.server.metadata", "server", server_id)
        merged = self.service.set_metadata(ctx, server_id, items, replace=request.method == "PUT")
        return JSONResponse({"metadata": merged})

    async def metadata_item(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        server_id, key = request.path_params["id"], request.path_params["key"]
        if request.method == "GET":
            items = self.service.metadata(ctx, server_id)
            if key not in items:
                raise NotFound("Metadata item was not found")
            return JSONResponse({"meta": {key: items[key]}})
        audit(request, "compute.server.metadata", "server", server_id)
        if request.method == "DELETE":
            self.service.delete_metadata(ctx, server_id, key)
            return Response(status_code=204)
        body = await read_json(request)
        meta = _str_map(body.get("meta"), "meta", 1)
        if list(meta) != [key]:
            raise BadRequest("Request body and URI mismatch")
        self.service.set_metadata(ctx, server_id, meta, replace=False)
        return JSONResponse({"meta": meta})

    async def tags(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        _require_version(v, (2, 26))
        server_id = request.path_params["id"]
        if request.method == "GET":
            return JSONResponse({"tags": self.service.tags(ctx, server_id)})
        audit(request, "compute.server.tags", "server", server_id)
        if request.method == "DELETE":
            self.service.delete_tag(ctx, server_id, None)
            return Response(status_code=204)
        body = await read_json(request)
        tags = body.get("tags")
        if not isinstance(tags, list) or not all(
            isinstance(t, str) and TAG_RE.match(t) for t in tags
        ):
            raise BadRequest("Invalid input for field/attribute tags.")
        return JSONResponse({"tags": self.service.set_tags(ctx, server_id, tags)})

    async def tag(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        _require_version(v, (2, 26))
        server_id, tag = request.path_params["id"], request.path_params["tag"]
        if request.method == "GET":
            if tag not in self.service.tags(ctx, server_id):
                raise NotFound(f"Tag '{tag}' could not be found.")
            return Response(status_code=204)
        audit(request, "compute.server.tags", "server", server_id)
        if request.method == "DELETE":
            self.service.delete_tag(ctx, server_id, tag)
            return Response(status_code=204)
        if not TAG_RE.match(tag):
            raise BadRequest("Invalid tag: at most 60 characters, no ',' or '/'.")
        created = self.service.add_tag(ctx, server_id, tag)
        location = f"{self.base(request)}/v2.1/servers/{server_id}/tags/{tag}"
        return Response(status_code=201 if created else 204, headers={"Location": location})

    def _action_body(self, a: dict[str, Any], v: tuple[int, int], events: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "action": a["action"],
            "instance_uuid": a["instance_uuid"],
            "request_id": a["request_id"],
            "user_id": a["user_id"],
            "project_id": a["project_id"],
            "start_time": isotime(a["start_time"]),
            "message": a["message"],
        }
        if v >= (2, 58):
            body["updated_at"] = isotime(a["updated_at"])
        if events:
            body["events"] = [
                {
                    "event": f"compute_{a['action'].lower()}",
                    "start_time": isotime(a["start_time"]),
                    "finish_time": isotime(a["finish_time"]),
                    "result": a["result"],
                    **({"host": self.service.host, "hostId": ""} if v >= (2, 62) else {}),
                }
            ]
        return body

    async def actions(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        items = self.service.instance_actions(ctx, request.path_params["id"])
        return JSONResponse({"instanceActions": [self._action_body(a, v, False) for a in items]})

    async def action(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        item = self.service.instance_action(
            ctx, request.path_params["id"], request.path_params["req"]
        )
        return JSONResponse({"instanceAction": self._action_body(item, v, True)})

    async def ips(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        return JSONResponse(
            {"addresses": self.service.get_server(ctx, request.path_params["id"])["addresses"]}
        )

    @staticmethod
    def _interface_body(port: dict[str, Any], v: tuple[int, int]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "port_state": port["status"],
            "fixed_ips": [
                {"subnet_id": f["subnet_id"], "ip_address": f["ip_address"]}
                for f in port["fixed_ips"]
            ],
            "port_id": port["id"],
            "net_id": port["network_id"],
            "mac_addr": port["mac_address"],
        }
        if v >= (2, 70):
            body["tag"] = None
        return body

    async def interfaces(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        server_id = request.path_params["id"]
        if request.method == "GET":
            ports = await run_in_threadpool(self.service.interfaces, ctx, server_id)
            return JSONResponse(
                {"interfaceAttachments": [self._interface_body(p, v) for p in ports]}
            )
        body = await read_json(request)
        data = body.get("interfaceAttachment", {})
        if not isinstance(data, dict) or not set(data) <= {"port_id", "net_id", "fixed_ips", "tag"}:
            raise BadRequest("Invalid input for field/attribute interfaceAttachment.")
        port_id, net_id = data.get("port_id"), data.get("net_id")
        fixed = data.get("fixed_ips")
        fixed_ip = None
        if fixed is not None:
            if (
                not isinstance(fixed, list)
                or len(fixed) != 1
                or not isinstance(fixed[0], dict)
                or not isinstance(fixed[0].get("ip_address"), str)
            ):
                raise BadRequest("Invalid input for field/attribute fixed_ips: one ip_address.")
            if net_id is None:
                raise BadRequest("fixed_ips needs net_id.")
            fixed_ip = fixed[0]["ip_address"]
        for name, value in (("port_id", port_id), ("net_id", net_id)):
            if value is not None and (not isinstance(value, str) or len(value) > 64):
                raise BadRequest(f"Invalid input for field/attribute {name}.")
        if port_id is not None and net_id is not None:
            raise BadRequest("Must not input both network_id and port_id")
        audit(request, "compute.server.attach_interface", "server", server_id)
        port = await run_in_threadpool(
            self.service.attach_interface, ctx, server_id, port_id, net_id, fixed_ip
        )
        return JSONResponse({"interfaceAttachment": self._interface_body(port, v)})

    async def interface(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        server_id, port_id = request.path_params["id"], request.path_params["port"]
        if request.method == "DELETE":
            audit(request, "compute.server.detach_interface", "server", server_id)
            await run_in_threadpool(self.service.detach_interface, ctx, server_id, port_id)
            return Response(status_code=202)
        for port in await run_in_threadpool(self.service.interfaces, ctx, server_id):
            if port["id"] == port_id:
                return JSONResponse({"interfaceAttachment": self._interface_body(port, v)})
        raise NotFound(f"Instance {server_id} has no interface with port {port_id[:64]}.")

    @staticmethod
    def _attachment_body(a: dict[str, Any], v: tuple[int, int]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": a["volume_id"],
            "serverId": a["server_id"],
            "volumeId": a["volume_id"],
            "device": a["device"],
        }
        if v >= (2, 70):
            body["tag"] = None
        if v >= (2, 79):
            body["delete_on_termination"] = bool(a.get("delete_on_termination"))
        if v >= (2, 89):
            del body["id"]
            body["attachment_id"] = a.get("attachment_id")
            body["bdm_uuid"] = a.get("attachment_id")
        return body

    async def volume_attachments(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        server_id = request.path_params["id"]
        if request.method == "GET":
            items = await run_in_threadpool(self.service.volume_attachments, ctx, server_id)
            return JSONResponse({"volumeAttachments": [self._attachment_body(a, v) for a in items]})
        body = await read_json(request)
        data = body.get("volumeAttachment")
        if not isinstance(data, dict) or not isinstance(data.get("volumeId"), str):
            raise BadRequest("Invalid input for field/attribute volumeAttachment.volumeId.")
        delete = data.get("delete_on_termination", False) if v >= (2, 79) else False
        if not isinstance(delete, bool):
            raise BadRequest("Invalid input for field/attribute delete_on_termination.")
        audit(request, "compute.server.attach_volume", "server", server_id)
        attachment = await run_in_threadpool(
            self.service.attach_volume, ctx, server_id, data["volumeId"], delete
        )
        return JSONResponse({"volumeAttachment": self._attachment_body(attachment, v)})

    async def volume_attachment(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        server_id, volume_id = request.path_params["id"], request.path_params["volume"]
        if request.method == "DELETE":
            audit(request, "compute.server.detach_volume", "server", server_id)
            await run_in_threadpool(self.service.detach_volume, ctx, server_id, volume_id)
            return Response(status_code=202)
        if request.method == "PUT":
            raise BadRequest("Swapping a server's volume is not supported by this cloud.")
        items = await run_in_threadpool(self.service.volume_attachments, ctx, server_id)
        for a in items:
            if a["volume_id"] == volume_id:
                return JSONResponse({"volumeAttachment": self._attachment_body(a, v)})
        raise NotFound(f"Volume {volume_id} is not attached to server {server_id}.")

    # -------------------------------------------------------------- zones, limits, host

    async def zones(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        zone = self.service.settings.availability_zone
        return JSONResponse(
            {
                "availabilityZoneInfo": [
                    {"zoneName": zone, "zoneState": {"available": True}, "hosts": None}
                ]
            }
        )

    async def zones_detail(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        if not ctx.is_admin:
            raise ApiErrorForbidden()
        zone = self.service.settings.availability_zone
        now = isotime(self.service.clock.now())
        host = self.service.host
        return JSONResponse(
            {
                "availabilityZoneInfo": [
                    {
                        "zoneName": zone,
                        "zoneState": {"available": True},
                        "hosts": {
                            host: {
                                "nova-compute": {
                                    "available": True,
                                    "active": True,
                                    "updated_at": now,
                                }
                            }
                        },
                    },
                    {
                        "zoneName": "internal",
                        "zoneState": {"available": True},
                        "hosts": {
                            host: {
                                "nova-conductor": {
                                    "available": True,
                                    "active": True,
                                    "updated_at": now,
                                },
                                "nova-scheduler": {
                                    "available": True,
                                    "active": True,
                                    "updated_at": now,
                                },
                            }
                        },
                    },
                ]
            }
        )

    # -------------------------------------------------------------- quotas

    async def quota_set(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        project_id = request.path_params["project"]
        if request.method == "GET":
            limits = await run_in_threadpool(self.service.quota_limits, ctx, project_id)
            return JSONResponse({"quota_set": {"id": project_id, **_quota_values(limits, v)}})
        if request.method == "DELETE":
            audit(request, "compute.quota.delete", "project", project_id)
            await run_in_threadpool(self.service.reset_quota, ctx, project_id)
            return Response(status_code=202)
        audit(request, "compute.quota.update", "project", project_id)
        changes, force = _quota_changes(await read_json(request))
        limits = await run_in_threadpool(self.service.update_quota, ctx, project_id, changes, force)
        return JSONResponse({"quota_set": _quota_values(limits, v)})

    async def quota_defaults(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        project_id = request.path_params["project"]
        limits = self.service.default_quotas()
        return JSONResponse({"quota_set": {"id": project_id, **_quota_values(limits, v)}})

    async def quota_detail(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        project_id = request.path_params["project"]
        limits, used = await run_in_threadpool(self.service.quota_usage, ctx, project_id)
        detail: dict[str, Any] = {"id": project_id}
        for key, limit in _quota_values(limits, v).items():
            detail[key] = {"in_use": used.get(key, 0), "limit": limit, "reserved": 0}
        return JSONResponse({"quota_set": detail})

    async def limits(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        used = await run_in_threadpool(self.service.servers_in_use, ctx)
        quota = (
            await run_in_threadpool(self.service.quota_limits, ctx, ctx.project_id)
            if ctx.project_id
            else self.service.default_quotas()
        )
        absolute: dict[str, int] = {
            "maxTotalInstances": quota["instances"],
            "maxTotalCores": quota["cores"],
            "maxTotalRAMSize": quota["ram"],
            "maxServerMeta": quota["metadata_items"],
            "maxTotalKeypairs": quota["key_pairs"],
            "maxServerGroups": 10,
            "maxServerGroupMembers": 10,
            "totalInstancesUsed": used["instances"],
            "totalCoresUsed": used["cores"],
            "totalRAMUsed": used["ram"],
            "totalServerGroupsUsed": 0,
        }
        if v < (2, 57):
            absolute.update({"maxPersonality": 5, "maxPersonalitySize": 10240})
        if v < (2, 36):
            absolute.update(
                {
                    "maxSecurityGroups": 10,
                    "maxSecurityGroupRules": 20,
                    "maxTotalFloatingIps": 10,
                    "totalSecurityGroupsUsed": 0,
                    "totalFloatingIpsUsed": 0,
                }
            )
        return JSONResponse({"limits": {"rate": [], "absolute": absolute}})

    def _hypervisor_body(self, v: tuple[int, int], detail: bool) -> dict[str, Any]:
        h = self.service.hypervisor()
        body: dict[str, Any] = {
            "id": h["id"] if v >= (2, 53) else 1,
            "hypervisor_hostname": h["hypervisor_hostname"],
            "state": "up",
            "status": "enabled",
        }
        if detail:
            body.update(
                {
                    "hypervisor_type": "QEMU",
                    "hypervisor_version": 7002000,
                    "host_ip": "127.0.0.1",
                    "service": {"host": h["host"], "id": 1, "disabled_reason": None},
                }
            )
            if v < (2, 88):
                body.update(
                    {
                        "vcpus": h["vcpus"],
                        "memory_mb": h["memory_mb"],
                        "local_gb": h["local_gb"],
                        "vcpus_used": h["vcpus_used"],
                        "memory_mb_used": h["memory_mb_used"],
                        "local_gb_used": h["local_gb_used"],
                        "free_ram_mb": h["memory_mb"] - h["memory_mb_used"],
                        "free_disk_gb": h["local_gb"] - h["local_gb_used"],
                        "current_workload": 0,
                        "running_vms": h["running_vms"],
                        "disk_available_least": h["local_gb"] - h["local_gb_used"],
                        "cpu_info": json.dumps({"accelerator": h["accelerator"]}),
                    }
                )
        return body

    async def hypervisors(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        self._require_admin(ctx)
        return JSONResponse({"hypervisors": [self._hypervisor_body(v, False)]})

    async def hypervisors_detail(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        self._require_admin(ctx)
        return JSONResponse({"hypervisors": [self._hypervisor_body(v, True)]})

    async def hypervisor(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        self._require_admin(ctx)
        body = self._hypervisor_body(v, True)
        if request.path_params["id"] != str(body["id"]):
            raise NotFound(f"Hypervisor with ID {request.path_params['id']} could not be found.")
        return JSONResponse({"hypervisor": body})

    async def hypervisor_stats(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        self._require_admin(ctx)
        h = self._hypervisor_body((2, 1), True)
        keys = (
            "vcpus",
            "memory_mb",
            "local_gb",
            "vcpus_used",
            "memory_mb_used",
            "local_gb_used",
            "free_ram_mb",
            "free_disk_gb",
            "current_workload",
            "running_vms",
            "disk_available_least",
        )
        return JSONResponse({"hypervisor_statistics": {"count": 1, **{k: h[k] for k in keys}}})

    async def services(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        self._require_admin(ctx)
        now = isotime(self.service.clock.now())
        host = self.service.host
        rows = []
        for index, (binary, zone) in enumerate(
            (
                ("nova-conductor", "internal"),
                ("nova-scheduler", "internal"),
                ("nova-compute", self.service.settings.availability_zone),
            ),
            start=1,
        ):
            rows.append(
                {
                    "id": index if v < (2, 53) else f"{host}-{binary}",
                    "binary": binary,
                    "host": host,
                    "zone": zone,
                    "status": "enabled",
                    "state": "up",
                    "updated_at": now,
                    "disabled_reason": None,
                    "forced_down": False,
                }
            )
        return JSONResponse({"services": rows})

    async def extensions(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        return JSONResponse({"extensions": []})

    @staticmethod
    def _require_admin(ctx: RequestContext) -> None:
        if not ctx.is_admin:
            raise ApiErrorForbidden()


class ApiErrorForbidden(ApiError):
    status = 403
    title = "Forbidden"

    def __init__(self) -> None:
        super().__init__("Policy doesn't allow this operation: an admin role is required.")


def _boot_volume(raw: Any) -> BootVolume | None:
    """The boot device of a `block_device_mapping_v2`, as a `BootVolume`; None when absent."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise BadRequest("Invalid input for field/attribute block_device_mapping_v2.")
    boots = [b for b in raw if str(b.get("boot_index", "")) == "0"]
    if len(boots) != 1 or len(raw) != 1:
        raise BadRequest(
            "Block device mapping: give exactly one device, the boot device (boot_index 0); "
            "attach more volumes once the server runs."
        )
    (bdm,) = boots
    source, destination = bdm.get("source_type"), bdm.get("destination_type", "volume")
    if source == "image" and destination == "local":
        return None  # the image on the host's disk: the ordinary boot (`openstack` sends this)
    if destination != "volume" or source not in ("image", "volume"):
        raise BadRequest(
            "Block device mapping: the boot device must be a volume, from an image "
            "(source_type image) or an existing one (source_type volume)."
        )
    ident = bdm.get("uuid")
    if not isinstance(ident, str) or not ident:
        raise BadRequest("Invalid input for field/attribute block_device_mapping_v2.uuid.")
    size = 0
    if source == "image":
        size = _int(bdm.get("volume_size"), "volume_size", 1)
    delete = bdm.get("delete_on_termination", False)
    if isinstance(delete, str):
        delete = delete.lower() in ("true", "1", "yes")
    return BootVolume(source, ident, size, bool(delete))


def _encode_items(items: Iterable[dict[str, Any]]) -> bytes:
    """A JSON array of `items`, encoded a batch at a time (the same bytes as at once). A
    long list never holds all its bodies: the garbage collector walks every live object
    again and again while a list is built, so 5,000 bodies held at once made a list of
    5,000 cost 8 times one of 1,000."""
    parts = []
    pending = iter(items)
    while batch := list(islice(pending, BODIES_PER_BATCH)):
        parts.append(encode(batch)[1:-1])
    return b"[" + b",".join(parts) + b"]"


def _usage_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


class _StripProject:
    """`/v2.1/{project_id}/servers` (the old catalog style) is the same as `/v2.1/servers`."""

    PROJECT = re.compile(r"^/v2\.1/[0-9a-f]{32}(?=/|$)")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            path = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
            match = self.PROJECT.match(path)
            if match:
                scope = dict(scope)
                scope["path"] = root + "/v2.1" + path[match.end() :]
        await self.app(scope, receive, send)


def build_app(service: ComputeService, public_url: str = "") -> ASGIApp:
    api = ComputeApi(service, public_url)
    return ErrorLayer(_StripProject(Router(routes=api.routes())), render_error)
