"""The price catalog and the arithmetic of an invoice: rating hourly usage, VAT, rounding.

Pure logic: no database, no clock, no I/O beyond reading a catalog file. Amounts are
Decimal and rounded in exactly one place, `money`; quantities are never rounded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

# metric -> (unit usage is measured in, unit it is priced and billed in)
METRICS: dict[str, tuple[str, str]] = {
    "instance": ("hour", "hour"),
    "floatingip": ("hour", "hour"),
    "router": ("hour", "hour"),
    "volume.gb": ("GiB-hour", "GB-month"),
    "snapshot.gb": ("GiB-hour", "GB-month"),
    "image.gb": ("GiB-hour", "GB-month"),
    "object.gb": ("GiB-hour", "GB-month"),
    "egress.gb": ("GiB", "GB"),
}

# A billing month is 730 hours (8,760 / 12) whatever the calendar says:
# 1 GB-month = 730 GiB-hours.
HOURS_PER_MONTH = Decimal(730)
CENT = Decimal("0.01")

# Decimal arithmetic here never depends on the caller's context: 28 significant digits
# keep a GiB-hours / 730 quotient far more precise than any cent.
_CONTEXT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)

REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the customer (Article 196, Directive 2006/112/EC)"
)
OUTSIDE_EU_NOTE = (
    "VAT not applicable: services supplied outside the EU (Article 44, Directive 2006/112/EC)"
)

# ISO 3166-1 alpha-2: every code a customer's country may be.
_ISO_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN
    BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL
    GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM
    JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME
    MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP
    NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD
    SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
ISO_COUNTRIES = frozenset(_ISO_CODES.split())

_SELLER_FIELDS = ("name", "address", "vat_number", "country")
_PRICE_FIELDS = {"metric", "flavor", "unit_price", "effective_from"}


class CatalogError(Exception):
    """A catalog that cannot be loaded, or usage or a customer it cannot price."""


def money(value: Decimal) -> Decimal:
    """Round half-up (away from zero on a tie) to the cent: the one rounding rule for amounts."""
    return value.quantize(CENT, rounding=decimal.ROUND_HALF_UP, context=_CONTEXT)


@dataclass(frozen=True)
class UsageRow:
    """Usage of one resource in one hour, in the metric's usage unit."""

    project_id: str
    metric: str
    resource_id: str
    flavor: str
    hour: dt.datetime
    quantity: Decimal


@dataclass(frozen=True)
class Price:
    """The price of one billed unit of a metric from a day on; flavor "" is the catch-all."""

    metric: str
    unit_price: Decimal
    effective_from: dt.date
    flavor: str = ""


@dataclass(frozen=True)
class Line:
    """One invoice line: a project's usage of a metric and flavor at one unit price."""

    project_id: str
    metric: str
    flavor: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Catalog:
    currency: str
    seller: dict[str, str]
    prices: tuple[Price, ...]
    vat_rates: dict[str, Decimal]

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CatalogError(f"{path}: {exc}") from None
        return _parse(data, str(path))

    @classmethod
    def default(cls) -> Catalog:
        """The catalog shipped with Souverain (souverain/billing/catalog.toml)."""
        text = resources.files("souverain.billing").joinpath("catalog.toml").read_text("utf-8")
        return _parse(tomllib.loads(text), "default catalog")

    def price_at(self, metric: str, flavor: str, at: dt.datetime) -> Price | None:
        """The price in force at `at`: the flavor's own if it has one by then, else the
        catch-all; among those, the latest `effective_from` on or before the day of `at`."""
        day = at.date()
        for wanted in (flavor, ""):
            in_force = [
                p
                for p in self.prices
                if p.metric == metric and p.flavor == wanted and p.effective_from <= day
            ]
            if in_force:
                return max(in_force, key=lambda p: p.effective_from)
            if not flavor:
                break
        return None

    def as_dict(self) -> dict[str, Any]:
        """The catalog as JSON (Decimals as strings), as GET /billing/v1/catalog returns it."""
        return {
            "currency": self.currency,
            "seller": dict(self.seller),
            "hours_per_month": str(HOURS_PER_MONTH),
            "rounding": "amounts half-up to the cent, per line and for VAT on the subtotal",
            "metrics": {
                metric: {"usage_unit": usage, "billed_unit": billed}
                for metric, (usage, billed) in METRICS.items()
            },
            "prices": [
                {
                    "metric": p.metric,
                    "flavor": p.flavor,
                    "unit": METRICS[p.metric][1],
                    "unit_price": str(p.unit_price),
                    "effective_from": p.effective_from.isoformat(),
                }
                for p in sorted(self.prices, key=lambda p: (p.metric, p.flavor, p.effective_from))
            ],
            "vat_rates": {country: str(r) for country, r in sorted(self.vat_rates.items())},
        }


