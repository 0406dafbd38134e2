"""Nova's image proxy (`/images`, deprecated at 2.36 and gone after it): a Glance image
shown and deleted in Nova's older shape, for clients that still speak it.

Part of compute's HTTP layer; the image service decides who sees and deletes what.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.compute.api_base import Handlers, require_at_most
from souverain.image.service import ListQuery
from souverain.openstack.auth import audit
from souverain.openstack.microversion import Version
from souverain.openstack.query import parse_limit

# Glance's status -> Nova's, and how far along Nova says the image is.
STATUS = {
    "queued": "SAVING",
    "saving": "SAVING",
    "uploading": "SAVING",
    "importing": "SAVING",
    "active": "ACTIVE",
    "deleted": "DELETED",
    "pending_delete": "DELETED",
    "killed": "ERROR",
}
PROGRESS = {"queued": 25, "saving": 50, "uploading": 50, "importing": 50, "active": 100}
# The fields of Glance's view that are not the image's own properties (Nova's metadata).
GLANCE_FIELDS = frozenset(
    [
        "id",
        "name",
        "status",
        "visibility",
        "protected",
        "os_hidden",
        "owner",
        "disk_format",
        "container_format",
        "min_disk",
        "min_ram",
        "size",
        "virtual_size",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "tags",
        "created_at",
        "updated_at",
        "self",
        "file",
        "schema",
        "direct_url",
        "locations",
    ]
)
LAST_VERSION: Version = (2, 35)


def image_body(base: str, image: dict[str, Any]) -> dict[str, Any]:
    """A Glance image as Nova's proxy shows it."""
    image_id = image["id"]
    metadata = {k: v for k, v in image.items() if k not in GLANCE_FIELDS}
    body: dict[str, Any] = {
        "id": image_id,
        "name": image["name"],
        "status": STATUS.get(image["status"], "UNKNOWN"),
        "progress": PROGRESS.get(image["status"], 0),
        "minDisk": image["min_disk"] or 0,
        "minRam": image["min_ram"] or 0,
        "metadata": metadata,
        "created": image["created_at"],
        "updated": image["updated_at"],
        "OS-EXT-IMG-SIZE:size": image["size"],
        "links": [
            {"rel": "self", "href": f"{base}/v2.1/images/{image_id}"},
            {"rel": "bookmark", "href": f"{base}/images/{image_id}"},
        ],
    }
    server_id = metadata.get("instance_uuid")
    if server_id:
        body["server"] = {
            "id": server_id,
            "links": [
                {"rel": "self", "href": f"{base}/v2.1/servers/{server_id}"},
                {"rel": "bookmark", "href": f"{base}/servers/{server_id}"},
            ],
        }
    return body


def _matches(image: dict[str, Any], q: Any) -> bool:
    """Nova's proxy filters on an image's properties: `server` (its id, or a link to it)
    and `type` (its image_type)."""
    server = q.get("server")
    if server is not None and image.get("instance_uuid") != server.rstrip("/").rsplit("/", 1)[-1]:
        return False
    kind = q.get("type")
    return kind is None or image.get("image_type") == kind


def image_brief(base: str, image: dict[str, Any]) -> dict[str, Any]:
    full = image_body(base, image)
    return {"id": full["id"], "name": full["name"], "links": full["links"]}


class ImageProxyHandlers(Handlers):
    async def images(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        return await self._list(request, ctx, v, detail=False)

    async def images_detail(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        return await self._list(request, ctx, v, detail=True)

    async def _list(
        self, request: Request, ctx: RequestContext, v: Version, detail: bool
    ) -> Response:
        """The images the caller may see, newest first, by `name`; paged by limit and marker."""
        require_at_most(v, LAST_VERSION)
        q = request.query_params
        filters = {"name": q["name"]} if "name" in q else {}
        query = ListQuery(filters, limit=parse_limit(q.get("limit")), marker=q.get("marker"))
        images = self.service.images

        def listed() -> list[dict[str, Any]]:
            rows, _ = images.list_images(ctx, query)
            return [images.get(ctx, str(row.id)) for row in rows]

        found = [i for i in await run_in_threadpool(listed) if _matches(i, q)]
        shape = image_body if detail else image_brief
        return JSONResponse({"images": [shape(self.base(request), i) for i in found]})

    async def image(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_at_most(v, LAST_VERSION)
        image_id = request.path_params["id"]
        if request.method == "DELETE":
            audit(request, "compute.image.delete", "image", image_id)
            await run_in_threadpool(self.service.images.delete, ctx, image_id)
            return Response(status_code=204)
        image = await run_in_threadpool(self.service.images.get, ctx, image_id)
        return JSONResponse({"image": image_body(self.base(request), image)})
