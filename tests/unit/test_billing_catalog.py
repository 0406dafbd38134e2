"""The price catalog as pure logic: loading, prices in force, rating, VAT, rounding."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from souverain.billing.catalog import (
    HOURS_PER_MONTH,
    METRICS,
    OUTSIDE_EU_NOTE,
    REVERSE_CHARGE_NOTE,
    Catalog,
    CatalogError,
    Line,
    Price,
    UsageRow,
    money,
    rate,
    totals,
    vat_for,
)

HEADER = """
currency = "EUR"
[seller]
name = "Souverain Cloud SAS"
address = "1 rue X, Lyon"
vat_number = "FR00123456789"
country = "FR"
[vat_rates]
FR = "0.20"
DE = "0.19"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


def price_block(metric: str, unit_price: str, day: str = "2026-01-01", flavor: str = "") -> str:
    return (
        f'\n[[prices]]\nmetric = "{metric}"\nflavor = "{flavor}"\n'
        f'unit_price = "{unit_price}"\neffective_from = {day}\n'
    )


def hour(day: int, h: int = 0, month: int = 1) -> dt.datetime:
    return dt.datetime(2026, month, day, h)


def row(
    metric: str,
    quantity: str,
    at: dt.datetime,
    flavor: str = "",
    project: str = "p1",
    resource: str = "r1",
) -> UsageRow:
    return UsageRow(project, metric, resource, flavor, at, Decimal(quantity))


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.default()


# --- the shipped catalog --------------------------------------------------------------


def test_default_catalog_prices_every_metric_in_eur(catalog: Catalog) -> None:
    assert catalog.currency == "EUR"
    assert catalog.seller["country"] == "FR"
    assert {p.metric for p in catalog.prices} == set(METRICS)
    assert len(catalog.vat_rates) == 27
    assert catalog.vat_rates["FR"] == Decimal("0.20")
    assert catalog.vat_rates["DE"] == Decimal("0.19")


def test_default_catalog_prices_flavors_and_a_catch_all(catalog: Catalog) -> None:
    at = hour(15)
    assert catalog.price_at("instance", "t1.nano", at) == Price(
        "instance", Decimal("0.0050"), dt.date(2026, 1, 1), "t1.nano"
    )
    unknown = catalog.price_at("instance", "x9.huge", at)
    assert unknown is not None
    assert (unknown.flavor, unknown.unit_price) == ("", Decimal("0.0400"))


def test_catalog_as_dict_is_json_with_decimals_as_strings(catalog: Catalog) -> None:
    view = json.loads(json.dumps(catalog.as_dict()))
    assert view["currency"] == "EUR"
    assert view["hours_per_month"] == "730"
    assert view["metrics"]["volume.gb"] == {"usage_unit": "GiB-hour", "billed_unit": "GB-month"}
    volume = [p for p in view["prices"] if p["metric"] == "volume.gb"]
    assert volume == [
        {
            "metric": "volume.gb",
            "flavor": "",
            "unit": "GB-month",
            "unit_price": "0.08",
            "effective_from": "2026-01-01",
        }
    ]
    assert view["vat_rates"]["FR"] == "0.20"


# --- loading errors name the entry and the field ----------------------------------------


def test_load_reads_a_catalog_file(tmp_path: Path) -> None:
    loaded = Catalog.load(write(tmp_path, HEADER + price_block("router", "0.002")))
    assert loaded.prices == (Price("router", Decimal("0.002"), dt.date(2026, 1, 1)),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER + price_block("router", "abc"), "prices[0] (router): unit_price"),
        (HEADER + price_block("router", "-1"), "prices[0] (router): unit_price"),
        (HEADER + price_block("cpu", "1"), "prices[0]: metric: 'cpu'"),
        (
            HEADER + price_block("router", "1") + price_block("instance", "1", "2026-13-01", "m1"),
            "catalog.toml: ",
        ),
        (
            HEADER + price_block("router", "1") + price_block("instance", "1", '"soon"', "m1"),
            "prices[1] (instance m1): effective_from",
        ),
        (
            HEADER + price_block("router", "1") + price_block("router", "2"),
            "prices[1]: effective_from: a second price",
        ),
        (
            HEADER + '\n[[prices]]\nmetric = "router"\nunit_price = 0.002\n'
            "effective_from = 2026-01-01\n",
            "prices[0] (router): unit_price: a decimal written as a string",
        ),
        (HEADER, "prices"),
        (HEADER.replace('"EUR"', '"USD"') + price_block("router", "1"), "currency"),
        (
            HEADER.replace('country = "FR"', 'country = "CH"') + price_block("router", "1"),
            "seller.country",
        ),
        (
            HEADER.replace('vat_number = "FR00123456789"\n', "") + price_block("router", "1"),
            "seller.vat_number",
        ),
        (HEADER.replace('DE = "0.19"', 'DE = "19"') + price_block("router", "1"), "vat_rates.DE"),
        (HEADER.replace('DE = "0.19"', 'XX = "0.19"') + price_block("router", "1"), "vat_rates.XX"),
        ("currency = [", "catalog.toml: "),
    ],
)
def test_load_errors_name_the_entry_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        Catalog.load(write(tmp_path, text))
    assert message in str(caught.value)


