"""Project tags over HTTP (/v3/projects/{id}/tags). Routes only: `project_tags.py` rules."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.identity.project_tags import ProjectTags
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.routing import Edge, EdgeRoute

TAGS = "/v3/projects/{project_id}/tags"


class ProjectTagApi:
    def __init__(self, tags: ProjectTags) -> None:
        self.tags = tags

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        every = {
            "GET": "identity:list_project_tags",
            "PUT": "identity:update_project_tags",
            "DELETE": "identity:delete_project_tags",
        }
        one = {
            "GET": "identity:get_project_tag",
            "HEAD": "identity:get_project_tag",
            "PUT": "identity:create_project_tag",
            "DELETE": "identity:delete_project_tag",
        }
        return [
            edge.route(TAGS, self.all_tags, every),
            edge.route(TAGS + "/{tag}", self.one_tag, one),
        ]

    async def all_tags(self, request: Request, ctx: RequestContext) -> Response:
        project_id = request.path_params["project_id"]
        if request.method == "GET":
            listed = self.tags.list_tags(ctx, project_id)
            return JSONResponse({"tags": listed, "links": {"self": str(request.url)}})
        if request.method == "PUT":
            audit(request, "identity.project.tags.update", "project", project_id)
            body = await read_json(request)
            tags = body.get("tags") if isinstance(body, dict) else None
            replaced = self.tags.replace(ctx, project_id, tags)
            return JSONResponse({"tags": replaced, "links": {"self": str(request.url)}})
        audit(request, "identity.project.tags.delete", "project", project_id)
        self.tags.remove(ctx, project_id, None)
        return Response(status_code=204)

    async def one_tag(self, request: Request, ctx: RequestContext) -> Response:
        project_id, tag = request.path_params["project_id"], request.path_params["tag"]
        if request.method == "PUT":
            audit(request, "identity.project.tag.create", "project", project_id)
            self.tags.add(ctx, project_id, tag)
            return Response(status_code=201)
        if request.method == "DELETE":
            audit(request, "identity.project.tag.delete", "project", project_id)
            self.tags.remove(ctx, project_id, tag)
            return Response(status_code=204)
        self.tags.check(ctx, project_id, tag)
        return Response(status_code=204)
