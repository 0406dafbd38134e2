"""Invoice documents as files a customer keeps: JSON, CSV and PDF.

Renders an issued invoice document (see `invoice_json`) and nothing else: no pricing,
no rounding, no clock. The same document always gives the same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

CSV_COLUMNS = (
    "project_id",
    "project_name",
    "metric",
    "flavor",
    "unit",
    "quantity",
    "unit_price",
    "amount",
)


def invoice_json(doc: dict[str, Any]) -> bytes:
    """The document as UTF-8 JSON, keys sorted so equal documents give equal bytes.

    The document is {number, kind ("invoice" | "credit_note"), corrects (a number or ""),
    period ("YYYY-MM"), issued_at (ISO 8601), currency, seller {name, address,
    vat_number, country}, customer {account_id, name, billing_contact, country,
    vat_number}, lines [{project_id, project_name, metric, flavor, unit, quantity,
    unit_price, amount}], subtotal, vat_rate, vat, vat_note, total}, Decimals as strings.
    """
    text = json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False, default=_json_default)
    return (text + "\n").encode("utf-8")


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# A cell a spreadsheet would read as a formula (CSV injection); plain numbers are safe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _cell(value: Any) -> str:
    text = _text(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def invoice_csv(doc: dict[str, Any]) -> bytes:
    """The lines as RFC 4180 CSV (UTF-8, CRLF): a header row, one row per line, then a
    Subtotal, a VAT and a Total row (label in the first column, amount in the last; the
    VAT row carries the rate under unit_price and the VAT note under project_name)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for line in doc["lines"]:
        writer.writerow([_cell(line.get(column, "")) for column in CSV_COLUMNS])
    blank = [""] * 5
    writer.writerow(["Subtotal", "", *blank, _cell(doc["subtotal"])])
    writer.writerow(
        [
            "VAT",
            _cell(doc.get("vat_note", "")),
            *blank[:4],
            _cell(doc["vat_rate"]),
            _cell(doc["vat"]),
        ]
    )
    writer.writerow(["Total", "", *blank, _cell(doc["total"])])
    return out.getvalue().encode("utf-8")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# --- PDF -------------------------------------------------------------------------------
#
# A minimal PDF 1.4 written by hand: one standard font (Helvetica, WinAnsiEncoding, so no
# font is embedded), A4 pages, uncompressed content streams, an exact xref table.

PAGE_WIDTH = 595
PAGE_HEIGHT = 842
MARGIN = 50
ROW = 12
FONT_SIZE = 9
FOOTER_Y = 30

# Helvetica advance widths (1/1000 em) for ASCII 32..126, from the standard AFM.
_WIDTHS = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
]  # fmt: skip

# Table columns: (title, document key, left x, right x, right-aligned)
_COLUMNS = (
    ("Project", "project", 50, 175, False),
    ("Metric", "metric", 178, 243, False),
    ("Flavor", "flavor", 246, 318, False),
    ("Unit", "unit", 321, 376, False),
    ("Quantity", "quantity", 379, 445, True),
    ("Unit price", "unit_price", 448, 495, True),
    ("Amount", "amount", 498, 545, True),
)
_DISPLAY_QUANTUM = Decimal("0.000001")


def _width(text: str, size: float) -> float:
    """Text width in points; characters outside ASCII count as a typical letter."""
    total = 0
    for char in text:
        code = ord(char)
        total += _WIDTHS[code - 32] if 32 <= code <= 126 else 556
    return total * size / 1000


def _fit(text: str, width: float, size: float) -> str:
    """`text`, cut with an ellipsis if it would be wider than `width`."""
    if _width(text, size) <= width:
        return text
    while text and _width(text + "...", size) > width:
        text = text[:-1]
    return text + "..."


