"""The billing API in-process, on a clock the test sets: accounts and their roles, the
meter, hourly aggregation (idempotent), consumption, invoices (numbered once, immutable,
credit notes and the corrected invoice after one, JSON/CSV/PDF), VAT (reverse charge
only for a number the operator verified), budgets with their audit line, the project
limit under concurrent creates, tenancy, hostile input.

Usage here is recorded on the billing service's meter directly, with amounts a hand
computation checks to the cent; the services' own hooks are proved in test_metering.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from souverain import server
from souverain.billing.models import HourlyUsage

from .conftest import running_platform
from .support import Cloud, Member, TestClient

START = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)


class FrozenClock:
    """Time stands still until the test moves it."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)

    def set(self, at: dt.datetime) -> None:
        self.at = at


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


class World:
    def __init__(self, cloud: Cloud, clock: FrozenClock) -> None:
        self.cloud = cloud
        self.clock = clock
        self.platform: server.Platform = cloud.platform

    def call(self, method: str, path: str, token: str, body: Any = None, **kw: Any) -> Any:
        headers = {"X-Auth-Token": token}
        if body is not None:
            kw["json"] = body
        return self.cloud.client.request(method, f"/billing/v1{path}", headers=headers, **kw)

    def ok(self, method: str, path: str, token: str, body: Any = None, status: int = 200) -> Any:
        response = self.call(method, path, token, body)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def fresh(self, member: Member) -> str:
        """A token valid now (the clock jumps past token lifetimes)."""
        return self.cloud.token_for(member.id, member.password, member.project_id or None)


@pytest.fixture
def world() -> Iterator[World]:
    clock = FrozenClock(START)
    with (
        running_platform(clock) as platform,  # type: ignore[arg-type]
        TestClient(platform.app, base_url="http://testserver") as client,
    ):
        yield World(Cloud(client, platform), clock)


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == status, body
    message: str = body["error"]["message"]
    return message


def make_account(w: World, owner: Member, **fields: Any) -> dict[str, Any]:
    body = {"name": "ACME SAS", "country": "FR", "owner_user_id": owner.id, **fields}
    return dict(w.ok("POST", "/accounts", w.cloud.admin_token, {"account": body}, 201)["account"])


# ---------------------------------------------------------------------- accounts


def test_accounts_roles_and_projects(world: World) -> None:
    w = world
    owner = w.cloud.member(role=None)
    owner_token = w.cloud.token_for(owner.id, owner.password, None)
    account = make_account(w, owner, billing_contact="compta@acme.example", project_limit=2)
    assert account["currency"] == "EUR" and account["projects"] == []
    assert account["roles"] == [{"user_id": owner.id, "role": "owner"}]
    # the owner provisions projects without the operator, within the limit
    made = [
        w.ok(
            "POST",
            f"/accounts/{account['id']}/projects",
            owner_token,
            {"project": {"name": n}},
            201,
        )
        for n in ("prod", "staging")
    ]
    third = w.call(
        "POST", f"/accounts/{account['id']}/projects", owner_token, {"project": {"name": "x"}}
    )
    assert "Quota exceeded for projects" in error(third, 403)
    listed = w.ok("GET", f"/accounts/{account['id']}/projects", owner_token)["projects"]
    assert listed == [p["project"]["id"] for p in made]
    # the owner is a member of the new projects: it can log in there
    assert w.cloud.token_for(owner.id, owner.password, made[0]["project"]["id"])
    # a viewer sees the account and its consumption, not its invoices or budget
    viewer = w.cloud.member(role=None)
    viewer_token = w.cloud.token_for(viewer.id, viewer.password, None)
    w.ok("PUT", f"/accounts/{account['id']}/roles/{viewer.id}/viewer", owner_token, status=204)
    assert w.ok("GET", "/accounts", viewer_token)["accounts"][0]["id"] == account["id"]
    w.ok("GET", f"/accounts/{account['id']}/consumption", viewer_token)
    error(w.call("GET", f"/accounts/{account['id']}/invoices", viewer_token), 403)
    error(
        w.call(
            "PUT", f"/accounts/{account['id']}/budget", viewer_token, {"budget": {"amount": "5"}}
        ),
        403,
    )
    error(
        w.call(
            "POST", f"/accounts/{account['id']}/projects", viewer_token, {"project": {"name": "v"}}
        ),
        403,
    )
    # an outsider sees nothing of it
    stranger = w.cloud.member()
    assert w.ok("GET", "/accounts", stranger.token)["accounts"] == []
    for method, path in (
        ("GET", f"/accounts/{account['id']}"),
        ("GET", f"/accounts/{account['id']}/consumption"),
        ("GET", f"/accounts/{account['id']}/invoices"),
        ("PATCH", f"/accounts/{account['id']}"),
        ("PUT", f"/accounts/{account['id']}/roles/{stranger.id}/owner"),
    ):
        body = {"account": {"name": "mine"}} if method == "PATCH" else None
        error(w.call(method, path, stranger.token, body), 404)
    # only the operator creates accounts; input is checked and leaves nothing behind
    error(
        w.call("POST", "/accounts", owner_token, {"account": {"name": "x", "country": "FR"}}), 403
    )
    for bad in (
        {"name": "", "country": "FR"},
        {"name": "x", "country": "XX"},
        {"name": "x", "country": "FR", "vat_number": "not a number"},
        {"name": "x", "country": "FR", "project_limit": -1},
        {"name": "x", "country": "FR", "owner_user_id": "nobody"},
        {"name": "x", "country": "FR", "surprise": 1},
    ):
        error(w.call("POST", "/accounts", w.cloud.admin_token, {"account": bad}), 400)
    assert len(w.ok("GET", "/accounts", w.cloud.admin_token)["accounts"]) == 1