def _parse(data: dict[str, Any], source: str) -> Catalog:
    unknown = set(data) - {"currency", "seller", "prices", "vat_rates"}
    if unknown:
        raise CatalogError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    if data.get("currency") != "EUR":
        raise CatalogError(f'{source}: currency: must be "EUR", got {data.get("currency")!r}')
    vat_rates = _parse_vat_rates(data.get("vat_rates"), source)
    seller = _parse_seller(data.get("seller"), source, vat_rates)
    raw_prices = data.get("prices")
    if not isinstance(raw_prices, list) or not raw_prices:
        raise CatalogError(f"{source}: prices: a non-empty array of [[prices]] tables is needed")
    prices = tuple(_parse_price(raw, f"{source}: prices[{i}]") for i, raw in enumerate(raw_prices))
    seen: set[tuple[str, str, dt.date]] = set()
    for i, price in enumerate(prices):
        key = (price.metric, price.flavor, price.effective_from)
        if key in seen:
            raise CatalogError(
                f"{source}: prices[{i}]: effective_from: a second price for metric "
                f"{price.metric!r} flavor {price.flavor!r} from {price.effective_from}"
            )
        seen.add(key)
    return Catalog(currency="EUR", seller=seller, prices=prices, vat_rates=vat_rates)


def _parse_vat_rates(raw: Any, source: str) -> dict[str, Decimal]:
    if not isinstance(raw, dict) or not raw:
        raise CatalogError(f"{source}: vat_rates: a table of country = rate is needed")
    rates: dict[str, Decimal] = {}
    for country, value in raw.items():
        where = f"{source}: vat_rates.{country}"
        if country not in ISO_COUNTRIES:
            raise CatalogError(f"{where}: not an ISO 3166-1 alpha-2 country code")
        rate = _decimal(value, where)
        if not Decimal(0) <= rate < Decimal(1):
            raise CatalogError(f'{where}: a rate is a fraction in [0, 1), e.g. "0.20"')
        rates[country] = rate
    return rates


def _parse_seller(raw: Any, source: str, vat_rates: dict[str, Decimal]) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: seller: a [seller] table is needed")
    seller: dict[str, str] = {}
    for field in _SELLER_FIELDS:
        value = raw.get(field)
        if not isinstance(value, str) or not value.strip():
            raise CatalogError(f"{source}: seller.{field}: a non-empty string is needed")
        seller[field] = value
    unknown = set(raw) - set(_SELLER_FIELDS)
    if unknown:
        raise CatalogError(f"{source}: seller: unknown key(s) {', '.join(sorted(unknown))}")
    if seller["country"] not in vat_rates:
        raise CatalogError(
            f"{source}: seller.country: {seller['country']!r} has no rate in vat_rates"
        )
    return seller


def _parse_price(raw: Any, where: str) -> Price:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: a table is needed")
    unknown = set(raw) - _PRICE_FIELDS
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    metric = raw.get("metric")
    if metric not in METRICS:
        raise CatalogError(
            f"{where}: metric: {metric!r} is not one of {', '.join(sorted(METRICS))}"
        )
    flavor = raw.get("flavor", "")
    if not isinstance(flavor, str):
        raise CatalogError(f'{where} ({metric}): flavor: a string is needed, "" for all')
    where = f"{where} ({metric} {flavor})" if flavor else f"{where} ({metric})"
    unit_price = _decimal(raw.get("unit_price"), f"{where}: unit_price")
    if unit_price < 0:
        raise CatalogError(f"{where}: unit_price: must not be negative")
    effective = raw.get("effective_from")
    if isinstance(effective, str):
        with contextlib.suppress(ValueError):
            effective = dt.date.fromisoformat(effective)
    if not isinstance(effective, dt.date) or isinstance(effective, dt.datetime):
        raise CatalogError(f"{where}: effective_from: a date (YYYY-MM-DD) is needed")
    return Price(metric=metric, unit_price=unit_price, effective_from=effective, flavor=flavor)


