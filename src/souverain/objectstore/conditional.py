"""Conditional writes: If-None-Match: * (create only) and If-Match (replace only that ETag)
on PutObject and CompleteMultipartUpload.

A condition is checked twice: before any byte of the body is taken (412, or 404 when
If-Match names a key that is not there) and again in the transaction that records the
version. Failing only the second time means another write or delete of the key won the
race meanwhile: S3's 409 ConditionalRequestConflict, after which the client re-reads
the ETag and retries. Knows nothing of HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from souverain.objectstore.errors import S3Error

FAILED = "At least one of the pre-conditions you specified did not hold"
CONFLICT = (
    "A conflicting operation occurred. If using PutObject you can retry the request. If "
    "using multipart upload you should initiate another CreateMultipartUpload request and "
    "re-upload each part."
)


@dataclass(frozen=True)
class WriteCondition:
    """`absent`: the key must have no live object. `etag`: its live object must have this
    ETag ("*": any live object)."""

    absent: bool = False
    etag: str | None = None


def failure(latest: Any, condition: WriteCondition) -> str | None:
    """The S3 error code a condition fails with against the key's latest row (None: holds)."""
    exists = latest is not None and not latest.is_delete_marker
    if condition.absent and exists:
        return "PreconditionFailed"
    if condition.etag is not None:
        if not exists:
            return "NoSuchKey"
        if condition.etag != "*" and condition.etag.strip().strip('"') != latest.etag:
            return "PreconditionFailed"
    return None


def refuse(code: str, resource: str) -> S3Error:
    if code == "NoSuchKey":
        return S3Error("NoSuchKey", "The specified key does not exist.", resource)
    return S3Error(code, FAILED if code == "PreconditionFailed" else CONFLICT, resource)