# ---------------------------------------------------------------------- usage to invoice


def test_usage_consumption_and_invoice_equal_the_hand_computation(world: World) -> None:
    w = world
    billing = w.platform.billing
    owner = w.cloud.member(role=None)
    account = make_account(w, owner, country="DE", vat_number="DE123456789", vat_verified=True)
    token = lambda: w.cloud.token_for(owner.id, owner.password, None)  # noqa: E731
    p1 = w.ok(
        "POST", f"/accounts/{account['id']}/projects", token(), {"project": {"name": "a"}}, 201
    )
    p2 = w.ok(
        "POST", f"/accounts/{account['id']}/projects", token(), {"project": {"name": "b"}}, 201
    )
    one, two = p1["project"]["id"], p2["project"]["id"]

    # 08:00 a t1.nano server starts, stops 08:45, starts 09:05, stops 09:50: 90 minutes
    billing.gauge(one, "instance", "srv", 1, flavor="t1.nano")
    w.clock.advance(45 * 60)
    billing.gauge(one, "instance", "srv", 0, flavor="t1.nano")
    w.clock.advance(20 * 60)
    billing.gauge(one, "instance", "srv", 1, flavor="t1.nano")
    w.clock.advance(45 * 60)
    billing.gauge(one, "instance", "srv", 0, flavor="t1.nano")
    # 09:50 a 10 GiB volume, 3 GiB of objects and a floating IP, held one day
    billing.gauge(two, "volume.gb", "vol", 10)
    billing.gauge(two, "object.gb", "bucket", 3)
    billing.gauge(two, "floatingip", "fip", 1)
    billing.counter(two, "egress.gb", "bucket", 1)  # 1 GiB downloaded
    w.clock.advance(24 * 3600)
    for metric, resource in (("volume.gb", "vol"), ("object.gb", "bucket"), ("floatingip", "fip")):
        billing.gauge(two, metric, resource, 0)

    # the hand computation, from the shipped catalog's prices
    expected = {
        (one, "instance", "t1.nano"): cents(Decimal("1.5") * Decimal("0.0050")),
        (two, "volume.gb", ""): cents(Decimal(240) / 730 * Decimal("0.08")),
        (two, "object.gb", ""): cents(Decimal(72) / 730 * Decimal("0.02")),
        (two, "floatingip", ""): cents(Decimal(24) * Decimal("0.004")),
        (two, "egress.gb", ""): cents(Decimal(1) * Decimal("0.01")),
    }
    subtotal = sum(expected.values(), Decimal(0))

    # consumption, live (nothing aggregated yet), then the same after aggregation
    def consumption() -> dict[str, Any]:
        return dict(
            w.ok(
                "GET",
                f"/accounts/{account['id']}/consumption?start=2026-10-01T00:00:00Z&granularity=hour",
                token(),
            )["consumption"]
        )

    live = consumption()
    costs = {
        (c["project_id"], c["metric"], c["flavor"]): Decimal(c["amount"]) for c in live["cost"]
    }
    assert costs == expected
    assert Decimal(live["total_estimate"]) == subtotal
    hours = {
        i["period_start"]: Decimal(i["quantity"])
        for i in live["items"]
        if i["resource_type"] == "instance"
    }
    assert hours == {
        "2026-10-01T08:00:00Z": Decimal("0.75"),
        "2026-10-01T09:00:00Z": Decimal("0.75"),
    }
    assert billing.aggregate() > 0
    assert billing.aggregate() == 0  # nothing new
    rows_before = _usage_rows(w)
    billing.reaggregate(START.replace(hour=0), w.clock.now())  # recomputed, not added
    assert _usage_rows(w) == rows_before
    assert consumption()["cost"] == live["cost"]

    # the month is over: one invoice, reverse charge (DE with a verified VAT number)
    admin = w.cloud.token_for(w.cloud.admin_id, _admin_password(), w.cloud.admin_project_id)
    early = w.call("POST", "/invoicing", admin, {"invoicing": {"period": "2026-10"}})
    assert "not over" in error(early, 409)
    w.clock.set(dt.datetime(2026, 11, 1, 0, 30, tzinfo=dt.UTC))
    admin = w.cloud.token_for(w.cloud.admin_id, _admin_password(), w.cloud.admin_project_id)
    w.cloud.admin_token = admin
    (invoice,) = w.ok("POST", "/invoicing", admin, {"invoicing": {"period": "2026-10"}})["invoices"]
    assert invoice["period"] == "2026-10" and invoice["kind"] == "invoice"
    lines = {
        (x["project_id"], x["metric"], x["flavor"]): Decimal(x["amount"]) for x in invoice["lines"]
    }
    assert lines == expected
    assert Decimal(invoice["subtotal"]) == subtotal
    assert Decimal(invoice["vat_rate"]) == 0 and Decimal(invoice["vat"]) == 0
    assert Decimal(invoice["total"]) == subtotal
    assert "Reverse charge" in invoice["vat_note"]
    # issuing again, and after a restart, yields the same one invoice
    again = w.ok("POST", "/invoicing", admin, {"invoicing": {"period": "2026-10"}})["invoices"]
    assert [i["number"] for i in again] == [invoice["number"]]
    assert w.ok("GET", f"/accounts/{account['id']}/invoices", token())["invoices"] == [invoice]

    # exports a customer can file
    for kind, start in (("pdf", b"%PDF-1.4"), ("json", b"{"), ("csv", b"")):
        got = w.cloud.client.get(
            f"/billing/v1/invoices/{invoice['id']}/download?format={kind}",
            headers={"X-Auth-Token": token()},
        )
        assert got.status_code == 200 and got.content.startswith(start)
        assert invoice["number"] in got.headers["content-disposition"]
    doc = json.loads(
        w.cloud.client.get(
            f"/billing/v1/invoices/{invoice['id']}/download?format=json",
            headers={"X-Auth-Token": token()},
        ).content
    )
    assert doc["total"] == invoice["total"] and doc["customer"]["vat_number"] == "DE123456789"
    rows = list(
        csv.reader(
            io.StringIO(
                w.cloud.client.get(
                    f"/billing/v1/invoices/{invoice['id']}/download?format=csv",
                    headers={"X-Auth-Token": token()},
                ).text
            )
        )
    )
    assert len(rows) >= 1 + len(expected)
    error(
        w.cloud.client.get(
            f"/billing/v1/invoices/{invoice['id']}/download?format=exe",
            headers={"X-Auth-Token": token()},
        ),
        400,
    )

    # corrections are credit notes; the invoice itself never changes
    note = w.ok("POST", f"/invoices/{invoice['id']}/credit-note", admin, status=201)["invoice"]
    assert note["kind"] == "credit_note" and Decimal(note["total"]) == -subtotal
    assert note["corrects"] == invoice["number"] and note["number"] != invoice["number"]
    assert w.ok("GET", f"/invoices/{invoice['id']}", token())["invoice"] == invoice
    error(w.call("POST", f"/invoices/{invoice['id']}/credit-note", token()), 403)

    # another account's owner sees none of it
    other = w.cloud.member(role=None)
    make_account(w, other)
    other_token = w.cloud.token_for(other.id, other.password, None)
    error(w.call("GET", f"/invoices/{invoice['id']}", other_token), 404)
    error(
        w.cloud.client.get(
            f"/billing/v1/invoices/{invoice['id']}/download", headers={"X-Auth-Token": other_token}
        ),
        404,
    )
    error(w.call("GET", f"/accounts/{account['id']}/consumption", other_token), 404)