def _decimal(value: Any, where: str) -> Decimal:
    """A decimal written as a string or an integer; a TOML float is refused (not exact)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise CatalogError(f'{where}: a decimal written as a string is needed, e.g. "0.02"')
    try:
        result = Decimal(value)
    except decimal.InvalidOperation:
        raise CatalogError(f"{where}: {value!r} is not a decimal number") from None
    if not result.is_finite():
        raise CatalogError(f"{where}: {value!r} is not a finite number")
    return result


def rate(rows: Iterable[UsageRow], catalog: Catalog) -> list[Line]:
    """Price hourly usage: one line per (project, metric, flavor, unit price).

    Each row is priced at the price in force at its hour, so a price change mid-month
    gives two lines. A line's quantity is in the billed unit (GiB-hours / 730 for
    storage): exact when the quotient is a finite decimal, else 28 significant digits.
    Its amount is computed from the unrounded usage, so that precision never reaches
    the cent. A metered metric without a price is an error: the catalog must price
    everything that is metered.
    """
    usage: dict[tuple[str, str, str, Decimal], Decimal] = {}
    prices: dict[tuple[str, str, dt.date], Price | None] = {}
    for row in rows:
        if row.metric not in METRICS:
            raise CatalogError(f"usage of unknown metric {row.metric!r}")
        key = (row.metric, row.flavor, row.hour.date())
        if key not in prices:
            prices[key] = catalog.price_at(row.metric, row.flavor, row.hour)
        price = prices[key]
        if price is None:
            flavor = f" flavor {row.flavor!r}" if row.flavor else ""
            raise CatalogError(
                f"no price for metric {row.metric!r}{flavor} at {row.hour.isoformat()}"
            )
        group = (row.project_id, row.metric, row.flavor, price.unit_price)
        usage[group] = _CONTEXT.add(usage.get(group, Decimal(0)), row.quantity)
    return [_line(group, total) for group, total in sorted(usage.items())]


def _line(group: tuple[str, str, str, Decimal], used: Decimal) -> Line:
    project_id, metric, flavor, unit_price = group
    billed_unit = METRICS[metric][1]
    if billed_unit == "GB-month":
        quantity = _CONTEXT.divide(used, HOURS_PER_MONTH)
        amount = money(_CONTEXT.divide(_CONTEXT.multiply(used, unit_price), HOURS_PER_MONTH))
    else:
        quantity = used
        amount = money(_CONTEXT.multiply(used, unit_price))
    return Line(project_id, metric, flavor, billed_unit, quantity, unit_price, amount)


def vat_for(country: str, vat_number: str | None, catalog: Catalog) -> tuple[Decimal, str]:
    """The VAT rate for a customer and the note the invoice must carry.

    In the seller's country: its rate. Another EU country: reverse charge for a business
    with a VAT number, else that country's rate. Outside the EU: no VAT.
    """
    if country not in ISO_COUNTRIES:
        raise CatalogError(f"country {country!r} is not an ISO 3166-1 alpha-2 country code")
    if country == catalog.seller["country"]:
        return catalog.vat_rates[country], ""
    if country in catalog.vat_rates:
        if vat_number and vat_number.strip():
            return Decimal(0), REVERSE_CHARGE_NOTE
        return catalog.vat_rates[country], ""
    return Decimal(0), OUTSIDE_EU_NOTE


def totals(lines: Sequence[Line], vat_rate: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """Subtotal (sum of the line amounts), VAT on the subtotal, and total."""
    subtotal = sum((line.amount for line in lines), Decimal("0.00"))
    vat = money(_CONTEXT.multiply(subtotal, vat_rate))
    return subtotal, vat, subtotal + vat
