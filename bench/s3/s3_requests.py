"""The bench's own S3 requests, outside the timed load: buckets, the check before a run,
filling the listing bucket, and walking it page by page (that walk is timed here).

Plain http.client with presigned URLs, standard library only.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sigv4 import Presigner
from target import Target


class CheckFailed(RuntimeError):
    """A server does not answer the benchmarked requests correctly."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def describe(self) -> str:
        return f"HTTP {self.status}: {self.body[:300].decode(errors='replace')}"


def send(
    connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> Reply:
    connection.request(method, path, body=body)
    response = connection.getresponse()
    data = response.read()
    return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


def connect(target: Target, timeout_s: float = 120.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(target.host, timeout=timeout_s)


def create_bucket(target: Target, bucket: str) -> None:
    connection = connect(target)
    reply = send(connection, "PUT", target.presigner().url_path("PUT", f"/{bucket}"), b"")
    connection.close()
    # 409 BucketAlreadyOwnedByYou is fine: the bucket is there and ours.
    if reply.status not in (200, 409):
        raise CheckFailed(f"{target.name}: create bucket {bucket} -> {reply.describe()}")


def check_s3(target: Target, bucket: str, body: bytes) -> None:
    """PUT, GET, HEAD and list one object exactly as the load will; raise CheckFailed if off.

    Departures that do not stop the bench (a forged signature accepted) are
    added to the target's observations.
    """
    signer = target.presigner()
    connection = connect(target)
    key = f"/{bucket}/check/object"

    def expect(what: str, reply: Reply, status: int = 200) -> Reply:
        if reply.status != status:
            raise CheckFailed(f"{target.name}: {what} -> {reply.describe()}")
        return reply

    expect("PUT 4 KiB object", send(connection, "PUT", signer.url_path("PUT", key), body))
    got = expect("GET it back", send(connection, "GET", signer.url_path("GET", key)))
    if got.body != body:
        raise CheckFailed(f"{target.name}: GET returned {len(got.body)} bytes, not what was PUT")
    head = expect("HEAD it", send(connection, "HEAD", signer.url_path("HEAD", key)))
    if head.headers.get("content-length") != str(len(body)):
        raise CheckFailed(
            f"{target.name}: HEAD Content-Length {head.headers.get('content-length')!r}, "
            f"expected {len(body)}"
        )
    listing = expect(
        "ListObjectsV2",
        send(connection, "GET", signer.url_path("GET", f"/{bucket}", _list_query(1000))),
    )
    if b"<Key>check/object</Key>" not in listing.body:
        raise CheckFailed(f"{target.name}: ListObjectsV2 does not show the object just PUT")

    forged = signer.url_path("GET", key)[:-4] + "0000"
    reply = send(connection, "GET", forged)
    if reply.status != 403:
        target.observations.append(
            f"a GET with a forged signature got HTTP {reply.status}, not 403 "
            "(signatures are not checked)"
        )
    connection.close()


def _list_query(max_keys: int, token: str | None = None) -> dict[str, str]:
    query = {"list-type": "2", "max-keys": str(max_keys)}
    if token is not None:
        query["continuation-token"] = token
    return query


def list_key(index: int) -> str:
    return f"list/{index:07d}"


def populate(
    target: Target,
    bucket: str,
    keys: Iterator[str],
    body: bytes,
    connections: int,
    budget_s: float,
) -> tuple[int, float]:
    """PUT `body` under each key with `connections` keep-alive connections, until the keys
    or the time budget run out. Returns (objects written, seconds taken)."""
    signer = target.presigner()
    lock = threading.Lock()
    written = [0]
    failures: list[str] = []
    began = time.monotonic()
    deadline = began + budget_s

    def next_key() -> str | None:
        with lock:
            if failures or time.monotonic() > deadline:
                return None
            return next(keys, None)

    def worker() -> None:
        connection = connect(target)
        try:
            while (key := next_key()) is not None:
                reply = send(connection, "PUT", signer.url_path("PUT", f"/{bucket}/{key}"), body)
                if reply.status != 200:
                    failures.append(f"PUT {key} -> {reply.describe()}")
                    return
                with lock:
                    written[0] += 1
        except (OSError, http.client.HTTPException) as error:
            failures.append(f"{type(error).__name__}: {error}")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise CheckFailed(f"{target.name}: filling {bucket}: {failures[0]}")
    return written[0], time.monotonic() - began


def numbered_keys(count: int, start: int = 0) -> Iterator[str]:
    return (list_key(i) for i in range(start, start + count))


_TOKEN = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")
_KEY_COUNT = re.compile(rb"<KeyCount>(\d+)</KeyCount>")
_TRUNCATED = re.compile(rb"<IsTruncated>true</IsTruncated>")


def count_keys(target: Target, bucket: str, max_keys: int = 1000) -> int:
    return sum(keys for keys, _ in walk_listing(target, bucket, max_keys))


def walk_listing(
    target: Target, bucket: str, max_keys: int, budget_s: float = float("inf")
) -> list[tuple[int, float]]:
    """ListObjectsV2 through the bucket: (keys on the page, seconds) per page, until the
    last page or until `budget_s` has passed.

    The time covers sending the request and reading the whole answer; the URL
    for the next page is signed outside it.
    """
    deadline = time.monotonic() + budget_s
    signer: Presigner = target.presigner()
    connection = connect(target)
    pages = []
    token: str | None = None
    while True:
        path = signer.url_path("GET", f"/{bucket}", _list_query(max_keys, token))
        began = time.perf_counter()
        reply = send(connection, "GET", path)
        elapsed = time.perf_counter() - began
        if reply.status != 200:
            raise CheckFailed(f"{target.name}: ListObjectsV2 page {len(pages) + 1}: "
                              f"{reply.describe()}")  # fmt: skip
        count = _KEY_COUNT.search(reply.body)
        if count is None:
            raise CheckFailed(f"{target.name}: ListObjectsV2 answer without KeyCount")
        pages.append((int(count.group(1)), elapsed))
        if not _TRUNCATED.search(reply.body) or time.monotonic() > deadline:
            break
        found = _TOKEN.search(reply.body)
        if found is None:
            raise CheckFailed(f"{target.name}: truncated listing without NextContinuationToken")
        token = _unescape_xml(found.group(1).decode())
    connection.close()
    return pages


def _unescape_xml(text: str) -> str:
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'")):
        text = text.replace(entity, char)
    return text.replace("&amp;", "&")