# ---------------------------------------------------------------------- tenant safety


def audit_actions(w: World, target: str) -> list[str]:
    w.platform.audit_log.flush()
    lines = [json.loads(x) for x in w.platform.paths.audit_log.read_text().splitlines()]
    return [x["action"] for x in lines if x.get("target", {}).get("id") == target]


def october_usage(w: World, account: dict[str, Any], token: str) -> None:
    """A project of the account runs a t1.nano for 10 hours of October."""
    project = w.ok(
        "POST", f"/accounts/{account['id']}/projects", token, {"project": {"name": "p"}}, 201
    )
    w.platform.billing.gauge(project["project"]["id"], "instance", "srv", 1, flavor="t1.nano")
    w.clock.advance(10 * 3600)
    w.platform.billing.gauge(project["project"]["id"], "instance", "srv", 0, flavor="t1.nano")


def november_admin(w: World) -> str:
    """The month is over; an admin token valid then."""
    w.clock.set(dt.datetime(2026, 11, 1, 0, 30, tzinfo=dt.UTC))
    return w.cloud.token_for(w.cloud.admin_id, _admin_password(), w.cloud.admin_project_id)


def sequence_of(invoice: dict[str, Any]) -> int:
    return int(invoice["number"].rsplit("-", 1)[1])


