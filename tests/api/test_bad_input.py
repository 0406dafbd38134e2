"""Bad input gets a clear 4xx in Keystone's error format and leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .support import MAX_BODY_BYTES, Cloud, TestClient, assert_keystone_error

CREATES = [
    ("/v3/domains", "domain"),
    ("/v3/projects", "project"),
    ("/v3/users", "user"),
    ("/v3/groups", "group"),
    ("/v3/roles", "role"),
    ("/v3/regions", "region"),
    ("/v3/services", "service"),
    ("/v3/endpoints", "endpoint"),
    ("/v3/credentials", "credential"),
]

MALFORMED = [
    b"{",
    b"",
    b"null",
    b"[]",
    b'"text"',
    b"42",
    b"\xff\xfe",
    b'{"a": 1} trailing',
    b"{'a': 1}",
    b'{"a": NaN}',
    b"[" * 5000,
]


def raw_post(
    cloud: Cloud, path: str, content: bytes, content_type: str = "application/json"
) -> Any:
    headers = {"X-Auth-Token": cloud.admin_token, "Content-Type": content_type}
    return cloud.client.post("/identity" + path, content=content, headers=headers)


@pytest.mark.parametrize(("path", "member"), [*CREATES, ("/v3/auth/tokens", "auth")])
def test_malformed_json_is_400(shared_cloud: Cloud, path: str, member: str) -> None:
    for content in MALFORMED:
        assert_keystone_error(raw_post(shared_cloud, path, content), 400)


@pytest.mark.parametrize(("path", "member"), [*CREATES, ("/v3/auth/tokens", "auth")])
def test_missing_member_or_wrong_member_type_is_400(
    shared_cloud: Cloud, path: str, member: str
) -> None:
    error = assert_keystone_error(shared_cloud.post(path, {}), 400)
    assert member in error["message"]
    assert_keystone_error(shared_cloud.post(path, {member: "a string"}), 400)
    assert_keystone_error(shared_cloud.post(path, {member: [1, 2]}), 400)


@pytest.mark.parametrize(("path", "member"), CREATES)
def test_missing_required_fields_are_400_naming_the_field(
    shared_cloud: Cloud, path: str, member: str
) -> None:
    response = shared_cloud.post(path, {member: {}})
    if member == "region":  # every region field is optional
        assert response.status_code == 201
        return
    error = assert_keystone_error(response, 400)
    assert f"'{member}." in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v3/projects", {"project": {"name": 5}}, "project.name"),
        ("/v3/projects", {"project": {"name": "p", "enabled": "yes"}}, "project.enabled"),
        ("/v3/projects", {"project": {"name": "p", "tags": "a"}}, "project.tags"),
        ("/v3/projects", {"project": {"name": ""}}, "project.name"),
        ("/v3/projects", {"project": {"name": "x" * 256}}, "project.name"),
        ("/v3/users", {"user": {"name": ["u"]}}, "user.name"),
        ("/v3/users", {"user": {"name": "u", "password": 12345678}}, "user.password"),
        ("/v3/users", {"user": {"name": "u", "enabled": 1}}, "user.enabled"),
        ("/v3/domains", {"domain": {"name": None}}, "domain.name"),
        ("/v3/groups", {"group": {"name": {"x": 1}}}, "group.name"),
        ("/v3/roles", {"role": {"name": True}}, "role.name"),
        ("/v3/services", {"service": {"type": 1}}, "service.type"),
        ("/v3/regions", {"region": {"id": 7}}, "region.id"),
    ],
)
def test_wrong_field_types_are_400_naming_the_field(
    shared_cloud: Cloud, path: str, body: dict[str, object], field: str
) -> None:
    error = assert_keystone_error(shared_cloud.post(path, body), 400)
    assert field in error["message"]


@pytest.mark.parametrize(
    ("collection", "member", "fields"),
    [
        ("projects", "project", {"name": None}),
        ("projects", "project", {"enabled": None}),
        ("domains", "domain", {"name": None}),
        ("domains", "domain", {"enabled": None}),
        ("users", "user", {"name": None}),
        ("users", "user", {"enabled": None}),
        ("groups", "group", {"name": None}),
        ("roles", "role", {"name": None}),
        ("services", "service", {"type": None}),
        ("services", "service", {"enabled": None}),
        ("endpoints", "endpoint", {"url": None}),
        ("endpoints", "endpoint", {"interface": None}),
        ("endpoints", "endpoint", {"enabled": None}),
    ],
)
def test_null_for_a_required_field_on_update_is_400(
    shared_cloud: Cloud, collection: str, member: str, fields: dict[str, object]
) -> None:
    cloud = shared_cloud
    makers: dict[str, Callable[[], dict[str, Any]]] = {
        "projects": lambda: cloud.project(),
        "domains": lambda: cloud.create("domains", "domain", name=cloud.unique("d")),
        "users": lambda: cloud.user(),
        "groups": lambda: cloud.create("groups", "group", name=cloud.unique("g")),
        "roles": lambda: cloud.create("roles", "role", name=cloud.unique("r")),
        "services": lambda: cloud.create("services", "service", type=cloud.unique("t")),
        "endpoints": lambda: cloud.create(
            "endpoints",
            "endpoint",
            service_id=cloud.create("services", "service", type=cloud.unique("t"))["id"],
            interface="public",
            url="http://x.test",
        ),
    }
    made = makers[collection]()
    before = cloud.get(f"/v3/{collection}/{made['id']}").json()[member]
    response = cloud.patch(f"/v3/{collection}/{made['id']}", {member: fields})
    assert_keystone_error(response, 400)
    after = cloud.get(f"/v3/{collection}/{made['id']}").json()[member]
    assert after == before


def test_null_description_clears_it(cloud: Cloud) -> None:
    project = cloud.project(description="something")
    patched = cloud.patch(f"/v3/projects/{project['id']}", {"project": {"description": None}})
    assert patched.status_code == 200
    assert patched.json()["project"]["description"] == ""


def test_non_json_content_type_is_415(shared_cloud: Cloud) -> None:
    response = raw_post(shared_cloud, "/v3/projects", b'{"project": {"name": "p"}}', "text/plain")
    assert_keystone_error(response, 415)


def test_declared_huge_body_is_413_in_keystone_format(cloud: Cloud) -> None:
    big = b'{"project": {"name": "p", "description": "' + b"x" * MAX_BODY_BYTES + b'"}}'
    for path in ("/v3/projects", "/v3/auth/tokens", "/v3/users"):
        response = raw_post(cloud, path, big)
        error = assert_keystone_error(response, 413)
        assert str(MAX_BODY_BYTES) in error["message"]
    assert [p["name"] for p in cloud.get("/v3/projects").json()["projects"]] == ["admin"]


def test_chunked_huge_body_is_413_in_keystone_format(cloud: Cloud) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"project": {"name": "p", "description": "'
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"x" * 4096
        yield b'"}}'

    headers = {"X-Auth-Token": cloud.admin_token, "Content-Type": "application/json"}
    response = cloud.client.post("/identity/v3/projects", content=chunks(), headers=headers)
    assert_keystone_error(response, 413)
    assert [p["name"] for p in cloud.get("/v3/projects").json()["projects"]] == ["admin"]


def test_request_id_is_not_repeated_on_a_413(cloud: Cloud) -> None:
    big = b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}"
    response = raw_post(cloud, "/v3/projects", big)
    assert response.status_code == 413
    assert len(response.headers.get_list("x-openstack-request-id")) == 1


@pytest.mark.parametrize(
    "content",
    [
        b'{"user": {"name": "nan", "note": NaN}}',
        b'{"user": {"name": "inf", "note": Infinity}}',
        b'{"user": {"name": "big", "note": 1e999}}',
        b'{"user": {"name": "\\ud800"}}',
        b'{"user": {"name": "ok", "note": "\\udfff"}}',
        b'{"user": {"name": "ok", "password": "\\ud800\\ud800\\ud800\\ud800"}}',
        b'{"user": {"name": "nul", "password": "abc\\u0000defgh"}}',
        b'{"user": {"name": "deep", "note": ' + b"[" * 30_000 + b"]" * 30_000 + b"}}",
    ],
)
def test_json_that_python_accepts_but_the_wire_forbids_is_400(cloud: Cloud, content: bytes) -> None:
    response = raw_post(cloud, "/v3/users", content)
    assert response.status_code in (201, 400), response.text
    if response.status_code == 400:
        assert_keystone_error(response, 400)
    else:
        user_id = response.json()["user"]["id"]
        assert cloud.get(f"/v3/users/{user_id}").status_code == 200


@pytest.mark.parametrize(
    "password",
    ["\\ud800-long-password", "abc\\u0000defghijk"],
)
def test_odd_passwords_at_login_are_a_clean_4xx(cloud: Cloud, password: str) -> None:
    body = (
        '{"auth": {"identity": {"methods": ["password"], "password": {"user": '
        '{"name": "admin", "domain": {"id": "default"}, "password": "' + password + '"}}}}}'
    ).encode()
    response = raw_post(cloud, "/v3/auth/tokens", body)
    assert response.status_code in (400, 401), response.text
    assert_keystone_error(response, response.status_code)


@pytest.mark.parametrize(
    "auth",
    [
        {"identity": {}},
        {"identity": "password"},
        {"identity": {"methods": []}},
        {"identity": {"methods": "password"}},
        {"identity": {"methods": [1]}},
        {"identity": {"methods": ["password"]}},
        {"identity": {"methods": ["password"], "password": {}}},
        {"identity": {"methods": ["password"], "password": {"user": "admin"}}},
        {"identity": {"methods": ["password"], "password": {"user": {"name": "admin"}}}},
        {"identity": {"methods": ["password"], "password": {"user": {"password": 5}}}},
        {"identity": {"methods": ["token"], "token": {"id": 5}}},
        {"identity": {"methods": ["token"], "token": "abc"}},
        {"identity": {"methods": ["application_credential"], "application_credential": {}}},
    ],
)
def test_malformed_auth_bodies_are_400(shared_cloud: Cloud, auth: object) -> None:
    assert_keystone_error(shared_cloud.post("/v3/auth/tokens", {"auth": auth}), 400)


@pytest.mark.parametrize(
    "scope",
    [
        {"project": {}},
        {"project": "admin"},
        {"project": {"name": "admin"}},
        {"domain": {}},
        {"domain": "default"},
        {"system": True},
        {"system": {"all": "yes"}},
        {"project": {"id": "x"}, "domain": {"id": "default"}},
        {"galaxy": {}},
        ["project"],
        42,
    ],
)
def test_malformed_scopes_are_400(shared_cloud: Cloud, scope: object) -> None:
    from .support import ADMIN_PASSWORD, password_auth

    body = password_auth(ADMIN_PASSWORD, name="admin", scope=scope)
    assert_keystone_error(shared_cloud.issue(body), 400)


def test_unexpected_failure_is_a_keystone_500_without_internals(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection at the service boundary: the client sees Keystone's shape, not a trace."""

    def broken() -> None:
        raise RuntimeError("internal-detail-that-must-not-leak")

    monkeypatch.setattr(cloud.platform.identity, "catalog", broken)
    with TestClient(cloud.platform.app, raise_server_exceptions=False) as client:
        headers = {"X-Auth-Token": cloud.admin_token}
        response = client.get("/identity/v3/auth/catalog", headers=headers)
    error = assert_keystone_error(response, 500)
    assert "internal-detail" not in response.text
    assert error["title"] == "Internal Server Error"


