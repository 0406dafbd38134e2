"""The OpenStack edge on its own: parsers, microversions, and the path of a request
through a route that names its policy action (a fake token validator, a tiny app)."""

from __future__ import annotations

import json

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Router
from starlette.testclient import TestClient

from souverain.common import policy
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.openstack.auth import TokenValidator
from souverain.openstack.body import decode_object, member
from souverain.openstack.faults import ErrorLayer, render_error
from souverain.openstack.microversion import Microversions, microversion_of
from souverain.openstack.query import parse_bool, parse_flag, parse_int, parse_limit
from souverain.openstack.routing import Edge, EdgeRoute, unnamed_routes


class Token:
    def __init__(self, roles: frozenset[str]) -> None:
        self.roles = roles

    def context(self, request_id: str = "") -> RequestContext:
        return RequestContext(
            user_id="u1",
            user_domain_id="default",
            roles=self.roles,
            project_id="p1",
            request_id=request_id,
        )

    def permits(self, root_path: str, path: str, method: str) -> bool:
        return True


class Tokens:
    """Three tokens: a reader's, a member's and an admin's."""

    def validate(self, token: str) -> Token | None:
        roles = {"r": {"reader"}, "m": {"member"}, "a": {"admin"}}.get(token)
        return Token(frozenset(roles)) if roles is not None else None


def _tokens() -> TokenValidator:
    return Tokens()  # mypy checks here that the fake is a TokenValidator


VERSIONS = Microversions(
    ("compute",), (2, 1), (2, 90), legacy_header="x-openstack-nova-api-version"
)


def _app(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setitem(policy.RULES, "test:thing:list", policy.Rule.READER)
    monkeypatch.setitem(policy.RULES, "test:thing:create", policy.Rule.MEMBER)
    monkeypatch.setitem(policy.RULES, "test:thing:purge", policy.Rule.ADMIN)
    monkeypatch.setitem(policy.RULES, "test:version:show", policy.Rule.PUBLIC)
    edge = Edge(_tokens(), versions=VERSIONS)
    calls: list[str] = []

    async def things(request: Request, ctx: RequestContext) -> Response:
        calls.append(request.method)
        version = microversion_of(request)
        return JSONResponse({"user": ctx.user_id, "version": list(version)})

    async def versions(request: Request) -> Response:
        return JSONResponse({"versions": []})

    routes = [
        edge.route(
            "/things",
            things,
            {"GET": "test:thing:list", "POST": "test:thing:create", "DELETE": "test:thing:purge"},
        ),
        edge.public("/", versions, {"GET": "test:version:show"}),
    ]
    app = ErrorLayer(Router(routes=routes), render_error)
    client = TestClient(app)
    client.calls = calls  # type: ignore[attr-defined]
    return client


def test_a_route_runs_only_for_a_valid_token_whose_roles_allow_the_action(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = _app(monkeypatch)
    assert client.get("/things").status_code == 401
    assert client.get("/things", headers={"X-Auth-Token": "nope"}).status_code == 401
    assert client.get("/things", headers={"X-Auth-Token": "r"}).status_code == 200
    refused = client.post("/things", headers={"X-Auth-Token": "r"})
    assert refused.status_code == 403
    assert "test:thing:create" in refused.json()["error"]["message"]
    assert client.post("/things", headers={"X-Auth-Token": "m"}).status_code == 200
    assert client.delete("/things", headers={"X-Auth-Token": "m"}).status_code == 403
    assert client.delete("/things", headers={"X-Auth-Token": "a"}).status_code == 200
    # the handler ran only for the three allowed calls
    assert client.calls == ["GET", "POST", "DELETE"]  # type: ignore[attr-defined]


def test_head_takes_the_action_of_get_and_public_routes_need_no_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = _app(monkeypatch)
    assert client.head("/things", headers={"X-Auth-Token": "r"}).status_code == 200
    assert client.get("/").status_code == 200


def test_a_head_runs_the_get_branch_of_a_handler_never_its_write_branch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(policy.RULES, "test:thing:show", policy.Rule.READER)
    monkeypatch.setitem(policy.RULES, "test:thing:delete", policy.Rule.READER)
    deleted: list[str] = []

    async def thing(request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            return JSONResponse({"thing": "here"})
        deleted.append(request.method)  # the branch a HEAD used to fall into
        return Response(status_code=204)

    edge = Edge(_tokens())
    route = edge.route("/thing", thing, {"GET": "test:thing:show", "DELETE": "test:thing:delete"})
    client = TestClient(ErrorLayer(Router(routes=[route]), render_error))
    answer = client.head("/thing", headers={"X-Auth-Token": "r"})
    assert answer.status_code == 200
    assert deleted == []
    assert client.delete("/thing", headers={"X-Auth-Token": "r"}).status_code == 204
    assert deleted == ["DELETE"]


def test_the_microversion_is_negotiated_before_the_handler_and_named_on_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = _app(monkeypatch)
    plain = client.get("/things", headers={"X-Auth-Token": "r"})
    assert plain.json()["version"] == [2, 1]
    assert plain.headers["OpenStack-API-Version"] == "compute 2.1"
    assert plain.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    latest = client.get(
        "/things", headers={"X-Auth-Token": "r", "OpenStack-API-Version": "compute latest"}
    )
    assert latest.json()["version"] == [2, 90]
    legacy = client.get(
        "/things", headers={"X-Auth-Token": "r", "X-OpenStack-Nova-API-Version": "2.47"}
    )
    assert legacy.json()["version"] == [2, 47]
    # a fault made after negotiation still says which version it was made at
    refused = client.post(
        "/things", headers={"X-Auth-Token": "r", "OpenStack-API-Version": "compute 2.60"}
    )
    assert refused.status_code == 403
    assert refused.headers["OpenStack-API-Version"] == "compute 2.60"
    too_high = client.get(
        "/things", headers={"X-Auth-Token": "r", "OpenStack-API-Version": "compute 2.91"}
    )
    assert too_high.status_code == 406
    malformed = client.get(
        "/things", headers={"X-Auth-Token": "r", "OpenStack-API-Version": "compute two"}
    )
    assert malformed.status_code == 400


def test_another_services_version_header_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _app(monkeypatch)
    answer = client.get(
        "/things",
        headers={"X-Auth-Token": "r", "OpenStack-API-Version": "volume 3.60, compute 2.30"},
    )
    assert answer.json()["version"] == [2, 30]


def test_a_route_naming_an_unknown_or_misplaced_action_is_refused_when_built() -> None:
    edge = Edge(_tokens())

    async def handler(request: Request, ctx: RequestContext) -> Response:
        return Response()

    async def public(request: Request) -> Response:
        return Response()

    with pytest.raises(ValueError, match="not in the policy table"):
        edge.route("/x", handler, {"GET": "nobody:knows:this"})
    with pytest.raises(ValueError, match="names no policy action"):
        edge.route("/x", handler, {})
    with pytest.raises(ValueError, match="not public"):
        edge.public("/x", public, {"GET": "identity:list_users"})
    with pytest.raises(ValueError, match="not authenticated"):
        edge.route("/x", handler, {"GET": "compute:version:show"})
    route = edge.route("/x", handler, {"GET": "identity:list_users"})
    assert isinstance(route, EdgeRoute)
    assert unnamed_routes([route]) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(raw, True) for raw in ("true", "True", "1", "yes", "on", "t")],
        *[(raw, False) for raw in ("false", "0", "no", "OFF", "f")],
    ],
)
def test_parse_bool(raw: str, expected: bool) -> None:
    assert parse_bool("flag", raw) is expected