def test_load_of_a_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"missing\.toml"):
        Catalog.load(tmp_path / "missing.toml")


# --- prices in force --------------------------------------------------------------------


def two_prices_catalog(tmp_path: Path) -> Catalog:
    text = (
        HEADER
        + price_block("instance", "0.04")
        + price_block("instance", "0.02", flavor="m1.small")
        + price_block("instance", "0.03", "2026-01-16", flavor="m1.small")
        + price_block("instance", "0.01", "2026-02-01", flavor="t1.nano")
        + price_block("volume.gb", "0.08")
    )
    return Catalog.load(write(tmp_path, text))


def test_price_at_takes_the_latest_effective_price(tmp_path: Path) -> None:
    catalog = two_prices_catalog(tmp_path)
    before = catalog.price_at("instance", "m1.small", hour(15, 23))
    after = catalog.price_at("instance", "m1.small", hour(16, 0))
    assert before is not None and before.unit_price == Decimal("0.02")
    assert after is not None and after.unit_price == Decimal("0.03")


def test_no_price_before_the_first_effective_date(tmp_path: Path) -> None:
    catalog = two_prices_catalog(tmp_path)
    assert catalog.price_at("volume.gb", "", dt.datetime(2025, 12, 31, 23)) is None
    assert catalog.price_at("router", "", hour(5)) is None


def test_a_flavor_price_beats_the_catch_all_once_in_force(tmp_path: Path) -> None:
    catalog = two_prices_catalog(tmp_path)
    january = catalog.price_at("instance", "t1.nano", hour(31, 23))
    february = catalog.price_at("instance", "t1.nano", hour(1, 0, month=2))
    assert january is not None and (january.flavor, january.unit_price) == ("", Decimal("0.04"))
    assert february is not None
    assert (february.flavor, february.unit_price) == ("t1.nano", Decimal("0.01"))


# --- rounding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.005", "0.01"),
        ("0.004999", "0.00"),
        ("0.015", "0.02"),
        ("0.025", "0.03"),
        ("1.234", "1.23"),
        ("-0.005", "-0.01"),
        ("7", "7.00"),
    ],
)
def test_money_rounds_half_up_to_the_cent(value: str, expected: str) -> None:
    assert str(money(Decimal(value))) == expected


# --- rating -----------------------------------------------------------------------------


def test_instance_hours_are_priced_per_flavor(catalog: Catalog) -> None:
    rows = [row("instance", "1", hour(1, h), "m1.small") for h in range(24)]
    rows += [row("instance", "1", hour(1, h), "t1.nano", resource="r2") for h in range(10)]
    assert rate(rows, catalog) == [
        Line("p1", "instance", "m1.small", "hour", Decimal(24), Decimal("0.0200"), Decimal("0.48")),
        Line("p1", "instance", "t1.nano", "hour", Decimal(10), Decimal("0.0050"), Decimal("0.05")),
    ]


def test_a_price_change_mid_month_gives_two_lines(tmp_path: Path) -> None:
    catalog = two_prices_catalog(tmp_path)
    rows = [row("instance", "1", hour(d, h), "m1.small") for d in range(1, 32) for h in range(24)]
    lines = rate(rows, catalog)
    assert [(line.quantity, line.unit_price, line.amount) for line in lines] == [
        (Decimal(15 * 24), Decimal("0.02"), Decimal("7.20")),
        (Decimal(16 * 24), Decimal("0.03"), Decimal("11.52")),
    ]


def test_storage_gib_hours_are_billed_in_gb_months(catalog: Catalog) -> None:
    # 10 GiB for a 730-hour month is 10 GB-months
    rows = [row("volume.gb", "10", hour(1) + dt.timedelta(hours=h)) for h in range(730)]
    [line] = rate(rows, catalog)
    assert (line.unit, line.quantity, line.amount) == ("GB-month", Decimal(10), Decimal("0.80"))
    assert Decimal(730) == HOURS_PER_MONTH


def test_storage_quantity_stays_exact_and_the_amount_is_rounded_once(catalog: Catalog) -> None:
    # 1 GiB for one hour: 1/730 GB-month; 0.08/730 EUR rounds to 0.00
    [line] = rate([row("object.gb", "1", hour(1))], catalog)
    assert line.quantity == Decimal(1) / Decimal(730)
    assert line.amount == Decimal("0.00")
    # 182.5 GiB-hours at 0.02 EUR/GB-month: 0.005 EUR exactly -> rounds half-up to 0.01
    [line] = rate([row("object.gb", "182.5", hour(1))], catalog)
    assert line.quantity == Decimal("0.25")
    assert line.amount == Decimal("0.01")


