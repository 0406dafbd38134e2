"""FormPost: a browser uploads files straight into a container with an HTML form that the
account's owner signed (HMAC of path, redirect, max_file_size, max_file_count, expires).

Parses the multipart/form-data body (bounded by the server's body limit) and checks the
signature; knows nothing of HTTP beyond the body's bytes.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP

from souverain.objectstore.swift.tempurl import DIGESTS, parse

SIGNED_FIELDS = ("redirect", "max_file_size", "max_file_count", "expires", "signature")


class FormError(ValueError):
    """A form Swift refuses: the message is Swift's (`FormPost: ...`), `status` its code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)


def parse_form(content_type: str, body: bytes) -> Form:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise FormError(400, "FormPost: the body is not multipart/form-data")
    form = Form()
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            form.files.append(Upload(filename, part.get_content_type(), data))
        elif isinstance(name, str):
            form.fields[name] = data.decode("utf-8", "replace")
    return form


def check_signature(form: Form, paths: Iterable[str], keys: Iterable[str], now: float) -> None:
    """FormError 401 unless the form is unexpired and signed by one of the keys."""
    values = {name: form.fields.get(name, "") for name in SIGNED_FIELDS}
    expires = values["expires"]
    if not expires.isdigit():
        raise FormError(401, "FormPost: expired not an integer")
    if int(expires) < now:
        raise FormError(401, "FormPost: Form Expired")
    signature = parse(values["signature"], expires, None)
    if signature is None:
        raise FormError(401, "FormPost: Invalid Signature")
    digest = DIGESTS[signature.algorithm]
    for path in paths:
        body = "\n".join(
            [path, values["redirect"], values["max_file_size"], values["max_file_count"], expires]
        ).encode()
        for key in keys:
            if hmac.compare_digest(
                hmac.new(key.encode(), body, digest).digest(), signature.signature
            ):
                return
    raise FormError(401, "FormPost: Invalid Signature")


def check_limits(form: Form) -> None:
    size, count = form.fields.get("max_file_size", ""), form.fields.get("max_file_count", "")
    if not size.isdigit() or not count.isdigit():
        raise FormError(400, "FormPost: max_file_size and max_file_count must be integers")
    if len(form.files) > int(count):
        raise FormError(400, "FormPost: max file count exceeded")
    if any(len(f.data) > int(size) for f in form.files):
        raise FormError(400, "FormPost: max_file_size exceeded")
