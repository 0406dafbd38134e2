"""The billing API's wire shapes: accounts, invoices, invoice lines, consumption.

The service's resource modules hand their rows here; nothing here reads the database
or decides anything. Times are UTC with a `Z`, amounts are decimal strings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from souverain.billing import models as m
from souverain.billing.catalog import METRICS, Line

ConsumptionKey = tuple[str, str, str, str, dt.datetime]  # project, metric, resource, flavor


def timestamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def account_view(
    row: m.Account, projects: list[str], roles: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "billing_contact": row.billing_contact,
        "country": row.country,
        "vat_number": row.vat_number,
        "vat_verified": row.vat_verified,
        "currency": row.currency,
        "project_limit": row.project_limit,
        "projects": projects,
        "roles": roles,
        "budget": row.budget,
        "created_at": timestamp(row.created_at),
    }


def line_view(line: Line) -> dict[str, Any]:
    return {
        "project_id": line.project_id,
        "metric": line.metric,
        "flavor": line.flavor,
        "unit": line.unit,
        "quantity": str(line.quantity),
        "unit_price": str(line.unit_price),
        "amount": str(line.amount),
    }


def invoice_view(row: m.Invoice) -> dict[str, Any]:
    return {
        "id": row.id,
        "number": row.number,
        "kind": row.kind,
        "corrects": row.document.get("corrects", ""),
        "account_id": row.account_id,
        "period": row.period,
        "issued_at": timestamp(row.issued_at),
        "currency": row.currency,
        "subtotal": row.subtotal,
        "vat_rate": row.vat_rate,
        "vat": row.vat,
        "total": row.total,
        "vat_note": row.vat_note,
        "lines": row.document["lines"],
    }


def consumption_view(
    account_id: str,
    window: tuple[dt.datetime, dt.datetime],
    granularity: str,
    currency: str,
    items: Iterable[tuple[ConsumptionKey, Decimal]],
    lines: list[Line],
) -> dict[str, Any]:
    start, end = window
    return {
        "account_id": account_id,
        "start": timestamp(start),
        "end": timestamp(end),
        "granularity": granularity,
        "currency": currency,
        "items": [
            {
                "project_id": project,
                "resource_type": metric,
                "resource_id": resource,
                "flavor": flavor,
                "period_start": timestamp(period),
                "quantity": str(quantity),
                "unit": METRICS[metric][0],
            }
            for (project, metric, resource, flavor, period), quantity in items
        ],
        "cost": [line_view(line) for line in lines],
        "total_estimate": str(sum((line.amount for line in lines), Decimal(0))),
    }
