"""Schemathesis against billing's own OpenAPI description (billing/openapi.json), served
by the in-process platform and called through its ASGI app with a real admin token.

Every documented operation gets valid requests (with random ids and with a real account's
id) and invalid ones (schemathesis's negative mode): no answer is a 5xx, every status is
one the document lists, every body matches its schema and its content type. Bounded and
derandomized, so a failure reproduces; this is the only JSON API with an OpenAPI document
(the OpenStack APIs are held to their API references by tests/api/response_schemas.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from .attack_support import Stepped, stepped_cloud

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
EXAMPLES = settings(
    max_examples=30,
    deadline=timedelta(seconds=5),
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@pytest.fixture(scope="module", params=("sqlite",), autouse=True)
def database_backend() -> str:
    """The subject is the wire contract: SQLite only."""
    return "sqlite"


@pytest.fixture(scope="module")
def billing(database_backend: str) -> Iterator[tuple[Stepped, str]]:
    with stepped_cloud() as stepped:
        cloud = stepped.cloud
        owner = cloud.member()
        body = {"account": {"name": "Fuzz SAS", "country": "FR", "owner_user_id": owner.id}}
        made = cloud.client.post(
            "/billing/v1/accounts", json=body, headers={"X-Auth-Token": cloud.admin_token}
        )
        assert made.status_code == 201, made.text
        yield stepped, made.json()["account"]["id"]


def _operations(stepped: Stepped) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/billing/v1/openapi.json", stepped.cloud.platform.app)
    return [result.ok() for result in schema.get_all_operations()]


def test_every_billing_operation_holds_to_its_document(billing: tuple[Stepped, str]) -> None:
    stepped, account_id = billing
    token = {"X-Auth-Token": stepped.cloud.admin_token}
    operations = _operations(stepped)
    assert len(operations) >= 15
    strategies = []
    for operation in operations:
        strategies.append(operation.as_strategy())
        if "{id}" in operation.path and operation.path.startswith("/accounts"):
            strategies.append(operation.as_strategy(path_parameters={"id": account_id}))
        strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    seen: set[tuple[str, str, int]] = set()

    @EXAMPLES
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        if case.method.upper() == "DELETE" and account_id in case.formatted_path:
            return  # the account the other operations are given stays
        response = case.call(headers=token)
        seen.add((case.method.upper(), case.path, response.status_code))
        case.validate_response(response, checks=CHECKS)

    run()
    assert len({(method, path) for method, path, _ in seen}) >= len(operations) // 2
    assert {200, 400, 404} <= {status for _, _, status in seen}, seen
