"""The billing service built directly, without HTTP: account roles, the project limit,
budgets, idempotent aggregation and invoicing, credit notes.

Identity is the one fake, at the seam billing declares (`Directory`); the real identity
service behind it is proved by tests/api/test_billing.py.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from souverain.billing.service import BillingService
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound
from souverain.db import migrate
from souverain.db.engine import Database, make_engine

START = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)
ADMIN = RequestContext(user_id="admin", user_domain_id="default", roles=frozenset({"admin"}))


def user(user_id: str) -> RequestContext:
    return RequestContext(user_id=user_id, user_domain_id="default", roles=frozenset({"member"}))


class FakeDirectory:
    """Users and projects in memory; grants are remembered, not enforced."""

    def __init__(self, users: set[str]) -> None:
        self.users = users
        self.projects: dict[str, dict[str, Any]] = {}
        self.grants: list[tuple[str, str, str]] = []

    def get_user(self, ctx: RequestContext, user_id: str) -> dict[str, Any]:
        if user_id not in self.users:
            raise NotFound(f"Could not find user: {user_id}.")
        return {"id": user_id}

    def get_project(self, ctx: RequestContext, project_id: str) -> dict[str, Any]:
        if project_id not in self.projects:
            raise NotFound(f"Could not find project: {project_id}.")
        return self.projects[project_id]

    def create_project(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        project = {"id": f"p{len(self.projects) + 1}", **data}
        self.projects[project["id"]] = project
        return project

    def list_roles(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"id": "r-member", "name": "member"}]

    def create_grant(
        self,
        ctx: RequestContext,
        actor_type: str,
        actor_id: str,
        target_type: str,
        target_id: str,
        role_id: str,
    ) -> None:
        self.grants.append((actor_id, target_id, role_id))


class Steps:
    def __init__(self) -> None:
        self.at = START

    def now(self) -> dt.datetime:
        return self.at


@pytest.fixture
def steps() -> Steps:
    return Steps()


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database, made once: each test works on a copy of it."""
    path = tmp_path_factory.mktemp("billing") / "schema.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def billing(schema: Path, tmp_path: Path, steps: Steps) -> Iterator[BillingService]:
    shutil.copy(schema, tmp_path / "billing.sqlite")
    engine = make_engine(f"sqlite:///{tmp_path / 'billing.sqlite'}")
    directory = FakeDirectory({"alice", "bob", "carol"})
    yield BillingService(Database(engine), Clock(steps.now), directory, project_limit=2)
    engine.dispose()


def account(billing: BillingService, owner: str = "alice") -> str:
    view = billing.create_account(ADMIN, {"name": "Acme", "country": "FR", "owner_user_id": owner})
    return str(view["id"])


def test_only_the_operator_creates_accounts(billing: BillingService) -> None:
    with pytest.raises(Forbidden):
        billing.create_account(user("alice"), {"name": "Acme", "country": "FR"})
    with pytest.raises(BadRequest, match="country"):
        billing.create_account(ADMIN, {"name": "Acme", "country": "XX"})


def test_account_roles_decide_what_a_user_sees(billing: BillingService) -> None:
    acme = account(billing)
    billing.grant(user("alice"), acme, "bob", "viewer")
    assert billing.get_account(user("bob"), acme)["roles"] == [
        {"user_id": "alice", "role": "owner"},
        {"user_id": "bob", "role": "viewer"},
    ]
    with pytest.raises(Forbidden, match="needs one of: billing, owner"):
        billing.list_invoices(user("bob"), acme)
    with pytest.raises(NotFound):  # no role at all: the account does not exist for carol
        billing.get_account(user("carol"), acme)
    assert billing.list_accounts(user("carol")) == []
    assert [a["id"] for a in billing.list_accounts(user("bob"))] == [acme]


def test_an_account_keeps_one_owner_unless_the_operator_says_otherwise(
    billing: BillingService,
) -> None:
    acme = account(billing)
    with pytest.raises(Conflict, match="at least one owner"):
        billing.revoke(user("alice"), acme, "alice", "owner")
    billing.revoke(ADMIN, acme, "alice", "owner")
    assert billing.get_account(ADMIN, acme)["roles"] == []


def test_projects_stay_within_the_account_limit(billing: BillingService) -> None:
    acme = account(billing)
    first = billing.add_project(user("alice"), acme, {"name": "web"})
    billing.add_project(user("alice"), acme, {"name": "db"})
    with pytest.raises(Forbidden, match="Quota exceeded for projects: the account has 2 of 2"):
        billing.add_project(user("alice"), acme, {"name": "more"})
    assert billing.account_of(first["id"]) == acme
    assert billing.get_account(ADMIN, acme)["projects"] == ["p1", "p2"]


def test_aggregation_is_idempotent_and_invoices_are_issued_once(
    billing: BillingService, steps: Steps
) -> None:
    acme = account(billing)
    project = billing.add_project(user("alice"), acme, {"name": "web"})["id"]
    billing.gauge(project, "instance", "srv", 1, flavor="m1.medium")
    steps.at += dt.timedelta(hours=10)
    billing.gauge(project, "instance", "srv", 0, flavor="m1.medium")
    steps.at = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    assert billing.aggregate() > 0
    assert billing.aggregate() == 0
    first = billing.issue_invoices("2026-10")
    again = billing.issue_invoices("2026-10")
    assert [i["number"] for i in again] == [i["number"] for i in first] == ["SV-2026-000001"]
    assert first[0]["subtotal"] == "0.40"  # 10 hours of m1.medium at 0.04
    with pytest.raises(Conflict, match="not over yet"):
        billing.issue_invoices("2026-11")


def test_a_credit_note_negates_the_invoice_once(billing: BillingService, steps: Steps) -> None:
    acme = account(billing)
    project = billing.add_project(user("alice"), acme, {"name": "web"})["id"]
    billing.gauge(project, "volume.gb", "vol", 730)
    steps.at = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    [invoice] = billing.issue_invoices("2026-10")
    with pytest.raises(Forbidden):
        billing.credit_note(user("alice"), invoice["id"])
    note = billing.credit_note(ADMIN, invoice["id"])
    assert note["kind"] == "credit_note"
    assert Decimal(note["total"]) == -Decimal(invoice["total"])
    assert billing.credit_note(ADMIN, invoice["id"])["number"] == note["number"]


def test_a_budget_alert_is_raised_once_a_month(billing: BillingService, steps: Steps) -> None:
    acme = account(billing)
    project = billing.add_project(user("alice"), acme, {"name": "web"})["id"]
    heard: list[tuple[str, Decimal]] = []
    billing.budget_listeners.append(lambda view, estimate: heard.append((view["id"], estimate)))
    with pytest.raises(BadRequest, match="positive amount"):
        billing.set_budget(user("alice"), acme, "-1")
    assert billing.set_budget(user("alice"), acme, "1")["budget"] == "1.00"
    billing.gauge(project, "instance", "big", 1, flavor="m1.medium")
    steps.at += dt.timedelta(hours=10)
    assert billing.check_budgets() == []  # 0.40 of 1.00
    steps.at += dt.timedelta(hours=20)
    assert billing.check_budgets() == [(acme, Decimal("1.20"))]
    assert billing.check_budgets() == []
    assert heard == [(acme, Decimal("1.20"))]
