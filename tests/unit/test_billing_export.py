"""Invoice exports: JSON, CSV and a hand-written PDF a customer can file."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from typing import Any

import pytest

from souverain.billing.export import invoice_csv, invoice_json, invoice_pdf


def line(i: int = 1, **overrides: str) -> dict[str, str]:
    values = {
        "project_id": f"project-{i}",
        "project_name": f"Project {i}",
        "metric": "instance",
        "flavor": "m1.small",
        "unit": "hour",
        "quantity": "720",
        "unit_price": "0.0200",
        "amount": "14.40",
    }
    values.update(overrides)
    return values


def document(lines: list[dict[str, str]] | None = None, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "number": "SOU-2026-000042",
        "kind": "invoice",
        "corrects": "",
        "period": "2026-01",
        "issued_at": "2026-02-01T06:00:00",
        "currency": "EUR",
        "seller": {
            "name": "Souverain Cloud SAS",
            "address": "12 rue de la République, 69002 Lyon, France",
            "vat_number": "FR00123456789",
            "country": "FR",
        },
        "customer": {
            "account_id": "acc-1",
            "name": "Müller GmbH",
            "billing_contact": "billing@mueller.example",
            "country": "DE",
            "vat_number": "DE123456789",
        },
        "lines": [line()] if lines is None else lines,
        "subtotal": "14.40",
        "vat_rate": "0",
        "vat": "0.00",
        "vat_note": (
            "Reverse charge: VAT to be accounted for by the customer "
            "(Article 196, Directive 2006/112/EC)"
        ),
        "total": "14.40",
    }
    doc.update(overrides)
    return doc


# --- JSON -------------------------------------------------------------------------------


def test_json_round_trips_the_document() -> None:
    doc = document()
    assert json.loads(invoice_json(doc)) == doc


def test_json_is_utf8_with_a_stable_key_order() -> None:
    doc = document()
    shuffled = dict(reversed(list(copy.deepcopy(doc).items())))
    assert invoice_json(doc) == invoice_json(shuffled)
    assert "Müller".encode() in invoice_json(doc)


# --- CSV --------------------------------------------------------------------------------


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_has_a_header_a_row_per_line_and_the_totals() -> None:
    doc = document([line(1), line(2, metric="volume.gb", flavor="", unit="GB-month")])
    rows = read_csv(invoice_csv(doc))
    assert rows[0] == [
        "project_id",
        "project_name",
        "metric",
        "flavor",
        "unit",
        "quantity",
        "unit_price",
        "amount",
    ]
    assert rows[1] == [
        "project-1",
        "Project 1",
        "instance",
        "m1.small",
        "hour",
        "720",
        "0.0200",
        "14.40",
    ]
    assert rows[2][2:5] == ["volume.gb", "", "GB-month"]
    assert [(r[0], r[-1]) for r in rows[3:]] == [
        ("Subtotal", "14.40"),
        ("VAT", "0.00"),
        ("Total", "14.40"),
    ]
    assert rows[4][1].startswith("Reverse charge")
    assert all(len(r) == 8 for r in rows)


def test_csv_uses_crlf_and_quotes_commas_and_quotes() -> None:
    doc = document([line(project_name='Shop, "prod"')])
    data = invoice_csv(doc)
    assert data.endswith(b"\r\n")
    assert b'"Shop, ""prod"""' in data
    assert read_csv(data)[1][1] == 'Shop, "prod"'


@pytest.mark.parametrize("name", ["=HYPERLINK(1)", "+1+1", "-2+3", "@SUM(A1)", "\tx"])
def test_csv_guards_against_formula_injection(name: str) -> None:
    rows = read_csv(invoice_csv(document([line(project_name=name)])))
    assert rows[1][1] == "'" + name


def test_csv_keeps_negative_amounts_numbers() -> None:
    doc = document([line(amount="-14.40")], kind="credit_note", total="-14.40")
    rows = read_csv(invoice_csv(doc))
    assert rows[1][-1] == "-14.40"
    assert rows[-1][-1] == "-14.40"


# --- PDF --------------------------------------------------------------------------------


