"""What the plain S3 paths cost in SQL: a warm GET or HEAD is one statement, and a bucket
with Object Lock, lifecycle rules, a public access block, ACL grants and a policy costs
no more per PUT, GET or HEAD than a (versioned, as locked ones are) bucket with none (their settings ride on the cached
bucket row). Statements are counted on the platform's engine.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from .support import S3, Cloud

BODY = b"x" * 4096


@contextmanager
def counting(cloud: Cloud) -> Iterator[list[str]]:
    engine = cloud.platform.db.engine
    seen: list[str] = []

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split())[:120])

    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)


def md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def configure(s3: S3, bucket: str, member_project: str) -> None:
    """Every per-bucket setting this branch added, on one bucket."""
    documents = {
        "lifecycle": b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix>tmp/</Prefix>"
        b"</Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule>"
        b"</LifecycleConfiguration>",
        "publicAccessBlock": b"<PublicAccessBlockConfiguration><BlockPublicAcls>true"
        b"</BlockPublicAcls></PublicAccessBlockConfiguration>",
        "policy": json.dumps(
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": member_project,
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            }
        ).encode(),
    }
    for sub, body in documents.items():
        done = s3.send("PUT", f"/{bucket}?{sub}", body, **{"content-md5": md5(body)})
        assert done.status_code in (200, 204), done.text
    grant = {"x-amz-grant-read": f'id="{member_project}"'}
    assert s3.send("PUT", f"/{bucket}?acl", **grant).status_code == 200


def costs(cloud: Cloud, s3: S3, bucket: str) -> dict[str, list[str]]:
    for _ in range(2):  # warm: bucket cache, credential cache, compiled statements
        s3.send("PUT", f"/{bucket}/k", BODY)
        s3.send("GET", f"/{bucket}/k")
        s3.send("HEAD", f"/{bucket}/k")
    found = {}
    for method in ("PUT", "GET", "HEAD"):
        with counting(cloud) as seen:
            done = s3.send(method, f"/{bucket}/k", BODY if method == "PUT" else b"")
        assert done.status_code == 200, done.text
        found[method] = seen
    return found


def test_settings_add_no_statement_to_put_get_and_head(cloud: Cloud) -> None:
    member = cloud.member()
    s3 = S3(cloud, member)
    plain, configured = cloud.unique("plain"), cloud.unique("configured")
    assert s3.send("PUT", f"/{plain}").status_code == 200
    versioning = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
    assert s3.send("PUT", f"/{plain}?versioning", versioning).status_code == 200  # as locked
    made = s3.send("PUT", f"/{configured}", **{"x-amz-bucket-object-lock-enabled": "true"})
    assert made.status_code == 200, made.text
    configure(s3, configured, member.project_id)

    bare, rich = costs(cloud, s3, plain), costs(cloud, s3, configured)

    assert len(bare["GET"]) == 1, bare["GET"]
    assert len(bare["HEAD"]) == 1, bare["HEAD"]
    for method in ("PUT", "GET", "HEAD"):
        assert len(rich[method]) == len(bare[method]), (method, bare[method], rich[method])
