"""The billing API, `/billing/v1`: accounts, their projects and roles, the price catalog,
consumption, invoices (JSON, CSV, PDF), budgets. No rules here: they live in
`BillingService`; this module reads requests and writes responses.

Every route names its policy action and enters through the edge. The OpenAPI document
is the file beside this module (openapi.json), served at `/billing/v1/openapi.json`;
tests/api/test_billing_openapi.py keeps it and these routes in step.

Errors use the plain OpenStack shape: `{"error": {"code", "title", "message"}}`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import ASGIApp

from souverain.billing.export import invoice_csv, invoice_json, invoice_pdf
from souverain.billing.service import BillingService
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden
from souverain.common.jsoncodec import JSONResponse
from souverain.openstack.auth import TokenValidator, audit
from souverain.openstack.body import member, read_json
from souverain.openstack.faults import ErrorLayer, render_error
from souverain.openstack.links import base_url
from souverain.openstack.routing import Edge, EdgeRoute

PREFIX = "/billing"
EXPORTS = {
    "json": ("application/json", invoice_json),
    "csv": ("text/csv; charset=utf-8", invoice_csv),
    "pdf": ("application/pdf", invoice_pdf),
}
CONSUMPTION_QUERY = frozenset({"start", "end", "project_id", "resource_type", "granularity"})
AUDIT_QUERY = frozenset({"since", "limit", "marker"})


def openapi_document() -> dict[str, Any]:
    """The OpenAPI description shipped beside this module; `servers` is set per request."""
    text = resources.files("souverain.billing").joinpath("openapi.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _time(raw: str | None, name: str) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"Invalid {name}: an ISO 8601 time, e.g. 2026-11-01T00:00:00Z.") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _int(raw: str, name: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²" is a digit, no int
        raise BadRequest(f"Invalid {name}: a non-negative integer.")
    return int(raw)


class BillingApi:
    def __init__(self, service: BillingService, tokens: TokenValidator, public_url: str) -> None:
        self.service = service
        self.edge = Edge(tokens)
        self.public_url = public_url
        self.document = openapi_document()  # read once, when the app is built

    def routes(self) -> list[EdgeRoute]:
        e = self.edge
        return [
            e.public("/", self.versions, {"GET": "billing:version:show"}),
            e.public("/v1", self.version, {"GET": "billing:version:show"}),
            e.public("/v1/openapi.json", self.openapi, {"GET": "billing:openapi:show"}),
            e.route("/v1/catalog", self.catalog, {"GET": "billing:catalog:show"}),
            e.route(
                "/v1/accounts",
                self.accounts,
                {"GET": "billing:account:list", "POST": "billing:account:create"},
            ),
            e.route(
                "/v1/accounts/{id}",
                self.account,
                {
                    "GET": "billing:account:show",
                    "PATCH": "billing:account:update",
                    "DELETE": "billing:account:delete",
                },
            ),
            e.route(
                "/v1/accounts/{id}/projects",
                self.projects,
                {"GET": "billing:account_project:list", "POST": "billing:account_project:create"},
            ),
            e.route(
                "/v1/accounts/{id}/roles/{user}/{role}",
                self.role,
                {"PUT": "billing:account_role:grant", "DELETE": "billing:account_role:revoke"},
            ),
            e.route(
                "/v1/accounts/{id}/consumption",
                self.consumption,
                {"GET": "billing:consumption:show"},
            ),
            e.route("/v1/accounts/{id}/invoices", self.invoices, {"GET": "billing:invoice:list"}),
            e.route("/v1/accounts/{id}/audit", self.audit_trail, {"GET": "billing:audit:list"}),
            e.route("/v1/accounts/{id}/budget", self.budget, {"PUT": "billing:budget:update"}),
            e.route("/v1/invoicing", self.invoicing, {"POST": "billing:invoicing:run"}),
            e.route("/v1/invoices/{id}", self.invoice, {"GET": "billing:invoice:show"}),
            e.route(
                "/v1/invoices/{id}/download", self.download, {"GET": "billing:invoice:download"}
            ),
            e.route(
                "/v1/invoices/{id}/credit-note",
                self.credit_note,
                {"POST": "billing:credit_note:create"},
            ),
        ]

    def base(self, request: Request) -> str:
        return base_url(request, self.public_url, PREFIX)

    async def versions(self, request: Request) -> Response:
        return JSONResponse(
            {"versions": [{"id": "v1", "status": "CURRENT", "links": [self._self(request)]}]}
        )

    def _self(self, request: Request) -> dict[str, str]:
        return {"rel": "self", "href": f"{self.base(request)}/v1"}

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": {"id": "v1", "status": "CURRENT"}})

    async def openapi(self, request: Request) -> Response:
        # the key is replaced in place: the document keeps the file's order
        server = [{"url": f"{self.base(request)}/v1"}]
        return JSONResponse({**self.document, "servers": server})

    async def catalog(self, request: Request, ctx: RequestContext) -> Response:
        return JSONResponse({"catalog": self.service.catalog.as_dict()})

    async def accounts(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            views = await asyncio.to_thread(self.service.list_accounts, ctx)
            return JSONResponse({"accounts": views})
        audit(request, "billing.account.create", "account", None)
        body = await read_json(request)
        view = await asyncio.to_thread(self.service.create_account, ctx, member(body, "account"))
        audit(request, "billing.account.create", "account", view["id"])
        return JSONResponse({"account": view}, 201)

    async def account(self, request: Request, ctx: RequestContext) -> Response:
        account_id = request.path_params["id"]
        if request.method == "GET":
            view = await asyncio.to_thread(self.service.get_account, ctx, account_id)
            return JSONResponse({"account": view})
        if request.method == "PATCH":
            return await self._update_account(request, ctx, account_id)
        audit(request, "billing.account.delete", "account", account_id)
        await asyncio.to_thread(self.service.delete_account, ctx, account_id)
        return Response(status_code=204)

    async def _update_account(
        self, request: Request, ctx: RequestContext, account_id: str
    ) -> Response:
        audit(request, "billing.account.update", "account", account_id)
        body = member(await read_json(request), "account")
        view, unverified = await asyncio.to_thread(
            self.service.update_account, ctx, account_id, body
        )
        if unverified:  # the audit line and the caller both learn that reverse charge ended
            audit(request, "billing.account.vat_unverified", "account", account_id)
            notice = (
                "The VAT number is no longer verified: invoices charge VAT (no reverse "
                "charge) until the operator verifies it again."
            )
            return JSONResponse({"account": view, "notice": notice})
        if body.get("vat_verified") is True:
            audit(request, "billing.account.vat_verified", "account", account_id)
        return JSONResponse({"account": view})

    async def projects(self, request: Request, ctx: RequestContext) -> Response:
        account_id = request.path_params["id"]
        if request.method == "GET":
            view = await asyncio.to_thread(self.service.get_account, ctx, account_id)
            return JSONResponse({"projects": view["projects"]})
        audit(request, "billing.account.add_project", "account", account_id)
        body = member(await read_json(request), "project")
        project = await asyncio.to_thread(self.service.add_project, ctx, account_id, body)
        return JSONResponse({"project": project}, 201)

    async def role(self, request: Request, ctx: RequestContext) -> Response:
        p = request.path_params
        if request.method == "PUT":
            audit(request, "billing.account.grant", "account", p["id"])
            await asyncio.to_thread(self.service.grant, ctx, p["id"], p["user"], p["role"])
        else:
            audit(request, "billing.account.revoke", "account", p["id"])
            await asyncio.to_thread(self.service.revoke, ctx, p["id"], p["user"], p["role"])
        return Response(status_code=204)

    async def consumption(self, request: Request, ctx: RequestContext) -> Response:
        q = request.query_params
        unknown = set(q) - CONSUMPTION_QUERY
        if unknown:
            raise BadRequest(f"Unknown query parameter(s): {', '.join(sorted(unknown))[:128]}.")
        view = await asyncio.to_thread(
            self.service.consumption,
            ctx,
            request.path_params["id"],
            _time(q.get("start"), "start"),
            _time(q.get("end"), "end"),
            q.get("project_id"),
            q.get("resource_type"),
            q.get("granularity", "day"),
        )
        return JSONResponse({"consumption": view})

    async def audit_trail(self, request: Request, ctx: RequestContext) -> Response:
        q = request.query_params
        unknown = set(q) - AUDIT_QUERY
        if unknown:
            raise BadRequest(f"Unknown query parameter(s): {', '.join(sorted(unknown))[:128]}.")
        limit, marker = _int(q.get("limit", "100"), "limit"), _int(q.get("marker", "0"), "marker")
        records, next_marker = await asyncio.to_thread(
            self.service.audit_trail.records,
            ctx,
            request.path_params["id"],
            _time(q.get("since"), "since"),
            marker,
            limit,
        )
        next_url = None
        if next_marker is not None:
            next_url = str(request.url.include_query_params(marker=next_marker))
        return JSONResponse({"audit": records, "links": {"next": next_url}})

    async def invoices(self, request: Request, ctx: RequestContext) -> Response:
        views = await asyncio.to_thread(self.service.list_invoices, ctx, request.path_params["id"])
        return JSONResponse({"invoices": views})

    async def budget(self, request: Request, ctx: RequestContext) -> Response:
        account_id = request.path_params["id"]
        audit(request, "billing.account.budget", "account", account_id)
        body = member(await read_json(request), "budget")
        view = await asyncio.to_thread(self.service.set_budget, ctx, account_id, body.get("amount"))
        return JSONResponse({"account": view})

    async def invoicing(self, request: Request, ctx: RequestContext) -> Response:
        if not ctx.is_admin:
            raise Forbidden("Only the operator issues invoices.")
        body = member(await read_json(request), "invoicing")
        audit(request, "billing.invoices.issue", "period", str(body.get("period"))[:16])
        views = await asyncio.to_thread(
            self.service.issue_invoices, str(body.get("period")), None, body.get("account_id")
        )
        return JSONResponse({"invoices": views})

    async def invoice(self, request: Request, ctx: RequestContext) -> Response:
        view, _ = await asyncio.to_thread(self.service.get_invoice, ctx, request.path_params["id"])
        return JSONResponse({"invoice": view})

    async def download(self, request: Request, ctx: RequestContext) -> Response:
        kind = request.query_params.get("format", "pdf")
        if kind not in EXPORTS:
            raise BadRequest("Invalid format: json, csv or pdf.")
        view, document = await asyncio.to_thread(
            self.service.get_invoice, ctx, request.path_params["id"]
        )
        media_type, render = EXPORTS[kind]
        body = await asyncio.to_thread(render, document)
        filename = f"{view['number']}.{kind}"
        return Response(
            body,
            media_type=media_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    async def credit_note(self, request: Request, ctx: RequestContext) -> Response:
        invoice_id = request.path_params["id"]
        audit(request, "billing.invoice.credit_note", "invoice", invoice_id)
        view = await asyncio.to_thread(self.service.credit_note, ctx, invoice_id)
        return JSONResponse({"invoice": view}, 201)


def build_app(service: BillingService, tokens: TokenValidator, public_url: str = "") -> ASGIApp:
    api = BillingApi(service, tokens, public_url)
    return ErrorLayer(Router(routes=api.routes()), render_error)