def xref_offsets(pdf: bytes) -> list[int]:
    start = int(re.search(rb"startxref\n(\d+)\n%%EOF", pdf).group(1))  # type: ignore[union-attr]
    assert pdf[start:].startswith(b"xref\n")
    lines = pdf[start:].split(b"\n")
    first, count = (int(x) for x in lines[1].split())
    assert (first, lines[2]) == (0, b"0000000000 65535 f ")
    entries = lines[3 : 3 + count - 1]
    assert all(len(entry) == 19 and entry.endswith(b" 00000 n ") for entry in entries)
    return [int(entry[:10]) for entry in entries]


def content_streams(pdf: bytes) -> list[bytes]:
    streams = []
    for match in re.finditer(rb"<< /Length (\d+) >>\nstream\n", pdf):
        length = int(match.group(1))
        body = pdf[match.end() : match.end() + length]
        assert pdf[match.end() + length :].startswith(b"endstream")
        streams.append(body)
    return streams


def page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b(?!s)", pdf))


def test_pdf_is_a_pdf_14_file() -> None:
    pdf = invoice_pdf(document())
    assert pdf.startswith(b"%PDF-1.4\n")
    assert pdf.rstrip().endswith(b"%%EOF")


def test_pdf_xref_offsets_point_at_their_objects() -> None:
    pdf = invoice_pdf(document([line(i) for i in range(200)]))
    offsets = xref_offsets(pdf)
    assert len(offsets) > 4
    for number, offset in enumerate(offsets, start=1):
        assert pdf[offset:].startswith(b"%d 0 obj\n" % number)
    assert b"/Size %d" % (len(offsets) + 1) in pdf


def test_pdf_shows_the_number_the_lines_and_the_total_uncompressed() -> None:
    pdf = invoice_pdf(document(total="1234.56"))
    text = b"".join(content_streams(pdf))
    assert b"(Invoice SOU-2026-000042)" in text
    assert b"(1234.56 EUR)" in text
    assert b"(Project 1)" in text
    assert b"(14.40)" in text
    assert b"Reverse charge" in text
    assert b"(Page 1 of 1)" in text


def test_pdf_paginates_a_thousand_lines() -> None:
    one = invoice_pdf(document())
    many = invoice_pdf(document([line(i) for i in range(1000)]))
    pages = page_count(many)
    assert page_count(one) == 1
    assert pages > 10
    assert b"/Count %d" % pages in many
    text = b"".join(content_streams(many))
    assert b"(Project 999)" in text
    assert b"(Page %d of %d)" % (pages, pages) in text
    for number, offset in enumerate(xref_offsets(many), start=1):
        assert many[offset:].startswith(b"%d 0 obj\n" % number)


def test_pdf_escapes_parentheses_and_backslashes_in_text() -> None:
    doc = document()
    doc["customer"]["name"] = "ACME (Europe) \\ Ltd"
    text = b"".join(content_streams(invoice_pdf(doc)))
    assert b"(ACME \\(Europe\\) \\\\ Ltd)" in text


def test_pdf_text_is_winansi_and_replaces_what_it_cannot_encode() -> None:
    doc = document()
    doc["customer"]["name"] = "Müller 株式会社 €"
    text = b"".join(content_streams(invoice_pdf(doc)))
    assert b"(M\xfcller ???? \x80)" in text


def test_pdf_of_a_credit_note_says_so_and_names_the_corrected_invoice() -> None:
    doc = document(kind="credit_note", corrects="SOU-2026-000041", number="SOU-2026-000043")
    text = b"".join(content_streams(invoice_pdf(doc)))
    assert b"(Credit note SOU-2026-000043)" in text
    assert b"SOU-2026-000041" in text


def test_pdf_is_deterministic() -> None:
    doc = document([line(i) for i in range(100)])
    assert invoice_pdf(doc) == invoice_pdf(copy.deepcopy(doc))
    assert b"/CreationDate (D:20260201060000Z)" in invoice_pdf(doc)


def test_pdf_shows_long_storage_quantities_to_six_decimals() -> None:
    doc = document([line(quantity="0.001369863013698630136986301370", unit="GB-month")])
    text = b"".join(content_streams(invoice_pdf(doc)))
    assert b"(0.001370)" in text