def test_reverse_charge_needs_a_vat_number_the_operator_verified(world: World) -> None:
    w = world
    owner = w.cloud.member(role=None)
    token = lambda: w.cloud.token_for(owner.id, owner.password, None)  # noqa: E731
    account = make_account(w, owner, country="DE")
    path = f"/accounts/{account['id']}"
    assert account["vat_verified"] is False
    # an owner types a well-formed number: kept, unverified; it cannot verify it itself
    typed = w.ok("PATCH", path, token(), {"account": {"vat_number": "DE123456789"}})
    assert typed["account"]["vat_verified"] is False and "notice" not in typed
    refused = w.call("PATCH", path, token(), {"account": {"vat_verified": True}})
    assert "Only the operator verifies" in error(refused, 403)
    bad = w.call("PATCH", path, w.cloud.admin_token, {"account": {"vat_verified": "yes"}})
    assert "vat_verified" in error(bad, 400)
    # the operator verifies it; the same values sent again keep it verified
    admin = w.cloud.admin_token
    assert w.ok("PATCH", path, admin, {"account": {"vat_verified": True}})["account"][
        "vat_verified"
    ]
    same = w.ok("PATCH", path, token(), {"account": {"vat_number": "DE123456789", "name": "N"}})
    assert same["account"]["vat_verified"] is True and "notice" not in same
    # a change of number, or of country, by the owner puts it back to unverified, and says so
    for change in ({"vat_number": "DE999999999"}, {"country": "AT"}):
        changed = w.ok("PATCH", path, token(), {"account": change})
        assert changed["account"]["vat_verified"] is False
        assert "no longer verified" in changed["notice"]
        assert w.ok("GET", path, token())["account"]["vat_verified"] is False
        w.ok("PATCH", path, admin, {"account": {"vat_verified": True}})
    actions = audit_actions(w, account["id"])
    assert actions.count("billing.account.vat_unverified") == 2
    assert actions.count("billing.account.vat_verified") == 3
    # without a number there is nothing to verify
    w.ok("PATCH", path, token(), {"account": {"vat_number": None}})
    nothing = w.call("PATCH", path, admin, {"account": {"vat_verified": True}})
    assert "no VAT number" in error(nothing, 400)

    # at issue time: unverified, Austrian VAT; verified, reverse charge
    w.ok("PATCH", path, token(), {"account": {"vat_number": "ATU12345678"}})
    october_usage(w, account, token())
    admin = november_admin(w)
    issue = {"invoicing": {"period": "2026-10", "account_id": account["id"]}}
    (taxed,) = w.ok("POST", "/invoicing", admin, issue)["invoices"]
    assert Decimal(taxed["vat_rate"]) == Decimal("0.20") and taxed["vat_note"] == ""
    w.ok("PATCH", path, admin, {"account": {"vat_verified": True}})
    w.ok("POST", f"/invoices/{taxed['id']}/credit-note", admin, status=201)
    (corrected,) = w.ok("POST", "/invoicing", admin, issue)["invoices"]
    assert Decimal(corrected["vat_rate"]) == 0 and "Reverse charge" in corrected["vat_note"]