NUL_CREATES = [
    ("/network/v2.0/networks", {"network": {"name": "a\u0000b"}}, "NeutronError"),
    ("/volume/v3/volumes", {"volume": {"size": 1, "name": "a\u0000b"}}, "badRequest"),
    ("/image/v2/images", {"name": "a\u0000b"}, "message"),
    ("/identity/v3/projects", {"project": {"name": "a\u0000b"}}, "error"),
]


@pytest.mark.parametrize(
    ("path", "body", "fault"), NUL_CREATES, ids=["neutron", "cinder", "glance", "keystone"]
)
def test_a_nul_character_is_refused_the_same_on_every_backend(
    cloud: Cloud, path: str, body: dict[str, Any], fault: str
) -> None:
    """No column may hold a NUL (PostgreSQL refuses one): a body with one is a 400 in the
    API's own format, a query with one a 400, a path with one names nothing (404)."""
    headers = {"X-Auth-Token": cloud.admin_token}
    listing = path if "image" not in path else path + "?name=ok"
    before = cloud.client.get(listing, headers=headers).json()
    refused = cloud.client.post(path, json=body, headers=headers)
    assert refused.status_code == 400, refused.text
    assert fault in refused.json(), refused.json()
    assert "NUL" in refused.text
    assert cloud.client.get(listing, headers=headers).json() == before  # nothing was made
    query = cloud.client.get(path + "?name=a%00b", headers=headers)
    assert query.status_code == 400 and "NUL" in query.text, query.text
    missing = cloud.client.get(path + "/a%00b", headers=headers)
    assert missing.status_code == 404, missing.text
