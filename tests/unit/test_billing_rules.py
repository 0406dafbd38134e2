"""The billing service built directly, without HTTP: account roles, the project limit
(also under concurrent creates), VAT verification, budgets, idempotent aggregation and
invoicing, credit notes and the corrected invoice after one.

Identity is the one fake, at the seam billing declares (`Directory`); the real identity
service behind it is proved by tests/api/test_billing.py.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from collections.abc import Callable, Iterator
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
    """Users and projects in memory; grants are remembered, not enforced. Safe for the
    threads of the concurrency tests."""

    def __init__(self, users: set[str]) -> None:
        self.users = users
        self.projects: dict[str, dict[str, Any]] = {}
        self.grants: list[tuple[str, str, str]] = []
        self.made = 0
        self.lock = threading.Lock()

    def get_user(self, ctx: RequestContext, user_id: str) -> dict[str, Any]:
        if user_id not in self.users:
            raise NotFound(f"Could not find user: {user_id}.")
        return {"id": user_id}

    def get_project(self, ctx: RequestContext, project_id: str) -> dict[str, Any]:
        if project_id not in self.projects:
            raise NotFound(f"Could not find project: {project_id}.")
        return self.projects[project_id]

    def create_project(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.made += 1
            project = {"id": f"p{self.made}", **data}
            self.projects[project["id"]] = project
        return project

    def delete_project(self, ctx: RequestContext, project_id: str) -> None:
        with self.lock:
            del self.projects[project_id]

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
        with self.lock:
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
def directory() -> FakeDirectory:
    return FakeDirectory({"alice", "bob", "carol"})


@pytest.fixture
def billing(
    schema: Path, tmp_path: Path, steps: Steps, directory: FakeDirectory
) -> Iterator[BillingService]:
    shutil.copy(schema, tmp_path / "billing.sqlite")
    engine = make_engine(f"sqlite:///{tmp_path / 'billing.sqlite'}")
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


def all_at_once(work: Callable[[int], Any], count: int = 20) -> list[Any]:
    """Run `work(i)` in `count` threads released together; each result or the error raised."""
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work(index)
        except Exception as exc:  # the test looks at every outcome
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_twenty_concurrent_creates_make_exactly_the_limit(
    billing: BillingService, directory: FakeDirectory
) -> None:
    acme = account(billing)
    outcomes = all_at_once(lambda i: billing.add_project(user("alice"), acme, {"name": f"n{i}"}))
    made = [o["id"] for o in outcomes if isinstance(o, dict)]
    assert len(made) == 2
    assert all(isinstance(o, Forbidden) for o in outcomes if not isinstance(o, dict)), outcomes
    assert sorted(billing.get_account(ADMIN, acme)["projects"]) == sorted(made)
    assert sorted(directory.projects) == sorted(made)  # the losers' projects were undone


def test_twenty_concurrent_attaches_make_exactly_the_limit(
    billing: BillingService, directory: FakeDirectory
) -> None:
    acme = account(billing)
    ids = [directory.create_project(ADMIN, {"name": f"n{i}"})["id"] for i in range(20)]
    outcomes = all_at_once(lambda i: billing.add_project(ADMIN, acme, {"project_id": ids[i]}))
    assert len([o for o in outcomes if isinstance(o, dict)]) == 2
    assert len(billing.get_account(ADMIN, acme)["projects"]) == 2
    assert len(directory.projects) == 20  # attaching refused deletes nothing it did not make


def test_a_vat_number_is_verified_by_the_operator_and_unverified_by_a_change(
    billing: BillingService,
) -> None:
    acme = account(billing)
    with pytest.raises(Forbidden, match="verifies"):
        billing.update_account(user("alice"), acme, {"vat_verified": True})
    with pytest.raises(BadRequest, match="no VAT number"):
        billing.update_account(ADMIN, acme, {"vat_verified": True})
    view, reset = billing.update_account(
        ADMIN, acme, {"vat_number": "DE1234", "vat_verified": True}
    )
    assert view["vat_verified"] is True and reset is False
    view, reset = billing.update_account(user("alice"), acme, {"country": "DE"})
    assert view["vat_verified"] is False and reset is True
    view, reset = billing.update_account(user("alice"), acme, {"vat_number": "DE5678"})
    assert reset is False  # nothing verified left to lose


def test_a_credited_month_is_issued_again_for_the_account_named(
    billing: BillingService, steps: Steps
) -> None:
    acme = account(billing)
    project = billing.add_project(user("alice"), acme, {"name": "web"})["id"]
    billing.gauge(project, "volume.gb", "vol", 730)
    steps.at = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    [invoice] = billing.issue_invoices("2026-10")
    note = billing.credit_note(ADMIN, invoice["id"])
    assert billing.issue_invoices("2026-10") == [invoice]
    [corrected] = billing.issue_invoices("2026-10", account_id=acme)
    assert [invoice["number"], note["number"], corrected["number"]] == [
        "SV-2026-000001",
        "SV-2026-000002",
        "SV-2026-000003",
    ]
    assert corrected["corrects"] == invoice["number"] and corrected["kind"] == "invoice"
    assert billing.issue_invoices("2026-10", account_id=acme) == [corrected]
    assert billing.credit_note(ADMIN, invoice["id"]) == note  # the original's note, still


def test_concurrent_issuers_of_a_credited_month_make_one_corrected_invoice(
    billing: BillingService, steps: Steps
) -> None:
    acme = account(billing)
    project = billing.add_project(user("alice"), acme, {"name": "web"})["id"]
    billing.gauge(project, "volume.gb", "vol", 730)
    steps.at = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    [invoice] = billing.issue_invoices("2026-10")
    billing.credit_note(ADMIN, invoice["id"])
    outcomes = all_at_once(lambda _: billing.issue_invoices("2026-10", account_id=acme), 8)
    assert {o[0]["number"] for o in outcomes} == {"SV-2026-000003"}, outcomes
    assert len(billing.list_invoices(ADMIN, acme)) == 3