def _wrap(text: str, width: float, size: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and _width(candidate, size) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _pdf_string(text: str) -> bytes:
    """A PDF literal string in WinAnsi: what cp1252 cannot encode becomes "?"."""
    text = "".join(c if c >= " " else " " for c in text)
    raw = text.encode("cp1252", errors="replace")
    raw = raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    return b"(" + raw + b")"


class _Page:
    def __init__(self) -> None:
        self.ops: list[bytes] = []

    def text(self, x: float, y: float, text: str, size: float = FONT_SIZE) -> None:
        self.ops.append(
            b"BT /F1 %s Tf %s %s Td " % (_num(size), _num(x), _num(y))
            + _pdf_string(text)
            + b" Tj ET"
        )

    def text_right(self, right: float, y: float, text: str, size: float = FONT_SIZE) -> None:
        self.text(right - _width(text, size), y, text, size)

    def rule(self, y: float) -> None:
        self.ops.append(
            b"0.5 w %s %s m %s %s l S" % (_num(MARGIN), _num(y), _num(PAGE_WIDTH - MARGIN), _num(y))
        )

    def content(self) -> bytes:
        return b"\n".join(self.ops) + b"\n"


def _num(value: float) -> bytes:
    return (b"%.2f" % value).rstrip(b"0").rstrip(b".")


def _display_quantity(value: Any) -> str:
    """Quantities are exact in the document; the PDF shows at most six decimals."""
    text = _text(value)
    try:
        quantity = Decimal(text)
    except ArithmeticError:
        return text
    exponent = quantity.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        return str(quantity.quantize(_DISPLAY_QUANTUM))
    return text


def _percent(value: Any) -> str:
    try:
        return f"{(Decimal(_text(value)) * 100).normalize():f}%"
    except ArithmeticError:
        return _text(value)


def _title(doc: dict[str, Any]) -> str:
    return "Credit note" if doc.get("kind") == "credit_note" else "Invoice"


def _header(page: _Page, doc: dict[str, Any]) -> float:
    """The first page's header; returns the y below it."""
    seller = doc.get("seller", {})
    customer = doc.get("customer", {})
    y = PAGE_HEIGHT - MARGIN - 14
    page.text(MARGIN, y, f"{_title(doc)} {_text(doc.get('number'))}", 16)
    y -= 22
    facts = [
        ("Period", _text(doc.get("period"))),
        ("Issued", _text(doc.get("issued_at"))),
        ("Currency", _text(doc.get("currency"))),
    ]
    if doc.get("corrects"):
        facts.insert(0, ("Corrects invoice", _text(doc.get("corrects"))))
    for label, value in facts:
        page.text(MARGIN, y, f"{label}: {value}")
        y -= ROW
    y -= 10
    top = y
    page.text(MARGIN, y, "From", 10)
    page.text(320, y, "Billed to", 10)
    left = [_text(seller.get("name")), *_text(seller.get("address")).splitlines()]
    left += [f"VAT number: {_text(seller.get('vat_number'))}", _text(seller.get("country"))]
    right = [_text(customer.get("name"))]
    if customer.get("billing_contact"):
        right.append(_text(customer.get("billing_contact")))
    right.append(f"Account: {_text(customer.get('account_id'))}")
    right.append(f"Country: {_text(customer.get('country'))}")
    if customer.get("vat_number"):
        right.append(f"VAT number: {_text(customer.get('vat_number'))}")
    for x, block in ((MARGIN, left), (320, right)):
        y = top - ROW - 2
        for line in block:
            page.text(x, y, _fit(line, 245, FONT_SIZE))
            y -= ROW
    return top - ROW * (max(len(left), len(right)) + 1) - 16


def _table_header(page: _Page, y: float) -> float:
    for title, _key, left, right, align_right in _COLUMNS:
        if align_right:
            page.text_right(right, y, title)
        else:
            page.text(left, y, title)
    page.rule(y - 4)
    return y - ROW - 4


def _table_row(page: _Page, y: float, line: dict[str, Any]) -> None:
    cells = {
        "project": _text(line.get("project_name")) or _text(line.get("project_id")),
        "metric": _text(line.get("metric")),
        "flavor": _text(line.get("flavor")),
        "unit": _text(line.get("unit")),
        "quantity": _display_quantity(line.get("quantity")),
        "unit_price": _text(line.get("unit_price")),
        "amount": _text(line.get("amount")),
    }
    for _name, key, left, right, align_right in _COLUMNS:
        text = _fit(cells[key], right - left, FONT_SIZE)
        if align_right:
            page.text_right(right, y, text)
        else:
            page.text(left, y, text)


def _totals(page: _Page, y: float, doc: dict[str, Any]) -> None:
    currency = _text(doc.get("currency"))
    page.rule(y + ROW - 4)
    rows = [
        ("Subtotal", f"{_text(doc.get('subtotal'))} {currency}"),
        (f"VAT {_percent(doc.get('vat_rate'))}", f"{_text(doc.get('vat'))} {currency}"),
    ]
    for label, value in rows:
        page.text_right(440, y, label)
        page.text_right(PAGE_WIDTH - MARGIN, y, value)
        y -= ROW
    page.text_right(440, y - 2, "Total", 11)
    page.text_right(PAGE_WIDTH - MARGIN, y - 2, f"{_text(doc.get('total'))} {currency}", 11)
    y -= ROW + 10
    for note in _wrap(_text(doc.get("vat_note")), PAGE_WIDTH - 2 * MARGIN, FONT_SIZE):
        page.text(MARGIN, y, note)
        y -= ROW


def _totals_height(doc: dict[str, Any]) -> float:
    notes = len(_wrap(_text(doc.get("vat_note")), PAGE_WIDTH - 2 * MARGIN, FONT_SIZE))
    return ROW * (3 + notes) + 14


def _layout(doc: dict[str, Any]) -> list[_Page]:
    """Every page: header on the first, the table across as many pages as it needs, the
    totals after the last line, and a footer saying which page of how many."""
    bottom = MARGIN + 10
    pages = [_Page()]
    y = _table_header(pages[0], _header(pages[0], doc))
    lines: Sequence[dict[str, Any]] = doc.get("lines", [])

    def new_page() -> float:
        page = _Page()
        pages.append(page)
        top = PAGE_HEIGHT - MARGIN - 10
        page.text(MARGIN, top, f"{_title(doc)} {_text(doc.get('number'))} (continued)", 10)
        return _table_header(page, top - 2 * ROW)

    for line in lines:
        if y < bottom:
            y = new_page()
        _table_row(pages[-1], y, line)
        y -= ROW
    if y - _totals_height(doc) < bottom:
        y = new_page()
    _totals(pages[-1], y - 8, doc)
    for index, page in enumerate(pages, start=1):
        footer = f"{_text(doc.get('seller', {}).get('name'))} - {_text(doc.get('number'))}"
        page.text(MARGIN, FOOTER_Y, footer, 8)
        page.text_right(PAGE_WIDTH - MARGIN, FOOTER_Y, f"Page {index} of {len(pages)}", 8)
    return pages


def _pdf_date(issued_at: Any) -> str | None:
    try:
        when = dt.datetime.fromisoformat(_text(issued_at))
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("D:%Y%m%d%H%M%SZ")


def invoice_pdf(doc: dict[str, Any]) -> bytes:
    """The document as a PDF 1.4 file: A4 pages, Helvetica, an exact cross-reference table."""
    pages = _layout(doc)
    # objects: 1 catalog, 2 page tree, 3 font, 4 info, then a page and its content each
    first_page = 5
    kids = b" ".join(b"%d 0 R" % (first_page + 2 * i) for i in range(len(pages)))
    info = b"<< /Title " + _pdf_string(f"{_title(doc)} {_text(doc.get('number'))}")
    info += b" /Producer (Souverain)"
    created = _pdf_date(doc.get("issued_at"))
    if created:
        info += b" /CreationDate " + _pdf_string(created)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        info + b" >>",
    ]
    for i, page in enumerate(pages):
        content_id = first_page + 2 * i + 1
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
            % (PAGE_WIDTH, PAGE_HEIGHT, content_id)
        )
        stream = page.content()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream")
    return _serialize(objects)


def _serialize(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n" % (len(objects) + 1)
    out += b"0000000000 65535 f \n"
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)