def test_egress_and_network_resources_use_their_own_units(catalog: Catalog) -> None:
    rows = [
        row("egress.gb", "150.5", hour(2)),
        row("floatingip", "1", hour(2)),
        row("router", "1", hour(2)),
    ]
    lines = rate(rows, catalog)
    assert [(line.metric, line.unit, line.amount) for line in lines] == [
        ("egress.gb", "GB", Decimal("1.51")),
        ("floatingip", "hour", Decimal("0.00")),
        ("router", "hour", Decimal("0.00")),
    ]


def test_lines_are_grouped_and_sorted_by_project_metric_flavor_price(catalog: Catalog) -> None:
    rows = [
        row("volume.gb", "1", hour(1), project="p2"),
        row("instance", "1", hour(1), "m1.small", project="p2"),
        row("instance", "1", hour(1), "m1.medium", project="p1", resource="a"),
        row("instance", "1", hour(2), "m1.medium", project="p1", resource="b"),
    ]
    keys = [
        (line.project_id, line.metric, line.flavor, line.quantity) for line in rate(rows, catalog)
    ]
    assert keys == [
        ("p1", "instance", "m1.medium", Decimal(2)),
        ("p2", "instance", "m1.small", Decimal(1)),
        ("p2", "volume.gb", "", Decimal(1) / Decimal(730)),
    ]


def test_usage_without_a_price_is_an_error_naming_the_metric(tmp_path: Path) -> None:
    catalog = two_prices_catalog(tmp_path)
    with pytest.raises(CatalogError, match="'router'"):
        rate([row("router", "1", hour(1))], catalog)
    with pytest.raises(CatalogError, match="'cpu'"):
        rate([row("cpu", "1", hour(1))], catalog)


def test_no_usage_gives_no_lines(catalog: Catalog) -> None:
    assert rate([], catalog) == []


# --- VAT --------------------------------------------------------------------------------


def test_vat_in_the_sellers_country_is_its_rate(catalog: Catalog) -> None:
    assert vat_for("FR", None, catalog) == (Decimal("0.20"), "")
    assert vat_for("FR", "FR12345678901", catalog) == (Decimal("0.20"), "")


def test_vat_for_an_eu_business_is_reverse_charged(catalog: Catalog) -> None:
    assert vat_for("DE", "DE123456789", catalog) == (Decimal(0), REVERSE_CHARGE_NOTE)
    assert "Article 196" in REVERSE_CHARGE_NOTE


def test_vat_for_an_eu_consumer_is_their_countrys_rate(catalog: Catalog) -> None:
    assert vat_for("DE", None, catalog) == (Decimal("0.19"), "")
    assert vat_for("DE", "", catalog) == (Decimal("0.19"), "")


def test_no_vat_outside_the_eu(catalog: Catalog) -> None:
    assert vat_for("US", None, catalog) == (Decimal(0), OUTSIDE_EU_NOTE)
    assert vat_for("CH", "CHE-123.456.789", catalog) == (Decimal(0), OUTSIDE_EU_NOTE)
    assert "Article 44" in OUTSIDE_EU_NOTE


@pytest.mark.parametrize("country", ["XX", "fr", "", "FRA", "EU"])
def test_vat_for_an_unknown_country_is_an_error(catalog: Catalog, country: str) -> None:
    with pytest.raises(CatalogError):
        vat_for(country, None, catalog)


# --- totals -----------------------------------------------------------------------------


def test_totals_sum_line_amounts_and_round_vat_on_the_subtotal() -> None:
    def line(amount: str) -> Line:
        return Line("p", "router", "", "hour", Decimal(1), Decimal(1), Decimal(amount))

    lines = [line("0.03"), line("0.04")]
    # per-line VAT would be 0.01 + 0.01; on the subtotal 0.07 * 0.20 = 0.014 -> 0.01
    assert totals(lines, Decimal("0.20")) == (Decimal("0.07"), Decimal("0.01"), Decimal("0.08"))
    assert totals([line("0.25")], Decimal("0.19")) == (
        Decimal("0.25"),
        Decimal("0.05"),  # 0.0475 -> 0.05
        Decimal("0.30"),
    )
    assert totals([], Decimal("0.20")) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))


def test_totals_round_half_up_on_the_vat() -> None:
    lines = [Line("p", "router", "", "hour", Decimal(1), Decimal(1), Decimal("0.25"))]
    # 0.25 * 0.02 = 0.005 exactly -> 0.01
    assert totals(lines, Decimal("0.02"))[1] == Decimal("0.01")