def test_a_credited_month_is_invoiced_again_from_the_same_sequence(world: World) -> None:
    w = world
    owner = w.cloud.member(role=None)
    token = lambda: w.cloud.token_for(owner.id, owner.password, None)  # noqa: E731
    account = make_account(w, owner)
    october_usage(w, account, token())
    admin = november_admin(w)
    every = {"invoicing": {"period": "2026-10"}}
    mine = {"invoicing": {"period": "2026-10", "account_id": account["id"]}}
    (first,) = w.ok("POST", "/invoicing", admin, every)["invoices"]
    note = w.ok("POST", f"/invoices/{first['id']}/credit-note", admin, status=201)["invoice"]
    # a run over every account keeps the credited month as it is (a cancellation stays)
    assert w.ok("POST", "/invoicing", admin, every)["invoices"] == [first]
    # named, the account gets a corrected invoice: the next number, naming the one it replaces
    (corrected,) = w.ok("POST", "/invoicing", admin, mine)["invoices"]
    assert corrected["kind"] == "invoice" and corrected["corrects"] == first["number"]
    assert sequence_of(corrected) == sequence_of(note) + 1 == sequence_of(first) + 2
    assert corrected["total"] == first["total"] and corrected["lines"] == first["lines"]
    # issued once: asking again gives it back, and the invoices list all three in order
    assert w.ok("POST", "/invoicing", admin, mine)["invoices"] == [corrected]
    assert w.ok("POST", "/invoicing", admin, every)["invoices"] == [corrected]
    listed = w.ok("GET", f"/accounts/{account['id']}/invoices", token())["invoices"]
    assert [i["number"] for i in listed] == [first["number"], note["number"], corrected["number"]]
    # the correction can be credited and corrected in turn
    again = w.ok("POST", f"/invoices/{corrected['id']}/credit-note", admin, status=201)["invoice"]
    assert again["corrects"] == corrected["number"]
    (third,) = w.ok("POST", "/invoicing", admin, mine)["invoices"]
    assert third["corrects"] == corrected["number"] and sequence_of(third) == sequence_of(again) + 1
    pdf = w.cloud.client.get(
        f"/billing/v1/invoices/{third['id']}/download?format=json",
        headers={"X-Auth-Token": token()},
    ).json()
    assert pdf["corrects"] == corrected["number"] and pdf["kind"] == "invoice"


