"""Property: no JSON body, however odd, makes POST /v3/auth/tokens or POST /v3/users answer 500.

A random top-level value is refused at the first check and proves little, so
most bodies start valid (a real login, a real user) and are then mutated: a
value replaced by any JSON, a key dropped or added. Lockout is off here so
that wrong passwords do not lock the admin out half-way through.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import running_platform
from .support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient

ODD_STRINGS = st.sampled_from(
    ["", "\x00", "a" * 300, "default", "admin", "unscoped", "\u202e", "😀"]
)
LONE_SURROGATES = st.sampled_from(["\ud800", "\udfff x", "ok\udbff"])
TEXT = st.one_of(st.text(max_size=30), ODD_STRINGS)  # st.text never draws a lone surrogate
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=10,
)


def _slots(node: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) in a JSON tree, for mutations to pick from."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key
            yield from _slots(value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node, index
            yield from _slots(value)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    body = draw(valid)
    if draw(st.integers(min_value=0, max_value=19)) == 0:
        return draw(JSON)  # now and then, not even the right top level
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        slots = list(_slots(body))
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace"] * 4 + ["drop"] * 2 + ["add"] * 2 + ["surrogate"]))
        if action == "replace":
            container[key] = draw(JSON)
        elif action == "surrogate":  # valid JSON text that is not valid Unicode
            container[key] = draw(LONE_SURROGATES)
        elif action == "drop":
            del container[key]
        elif isinstance(container, dict):
            container[draw(TEXT)] = draw(JSON)
        else:
            container.append(draw(JSON))
    return body


def domain_ref() -> st.SearchStrategy[Any]:
    return st.sampled_from([{"id": "default"}, {"name": "Default"}, {"id": "nope"}])


def scopes(project_id: str) -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [
            None,
            "unscoped",
            {"project": {"id": project_id}},
            {"project": {"name": "admin", "domain": {"id": "default"}}},
            {"project": {"name": "admin", "domain": {"name": "Default"}}},
            {"domain": {"id": "default"}},
            {"system": {"all": True}},
        ]
    )


def auth_bodies(cloud: Cloud, app_cred: dict[str, str]) -> st.SearchStrategy[Any]:
    password = st.builds(
        lambda user, pw: {"methods": ["password"], "password": {"user": {**user, "password": pw}}},
        st.one_of(
            st.builds(lambda d: {"name": "admin", "domain": d}, domain_ref()),
            st.just({"id": cloud.admin_id}),
        ),
        st.sampled_from([ADMIN_PASSWORD, "wrong-password"]),
    )
    token = st.just({"methods": ["token"], "token": {"id": cloud.admin_token}})
    application = st.sampled_from(
        [
            {
                "methods": ["application_credential"],
                "application_credential": {"id": app_cred["id"], "secret": app_cred["secret"]},
            },
            {
                "methods": ["application_credential"],
                "application_credential": {
                    "name": app_cred["name"],
                    "secret": app_cred["secret"],
                    "user": {"name": "admin", "domain": {"id": "default"}},
                },
            },
        ]
    )

    def body(identity: dict[str, Any], scope: Any) -> dict[str, Any]:
        auth: dict[str, Any] = {"identity": identity}
        if scope is not None:
            auth["scope"] = scope
        return {"auth": auth}

    identity = st.one_of(password, token, application)
    return mutated(st.builds(body, identity, scopes(cloud.admin_project_id)))


HEX_ID = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
USER_BODIES = mutated(
    st.builds(
        lambda fields, extra: {"user": {**extra, **fields}},
        st.fixed_dictionaries(
            {"name": st.text(min_size=1, max_size=40)},
            optional={
                "password": st.text(min_size=8, max_size=80),
                "enabled": st.booleans(),
                "domain_id": st.sampled_from(["default", "0" * 32]),
                "default_project_id": HEX_ID,
                "description": st.text(max_size=40),
                "email": st.emails(),
            },
        ),
        st.dictionaries(st.text(max_size=10), JSON, max_size=2),
    )
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def fuzz_cloud(database_backend: str) -> Iterator[tuple[Cloud, dict[str, str]]]:
    with (
        running_platform(SteppingClock(), lockout_failure_attempts=0) as built,
        TestClient(built.app, base_url="http://testserver") as client,
    ):
        cloud = Cloud(client, built)
        body = {"application_credential": {"name": "fuzz", "secret": "fuzz-app-secret"}}
        created = cloud.post(f"/v3/users/{cloud.admin_id}/application_credentials", body)
        assert created.status_code == 201, created.text
        yield cloud, created.json()["application_credential"]


def post(cloud: Cloud, path: str, body: Any, token: str | None = None) -> Any:
    # json.dumps escapes lone surrogates (`\ud800`), as a hostile client would send them.
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    return cloud.client.post("/identity" + path, content=json.dumps(body).encode(), headers=headers)


def assert_clean(response: Any) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"}
        assert body["error"]["code"] == response.status_code and body["error"]["message"]


@given(data=st.data())
@FUZZ
def test_random_auth_bodies_never_500(
    fuzz_cloud: tuple[Cloud, dict[str, str]], data: st.DataObject
) -> None:
    cloud, app_cred = fuzz_cloud
    body = data.draw(auth_bodies(cloud, app_cred))
    response = post(cloud, "/v3/auth/tokens", body)
    assert_clean(response)
    if response.status_code == 201:
        token = response.headers["X-Subject-Token"]
        check = cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": token})
        assert check.status_code == 200


@given(body=USER_BODIES)
@FUZZ
def test_random_user_bodies_never_500(fuzz_cloud: tuple[Cloud, dict[str, str]], body: Any) -> None:
    cloud, _ = fuzz_cloud
    response = post(cloud, "/v3/users", body, token=cloud.admin_token)
    assert_clean(response)
    if response.status_code == 201:
        user = response.json()["user"]
        assert_clean(cloud.get(f"/v3/users/{user['id']}"))
        assert_clean(cloud.get("/v3/users", params={"name": user["name"]}))


@given(raw=st.binary(max_size=200))
@FUZZ
def test_random_bytes_never_500(fuzz_cloud: tuple[Cloud, dict[str, str]], raw: bytes) -> None:
    cloud, _ = fuzz_cloud
    headers = {"Content-Type": "application/json", "X-Auth-Token": cloud.admin_token}
    for path in ("/identity/v3/auth/tokens", "/identity/v3/users"):
        assert_clean(cloud.client.post(path, content=raw, headers=headers))
