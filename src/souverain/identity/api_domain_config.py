"""A domain's configuration over HTTP (/v3/domains/{id}/config[/{group}[/{option}]] and
/v3/domains/config[/{group}[/{option}]]/default). Routes only: `domain_config.py` rules."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.identity.domain_config import DomainConfigs
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.routing import Edge, EdgeRoute

CONFIG = "/v3/domains/{domain_id}/config"
DEFAULTS = "/v3/domains/config"
READ = {"GET": "identity:get_domain_config", "HEAD": "identity:get_domain_config"}
WRITE = {
    "PATCH": "identity:update_domain_config",
    "DELETE": "identity:delete_domain_config",
}
DEFAULT = {"GET": "identity:get_domain_config_default"}
COMPLIANCE = {"GET": "identity:get_security_compliance_domain_config"}


class DomainConfigApi:
    def __init__(self, configs: DomainConfigs) -> None:
        self.configs = configs

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        whole = {**READ, **WRITE, "PUT": "identity:create_domain_config"}
        return [
            # the defaults first: /v3/domains/config/... is not a domain's
            edge.route(DEFAULTS + "/default", self.defaults, DEFAULT),
            edge.route(DEFAULTS + "/{group}/default", self.defaults, DEFAULT),
            edge.route(DEFAULTS + "/{group}/{option}/default", self.defaults, DEFAULT),
            # read-only, for any user: the password rule (a group no domain sets)
            edge.route(CONFIG + "/security_compliance", self.compliance, COMPLIANCE),
            edge.route(CONFIG + "/security_compliance/{option}", self.compliance, COMPLIANCE),
            edge.route(CONFIG, self.config, whole),
            edge.route(CONFIG + "/{group}", self.config, {**READ, **WRITE}),
            edge.route(CONFIG + "/{group}/{option}", self.config, {**READ, **WRITE}),
        ]

    async def defaults(self, request: Request, ctx: RequestContext) -> Response:
        params = request.path_params
        return JSONResponse(
            {"config": self.configs.defaults(params.get("group"), params.get("option"))}
        )

    async def compliance(self, request: Request, ctx: RequestContext) -> Response:
        params = request.path_params
        found = self.configs.security_compliance(params["domain_id"], params.get("option"))
        return JSONResponse({"config": found})

    async def config(self, request: Request, ctx: RequestContext) -> Response:
        params = request.path_params
        domain_id: str = params["domain_id"]
        group: str | None = params.get("group")
        option: str | None = params.get("option")
        if request.method == "GET":
            return JSONResponse({"config": self.configs.get(domain_id, group, option)})
        audit(request, f"identity.domain.config.{request.method.lower()}", "domain", domain_id)
        if request.method == "DELETE":
            self.configs.delete(domain_id, group, option)
            return Response(status_code=204)
        config = _config_of(await read_json(request))
        if request.method == "PUT":
            shown, created = self.configs.create(domain_id, config)
            return JSONResponse({"config": shown}, status_code=201 if created else 200)
        return JSONResponse({"config": self.configs.update(domain_id, config, group, option)})


def _config_of(body: dict[str, Any]) -> Any:
    """The body's `config` (Keystone reads a missing one as empty, refused as such)."""
    return body.get("config", {})
