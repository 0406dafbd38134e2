"""The billing API, `/billing/v1`: accounts, their projects and roles, the price catalog,
consumption, invoices (JSON, CSV, PDF), budgets. Described by the OpenAPI document it
serves at `/billing/v1/openapi.json`. No rules here: they live in `BillingService`.

Errors use the identity service's JSON shape: `{"error": {"code", "title", "message"}}`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp

from souverain.billing.export import invoice_csv, invoice_json, invoice_pdf
from souverain.billing.service import BillingService
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.jsoncodec import JSONResponse
from souverain.identity.service import IdentityService
from souverain.openstack.auth import audit, authenticate
from souverain.openstack.body import read_json
from souverain.openstack.faults import ErrorLayer, render_error
from souverain.openstack.links import base_url

PREFIX = "/billing"
Handler = Callable[[Request, RequestContext], Awaitable[Response]]
EXPORTS = {
    "json": ("application/json", invoice_json),
    "csv": ("text/csv; charset=utf-8", invoice_csv),
    "pdf": ("application/pdf", invoice_pdf),
}


def _time(raw: str | None, name: str) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"Invalid {name}: an ISO 8601 time, e.g. 2026-11-01T00:00:00Z.") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class BillingApi:
    def __init__(self, service: BillingService, identity: IdentityService, public_url: str) -> None:
        self.service = service
        self.identity = identity
        self.public_url = public_url

    def _call(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            ctx = authenticate(self.identity, request)
            return await handler(request, ctx)

        return endpoint

    def routes(self) -> list[Route]:
        c = self._call
        return [
            Route("/", self.versions, methods=["GET"]),
            Route("/v1", self.version, methods=["GET"]),
            Route("/v1/openapi.json", self.openapi, methods=["GET"]),
            Route("/v1/catalog", c(self.catalog), methods=["GET"]),
            Route("/v1/accounts", c(self.accounts), methods=["GET", "POST"]),
            Route("/v1/accounts/{id}", c(self.account), methods=["GET", "PATCH", "DELETE"]),
            Route("/v1/accounts/{id}/projects", c(self.projects), methods=["GET", "POST"]),
            Route("/v1/accounts/{id}/roles/{user}/{role}", c(self.role), methods=["PUT", "DELETE"]),
            Route("/v1/accounts/{id}/consumption", c(self.consumption), methods=["GET"]),
            Route("/v1/accounts/{id}/invoices", c(self.invoices), methods=["GET"]),
            Route("/v1/accounts/{id}/budget", c(self.budget), methods=["PUT"]),
            Route("/v1/invoicing", c(self.invoicing), methods=["POST"]),
            Route("/v1/invoices/{id}", c(self.invoice), methods=["GET"]),
            Route("/v1/invoices/{id}/download", c(self.download), methods=["GET"]),
            Route("/v1/invoices/{id}/credit-note", c(self.credit_note), methods=["POST"]),
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
        return JSONResponse(openapi_document(f"{self.base(request)}/v1"))

    async def catalog(self, request: Request, ctx: RequestContext) -> Response:
        return JSONResponse({"catalog": self.service.catalog.as_dict()})

    async def accounts(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            views = await asyncio.to_thread(self.service.list_accounts, ctx)
            return JSONResponse({"accounts": views})
        audit(request, "billing.account.create", "account", None)
        body = await read_json(request)
        view = await asyncio.to_thread(self.service.create_account, ctx, _object(body, "account"))
        audit(request, "billing.account.create", "account", view["id"])
        return JSONResponse({"account": view}, 201)

    async def account(self, request: Request, ctx: RequestContext) -> Response:
        account_id = request.path_params["id"]
        if request.method == "GET":
            view = await asyncio.to_thread(self.service.get_account, ctx, account_id)
            return JSONResponse({"account": view})
        if request.method == "PATCH":
            audit(request, "billing.account.update", "account", account_id)
            body = _object(await read_json(request), "account")
            view = await asyncio.to_thread(self.service.update_account, ctx, account_id, body)
            return JSONResponse({"account": view})
        audit(request, "billing.account.delete", "account", account_id)
        await asyncio.to_thread(self.service.delete_account, ctx, account_id)
        return Response(status_code=204)

    async def projects(self, request: Request, ctx: RequestContext) -> Response:
        account_id = request.path_params["id"]
        if request.method == "GET":
            view = await asyncio.to_thread(self.service.get_account, ctx, account_id)
            return JSONResponse({"projects": view["projects"]})
        audit(request, "billing.account.add_project", "account", account_id)
        body = _object(await read_json(request), "project")
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
        unknown = set(q) - {"start", "end", "project_id", "resource_type", "granularity"}
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

    async def invoices(self, request: Request, ctx: RequestContext) -> Response:
        views = await asyncio.to_thread(self.service.list_invoices, ctx, request.path_params["id"])
        return JSONResponse({"invoices": views})

    async def budget(self, request: Request, ctx: RequestContext) -> Response:
        account_id = request.path_params["id"]
        audit(request, "billing.account.budget", "account", account_id)
        body = _object(await read_json(request), "budget")
        view = await asyncio.to_thread(self.service.set_budget, ctx, account_id, body.get("amount"))
        return JSONResponse({"account": view})

    async def invoicing(self, request: Request, ctx: RequestContext) -> Response:
        if not ctx.is_admin:
            from souverain.common.errors import Forbidden

            raise Forbidden("Only the operator issues invoices.")
        body = _object(await read_json(request), "invoicing")
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


def _object(data: Any, key: str) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, dict):
        raise BadRequest(f"Expecting to find {key} in request body.")
    return value


def build_app(service: BillingService, identity: IdentityService, public_url: str = "") -> ASGIApp:
    api = BillingApi(service, identity, public_url)
    return ErrorLayer(Router(routes=api.routes()), render_error)


def openapi_document(server: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of /billing/v1 (what this module serves)."""

    def op(
        summary: str, tag: str, *, body: str | None = None, params: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "summary": summary,
            "tags": [tag],
            "security": [{"token": []}],
            "responses": {
                "200": {"description": "OK"},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
            },
        }
        if body is not None:
            out["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}
                },
            }
        if params:
            out["parameters"] = [
                {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                for name in params
            ]
        return out

    path_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Souverain billing",
            "version": "v1",
            "description": (
                "Customer accounts, their projects and account roles (owner, billing, viewer), "
                "the price catalog in EUR, consumption (hourly, daily, monthly) with a cost "
                "estimate, monthly invoices (JSON, CSV, PDF) and budget alerts."
            ),
        },
        "servers": [{"url": server}],
        "components": {
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
            },
            "responses": {
                "Error": {
                    "description": "an error",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {
                                        "type": "object",
                                        "properties": {
                                            "code": {"type": "integer"},
                                            "title": {"type": "string"},
                                            "message": {"type": "string"},
                                        },
                                    }
                                },
                            }
                        }
                    },
                }
            },
            "schemas": {
                "AccountCreate": {
                    "type": "object",
                    "required": ["account"],
                    "properties": {
                        "account": {
                            "type": "object",
                            "required": ["name", "country"],
                            "properties": {
                                "name": {"type": "string", "maxLength": 255},
                                "billing_contact": {"type": "string", "maxLength": 255},
                                "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
                                "vat_number": {"type": ["string", "null"]},
                                "project_limit": {"type": "integer", "minimum": 0},
                                "owner_user_id": {"type": "string"},
                            },
                        }
                    },
                },
                "ProjectCreate": {
                    "type": "object",
                    "properties": {
                        "project": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "description": {"type": "string"},
                                "project_id": {"type": "string"},
                            },
                        }
                    },
                },
                "Budget": {
                    "type": "object",
                    "properties": {
                        "budget": {
                            "type": "object",
                            "properties": {"amount": {"type": ["string", "null"]}},
                        }
                    },
                },
                "Invoicing": {
                    "type": "object",
                    "properties": {
                        "invoicing": {
                            "type": "object",
                            "required": ["period"],
                            "properties": {
                                "period": {"type": "string", "pattern": "^\\d{4}-\\d{2}$"},
                                "account_id": {"type": "string"},
                            },
                        }
                    },
                },
            },
        },
        "paths": {
            "/catalog": {"get": op("The price catalog", "catalog")},
            "/accounts": {
                "get": op("Accounts the caller holds a role on (all for admins)", "accounts"),
                "post": op("Create an account (admin)", "accounts", body="AccountCreate"),
            },
            "/accounts/{id}": {
                "parameters": [path_id],
                "get": op("Show an account", "accounts"),
                "patch": op("Update an account (owner; project_limit: admin)", "accounts"),
                "delete": op("Delete an account without projects or invoices (admin)", "accounts"),
            },
            "/accounts/{id}/projects": {
                "parameters": [path_id],
                "get": op("The account's projects", "accounts"),
                "post": op(
                    "Create a project in the account (owner), within its project limit",
                    "accounts",
                    body="ProjectCreate",
                ),
            },
            "/accounts/{id}/roles/{user}/{role}": {
                "parameters": [
                    path_id,
                    {"name": "user", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "role",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["owner", "billing", "viewer"]},
                    },
                ],
                "put": op("Grant an account role (owner)", "accounts"),
                "delete": op("Revoke an account role (owner)", "accounts"),
            },
            "/accounts/{id}/consumption": {
                "parameters": [path_id],
                "get": op(
                    "Usage and cost estimate; default: this month to date",
                    "consumption",
                    params=("start", "end", "project_id", "resource_type", "granularity"),
                ),
            },
            "/accounts/{id}/invoices": {
                "parameters": [path_id],
                "get": op("The account's invoices and credit notes (owner, billing)", "invoices"),
            },
            "/accounts/{id}/budget": {
                "parameters": [path_id],
                "put": op("Set or clear the monthly budget alert", "accounts", body="Budget"),
            },
            "/invoicing": {
                "post": op(
                    "Issue the invoices of a finished month (admin)", "invoices", body="Invoicing"
                ),
            },
            "/invoices/{id}": {"parameters": [path_id], "get": op("Show an invoice", "invoices")},
            "/invoices/{id}/download": {
                "parameters": [path_id],
                "get": op("Download an invoice", "invoices", params=("format",)),
            },
            "/invoices/{id}/credit-note": {
                "parameters": [path_id],
                "post": op("Cancel an invoice with a credit note (admin)", "invoices"),
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}
            },
        },
    }
