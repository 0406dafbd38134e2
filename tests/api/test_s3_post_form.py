"""The form-upload body reader and policy rules, fed hostile shapes directly: boundaries
split across any chunk, oversized preambles, missing files, policies that bend the rules.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import AsyncIterator

import pytest

from souverain.objectstore import post_policy
from souverain.objectstore.api.form import FormData, boundary_of
from souverain.objectstore.errors import S3Error

BOUNDARY = b"----form7"
FILE = b"line one\r\n------form line two\r\n--\r\n"  # looks like a boundary, is not one


def body(*fields: tuple[str, str], file: bytes | None = FILE, tail: bytes = b"") -> bytes:
    out = b"preamble to ignore"
    for name, value in fields:
        out += b"\r\n--" + BOUNDARY + f'\r\nContent-Disposition: form-data; name="{name}"'.encode()
        out += b"\r\n\r\n" + value.encode()
    if file is not None:
        out += b"\r\n--" + BOUNDARY
        out += b'\r\nContent-Disposition: form-data; name="file"; filename="a \\"b\\".txt"'
        out += b"\r\nContent-Type: text/plain\r\n\r\n" + file
    return out + b"\r\n--" + BOUNDARY + b"--\r\n" + tail


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def read(data: bytes, size: int, limit: int = 4096) -> tuple[dict[str, str], bytes, str]:
    async def run() -> tuple[dict[str, str], bytes, str]:
        form = FormData(pieces(data, size), BOUNDARY, limit)
        fields = await form.fields()
        content = b"".join([c async for c in form.file_chunks()])
        await form.drain()
        return fields, content, form.filename

    return asyncio.run(run())


@pytest.mark.parametrize("size", [1, 2, 3, 7, 11, 64, 100_000])
def test_fields_and_file_read_the_same_whatever_the_chunking(size: int) -> None:
    data = body(("Key", "uploads/${filename}"), ("acl", "private"))

    fields, content, filename = read(data, size)

    assert fields == {"key": "uploads/${filename}", "acl": "private"}
    assert content == FILE
    assert filename == 'a "b".txt'


def test_fields_over_the_limit_are_refused() -> None:
    with pytest.raises(S3Error) as caught:
        read(body(("key", "k" * 10_000)), 512, limit=4096)
    assert caught.value.code == "MaxPostPreDataLengthExceededError"


def test_a_form_without_a_file_is_refused() -> None:
    with pytest.raises(S3Error) as caught:
        read(body(("key", "k"), file=None), 5)
    assert caught.value.code == "IncorrectNumberOfFilesInPostRequest"


def test_a_file_without_its_closing_boundary_is_malformed() -> None:
    data = body(("key", "k")).rsplit(b"\r\n--" + BOUNDARY, 1)[0]
    with pytest.raises(S3Error) as caught:
        read(data, 9)
    assert caught.value.code == "MalformedPOSTRequest"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "multipart/form-data", "multipart/form-data; boundary=" + "b" * 71],
)
def test_a_content_type_without_a_usable_boundary_is_malformed(content_type: str) -> None:
    with pytest.raises(S3Error) as caught:
        boundary_of(content_type)
    assert caught.value.code == "MalformedPOSTRequest"


def test_a_quoted_boundary_is_read() -> None:
    assert boundary_of('multipart/form-data; charset=utf-8; boundary="a b"') == b"a b"


NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def policy(*conditions: object, expiration: str = "2026-12-06T13:00:00Z") -> dict[str, object]:
    encoded = base64.b64encode(
        json.dumps({"expiration": expiration, "conditions": list(conditions)}).encode()
    )
    return post_policy.decode(encoded.decode())


@pytest.mark.parametrize(
    ("document", "fields", "code"),
    [
        (policy({"key": "a"}, expiration="2026-12-06T11:59:59Z"), {"key": "a"}, "AccessDenied"),
        (policy({"key": "a"}), {"key": "b"}, "AccessDenied"),
        (policy({"key": "a"}), {"key": "a", "acl": "public-read"}, "AccessDenied"),
        (policy({"bucket": "other"}, {"key": "a"}), {"key": "a"}, "AccessDenied"),
        (policy(["starts-with", "$key", "up/"]), {"key": "down/x"}, "AccessDenied"),
        (policy(["matches", "$key", ".*"]), {"key": "x"}, "InvalidPolicyDocument"),
        (policy(["content-length-range", -1, 5]), {}, "InvalidPolicyDocument"),
        (policy(["eq", "key", "a"]), {"key": "a"}, "InvalidPolicyDocument"),
    ],
)
def test_a_policy_condition_that_fails_refuses_the_form(
    document: dict[str, object], fields: dict[str, str], code: str
) -> None:
    with pytest.raises(S3Error) as caught:
        post_policy.check(document, fields, "bucket", NOW)
    assert caught.value.code == code


def test_a_policy_that_holds_gives_the_size_range() -> None:
    document = policy(
        {"bucket": "bucket"},
        ["starts-with", "$key", "up/"],
        ["eq", "$Content-Type", "image/png"],
        ["content-length-range", 1, 10],
    )
    fields = {"key": "up/x", "content-type": "image/png", "x-ignore-me": "1", "policy": "p"}

    assert post_policy.check(document, fields, "bucket", NOW) == post_policy.SizeRange(1, 10)


@pytest.mark.parametrize("text", ["", "e30=", "bm90IGpzb24=", "!!!"])
def test_a_policy_that_is_not_a_policy_document_is_refused(text: str) -> None:
    with pytest.raises(S3Error) as caught:
        post_policy.decode(text)
    assert caught.value.code == "InvalidPolicyDocument"