@pytest.mark.parametrize("raw", ["", "maybe", "2", "truee", "x" * 5000])
def test_parse_bool_refuses_and_names_the_parameter(raw: str) -> None:
    with pytest.raises(BadRequest, match="'flag'") as caught:
        parse_bool("flag", raw)
    assert len(caught.value.message) < 120  # a hostile value is never echoed whole


def test_parse_int_bounds() -> None:
    assert parse_int("n", "7", minimum=0, maximum=10) == 7
    for raw in ("-1", "11", "seven", "1.5", ""):
        with pytest.raises(BadRequest):
            parse_int("n", raw, minimum=0, maximum=10)


def test_parse_flag_is_keystones_lenient_reading() -> None:
    assert parse_flag("effective", "") is True
    assert parse_flag("effective", "anything") is True
    assert parse_flag("effective", "0") is False
    assert parse_flag("effective", "false") is False
    assert parse_flag("effective", None) is False


def test_parse_limit_caps_and_refuses() -> None:
    assert parse_limit(None, 25) == 25
    assert parse_limit("5000") == 1000
    with pytest.raises(BadRequest):
        parse_limit("0")


@pytest.mark.parametrize(
    "raw",
    [
        b"[1, 2]",
        b"{",
        b'{"a": "\\ud800"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_bodies_that_are_not_one_clean_json_object_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_object(raw)


def test_member_names_the_missing_key() -> None:
    assert member({"server": {"name": "a"}}, "server") == {"name": "a"}
    for data in ({}, {"server": []}, [], "x"):
        with pytest.raises(BadRequest, match="Expecting to find server"):
            member(data, "server")


def test_the_plain_error_body_is_keystones() -> None:
    body, content_type = render_error("/x", 404, "Not Found", "gone")
    assert content_type == "application/json"
    assert json.loads(body) == {"error": {"code": 404, "title": "Not Found", "message": "gone"}}
