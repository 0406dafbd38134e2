"""S3's XML: safe parsing of untrusted request bodies, plain generation of responses.

Parsing goes through defusedxml (no entities, no DTD at all) after a size check;
namespaces are dropped so `{http://s3.amazonaws.com/doc/2006-03-01/}Key` reads as `Key`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


class MalformedXML(ValueError):
    """The body is not well-formed XML, or not the document expected."""


def parse(body: bytes, root: str) -> Element:
    """Parse a request document whose root element must be `root`."""
    try:
        element = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError):
        raise MalformedXML(
            "The XML you provided was not well-formed or did not validate against our "
            "published schema"
        ) from None
    for node in element.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    if element.tag != root:
        raise MalformedXML(f"The document's root element must be {root}.")
    return element


def text(element: Element, path: str, default: str = "") -> str:
    found = element.find(path)
    return found.text or "" if found is not None else default


def texts(element: Element, path: str) -> list[str]:
    return [node.text or "" for node in element.findall(path)]


def timestamp(value: dt.datetime) -> str:
    """S3's listing time: `2026-11-28T12:00:00.000Z`."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _emit(out: list[str], name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, list):
        for item in value:
            _emit(out, name, item)
        return
    if isinstance(value, dict):
        out.append(f"<{name}>")
        for child, child_value in value.items():
            _emit(out, child, child_value)
        out.append(f"</{name}>")
        return
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, dt.datetime):
        value = timestamp(value)
    out.append(f"<{name}>{escape(str(value))}</{name}>")


def document(root: str, content: dict[str, Any] | Iterable[tuple[str, Any]]) -> bytes:
    """An XML response: `content` maps element names to text, dicts, or lists of either.

    None values are left out; use a list of pairs where order or repetition matters.
    """
    out = [f'<{root} xmlns="{NAMESPACE}">']
    items = content.items() if isinstance(content, dict) else content
    for name, value in items:
        _emit(out, name, value)
    out.append(f"</{root}>")
    return DECLARATION + "".join(out).encode()


def raw_document(root: str, inner: str) -> bytes:
    """A response whose inner markup the caller built (attributes such as xsi:type)."""
    return DECLARATION + f'<{root} xmlns="{NAMESPACE}">{inner}</{root}>'.encode()


def error_document(
    code: str,
    message: str,
    resource: str,
    request_id: str,
    details: dict[str, str] | None = None,
) -> bytes:
    extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in (details or {}).items())
    return (
        DECLARATION
        + (
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>{extra}"
            f"<Resource>{escape(resource)}</Resource><RequestId>{escape(request_id)}</RequestId>"
            "</Error>"
        ).encode()
    )
