"""The billing API's routes against the policy table: each names its actions, and the
table's billing section holds exactly the actions the routes name (no rule is dead)."""

from __future__ import annotations

from souverain.billing.api import BillingApi
from souverain.billing.service import BillingService
from souverain.common.clock import Clock
from souverain.common.policy import BILLING_RULES, PUBLIC_RULES, Rule
from souverain.db.engine import Database, make_engine
from souverain.openstack.auth import ValidatedToken
from souverain.openstack.routing import unnamed_routes


class NoTokens:
    def validate(self, token: str) -> ValidatedToken | None:
        return None


def _api() -> BillingApi:
    service = BillingService(Database(make_engine("sqlite://")), Clock())
    return BillingApi(service, NoTokens(), "")


def test_every_billing_route_names_its_actions() -> None:
    assert unnamed_routes(list(_api().routes())) == []


def test_the_billing_rules_are_the_actions_its_routes_name() -> None:
    named = {action for route in _api().routes() for action in route.actions.values()}
    assert named - set(BILLING_RULES) == {"billing:version:show"}
    assert PUBLIC_RULES["billing:version:show"] is Rule.PUBLIC
    assert set(BILLING_RULES) <= named


def test_only_the_version_documents_and_the_openapi_document_are_public() -> None:
    public = {route.path for route in _api().routes() if route.public}
    assert public == {"/", "/v1", "/v1/openapi.json"}
