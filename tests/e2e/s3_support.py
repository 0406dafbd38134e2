"""What the boto3 end-to-end tests share: reading an S3 error, anonymous clients, new buckets.

Only real clients here (boto3, httpx); nothing of Souverain is imported.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from typing import Any

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from defusedxml.ElementTree import fromstring

from tests.e2e.conftest import REGION, unique


def s3_error(operation: Callable[..., Any], /, *args: Any, **params: Any) -> tuple[str, int]:
    """Call an operation that must fail; its S3 error code and HTTP status."""
    with pytest.raises(ClientError) as caught:
        operation(*args, **params)
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def error_document(response: httpx.Response) -> dict[str, str]:
    """The fields of an S3 XML error body (`<Error><Code>...`), by element name."""
    assert response.headers["content-type"].startswith("application/xml"), response.text
    root = fromstring(response.content)
    assert root.tag == "Error", response.text
    return {child.tag: child.text or "" for child in root}


def anonymous_s3(endpoint_url: str) -> Any:
    """A boto3 client that signs nothing: what the public internet sends."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        config=Config(
            signature_version=UNSIGNED,
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
        ),
    )


def new_bucket(s3: Any, label: str, **params: Any) -> str:
    """Create a bucket with a fresh name (names are global in the region)."""
    name = unique(label)
    s3.create_bucket(Bucket=name, **params)
    return name


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def multipart_etag(parts: list[bytes]) -> str:
    """S3's ETag for a completed upload: md5 of the parts' binary md5s, then `-N`."""
    digests = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
    return f'"{md5_hex(digests)}-{len(parts)}"'