def all_at_once(work: Callable[[int], Any], count: int) -> list[Any]:
    """Run `work(i)` in `count` threads released together; their results, in order."""
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        results[index] = work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_twenty_concurrent_project_creates_end_at_the_account_limit(world: World) -> None:
    w = world
    owner = w.cloud.member(role=None)
    token = w.cloud.token_for(owner.id, owner.password, None)
    account = make_account(w, owner, project_limit=3)
    names = [w.cloud.unique("race") for _ in range(20)]

    def create(index: int) -> Any:
        body = {"project": {"name": names[index]}}
        return w.call("POST", f"/accounts/{account['id']}/projects", token, body)

    responses = all_at_once(create, 20)
    made = [r.json()["project"]["id"] for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(made) == 3, [r.text for r in responses]
    for response in refused:
        assert "Quota exceeded for projects" in error(response, 403)
    listed = w.ok("GET", f"/accounts/{account['id']}/projects", token)["projects"]
    assert sorted(listed) == sorted(made)
    # a create that lost the race left no project behind in identity
    headers = {"X-Auth-Token": w.cloud.admin_token}
    projects = w.cloud.client.get("/identity/v3/projects", headers=headers).json()["projects"]
    assert sorted(p["id"] for p in projects if p["name"] in names) == sorted(made)


def _admin_password() -> str:
    from .support import ADMIN_PASSWORD

    return ADMIN_PASSWORD


def _usage_rows(w: World) -> list[tuple[Any, ...]]:
    with w.platform.db.session() as s:
        return sorted(
            (r.project_id, r.metric, r.resource_id, r.flavor, r.hour, r.hours, r.quantity)
            for r in s.query(HourlyUsage).all()
        )


def test_budget_alert_is_raised_once_with_an_audit_line(world: World) -> None:
    w = world
    owner = w.cloud.member(role=None)
    account = make_account(w, owner)
    token = w.cloud.token_for(owner.id, owner.password, None)
    project = w.ok(
        "POST", f"/accounts/{account['id']}/projects", token, {"project": {"name": "p"}}, 201
    )
    for bad in ("-1", "abc", "1e99", 0):
        error(
            w.call("PUT", f"/accounts/{account['id']}/budget", token, {"budget": {"amount": bad}}),
            400,
        )
    set_ = w.ok("PUT", f"/accounts/{account['id']}/budget", token, {"budget": {"amount": "1.00"}})
    assert set_["account"]["budget"] == "1.00"
    billing = w.platform.billing
    billing.gauge(project["project"]["id"], "instance", "big", 1, flavor="m1.medium")
    w.clock.advance(10 * 3600)  # 10 h x 0.04 = 0.40 EUR: under the budget
    assert billing.check_budgets() == []
    w.clock.advance(20 * 3600)  # 30 h: 1.20 EUR
    crossed = billing.check_budgets()
    assert [a for a, _ in crossed] == [account["id"]] and crossed[0][1] == Decimal("1.20")
    assert billing.check_budgets() == []  # once a month
    w.platform.audit_log.flush()
    lines = [json.loads(x) for x in w.platform.paths.audit_log.read_text().splitlines()]
    alerts = [x for x in lines if x.get("action") == "billing.budget.crossed"]
    assert [a["target"]["id"] for a in alerts] == [account["id"]]


def test_catalog_and_openapi_are_served(world: World) -> None:
    w = world
    member = w.cloud.member()
    catalog = w.ok("GET", "/catalog", member.token)["catalog"]
    assert catalog["currency"] == "EUR"
    assert any(p["metric"] == "instance" and p["flavor"] == "t1.nano" for p in catalog["prices"])
    document = w.cloud.client.get("/billing/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    for path in ("/accounts", "/accounts/{id}/consumption", "/invoices/{id}/download"):
        assert path in document["paths"]
    assert w.cloud.client.get("/billing/v1/catalog").status_code == 401
    bad = w.call("GET", "/accounts/x/consumption?granularity=week", member.token)
    assert "granularity" in error(bad, 400)
    error(w.call("GET", "/accounts/x/consumption", member.token), 404)
    odd = w.call("GET", "/accounts/x/consumption?start=yesterday", member.token)
    assert "ISO 8601" in error(odd, 400)
    unknown = w.call("GET", "/accounts/x/consumption?evil=1", member.token)
    assert "evil" in error(unknown, 400)
