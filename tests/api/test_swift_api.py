"""Swift v1 on the OpenStack listener: accounts, containers, objects, and the same bytes as S3.

Every request goes through the real platform (identity tokens, the policy table, the
object store); only the clock is the tests'.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from typing import Any

import pytest

from souverain.objectstore.swift.expirer import Expirer

from .support import S3, Cloud, Member


class Swift:
    """Requests to one account as one member (or anyone, with `token=""`)."""

    def __init__(self, cloud: Cloud, member: Member, account: str | None = None) -> None:
        self.client = cloud.client
        self.token = member.token
        self.base = f"/object-storage/v1/AUTH_{account or member.project_id}"

    def __call__(
        self, method: str, path: str = "", body: bytes = b"", token: str | None = None, **kw: Any
    ) -> Any:
        headers = dict(kw.pop("headers", {}))
        token = self.token if token is None else token
        if token:
            headers["X-Auth-Token"] = token
        url = self.base + (f"/{path}" if path else "")
        return self.client.request(method, url, content=body, headers=headers, **kw)


@pytest.fixture
def alice(cloud: Cloud) -> Member:
    return cloud.member("member")


@pytest.fixture
def swift(cloud: Cloud, alice: Member) -> Swift:
    return Swift(cloud, alice)


def test_catalog_names_the_callers_own_account(cloud: Cloud, alice: Member) -> None:
    token = cloud.get("/v3/auth/catalog", token=alice.token).json()["catalog"]
    urls = [e["url"] for s in token if s["type"] == "object-store" for e in s["endpoints"]]
    assert urls and all(u.endswith(f"/object-storage/v1/AUTH_{alice.project_id}") for u in urls)


def test_info_lists_what_is_implemented(cloud: Cloud) -> None:
    info = cloud.client.get("/object-storage/info")
    assert info.status_code == 200
    body = info.json()
    assert {"swift", "tempurl", "slo", "formpost", "bulk_delete", "account_quotas"} <= set(body)
    assert "container_sync" not in body  # staticweb: see test_swift_staticweb


def test_container_and_object_round_trip_with_swift_headers(swift: Swift) -> None:
    created = swift("PUT", "Photos-2026")
    assert created.status_code == 201
    assert created.headers["x-trans-id"].startswith("tx")
    assert swift("PUT", "Photos-2026").status_code == 202
    put = swift("PUT", "Photos-2026/a/b.txt", b"hello", headers={"X-Object-Meta-Color": "blue"})
    assert put.status_code == 201
    assert put.headers["etag"] == hashlib.md5(b"hello").hexdigest()
    got = swift("GET", "Photos-2026/a/b.txt")
    assert got.content == b"hello"
    assert got.headers["x-object-meta-color"] == "blue"
    assert got.headers["content-type"].startswith("text/plain")
    assert float(got.headers["x-timestamp"]) > 0
    ranged = swift("GET", "Photos-2026/a/b.txt", headers={"Range": "bytes=1-3"})
    assert ranged.status_code == 206 and ranged.content == b"ell"
    etag = got.headers["etag"]
    assert swift("GET", "Photos-2026/a/b.txt", headers={"If-None-Match": etag}).status_code == 304
    head = swift("HEAD", "Photos-2026")
    assert head.headers["x-container-object-count"] == "1"
    assert head.headers["x-container-bytes-used"] == "5"
    account = swift("HEAD")
    assert account.status_code == 204 and account.headers["x-account-container-count"] == "1"
    assert swift("DELETE", "Photos-2026").status_code == 409
    assert swift("DELETE", "Photos-2026/a/b.txt").status_code == 204
    assert swift("GET", "Photos-2026/a/b.txt").status_code == 404
    assert swift("DELETE", "Photos-2026").status_code == 204


def test_listings_in_text_json_and_xml_with_markers(swift: Swift) -> None:
    swift("PUT", "c")
    for name in ("a", "b/1", "b/2", "c", "d"):
        swift("PUT", f"c/{name}", b"x")
    text = swift("GET", "c", params={"delimiter": "/"})
    assert text.text.splitlines() == ["a", "b/", "c", "d"]
    window = swift("GET", "c", params={"marker": "a", "end_marker": "d", "format": "json"})
    assert [o["name"] for o in window.json()] == ["b/1", "b/2", "c"]
    assert set(window.json()[0]) == {"name", "hash", "bytes", "content_type", "last_modified"}
    assert swift("GET", "c", params={"limit": "0"}).status_code == 204
    assert swift("GET", "c", params={"limit": "2", "reverse": "true"}).text.split() == ["d", "c"]
    xml = swift("GET", "c", params={"format": "xml", "prefix": "b/"})
    assert xml.text.count("<object>") == 2 and xml.headers["content-type"].startswith(
        "application/xml"
    )
    assert swift("GET", "c", params={"limit": "10001"}).status_code == 412
    accounts = swift("GET", "", params={"format": "json"}).json()
    assert accounts == [
        {"name": "c", "count": 5, "bytes": 5, "last_modified": accounts[0]["last_modified"]}
    ]


def test_metadata_set_removed_and_refused_over_limits(swift: Swift) -> None:
    swift("PUT", "m", headers={"X-Container-Meta-Owner": "ops"})
    swift("POST", "m", headers={"X-Container-Meta-Team": "a", "X-Remove-Container-Meta-Owner": "x"})
    head = swift("HEAD", "m").headers
    assert head["x-container-meta-team"] == "a" and "x-container-meta-owner" not in head
    assert swift("POST", "", headers={"X-Account-Meta-Book": "k"}).status_code == 204
    assert swift("HEAD").headers["x-account-meta-book"] == "k"
    too_long = swift("POST", "m", headers={"X-Container-Meta-Big": "v" * 300})
    assert too_long.status_code == 400
    swift("PUT", "m/o", b"1")
    assert swift("POST", "m/o", headers={"X-Object-Meta-A": "1"}).status_code == 202
    swift("POST", "m/o", headers={"X-Object-Meta-B": "2"})
    head = swift("HEAD", "m/o").headers
    assert head["x-object-meta-b"] == "2" and "x-object-meta-a" not in head


def test_hostile_names_get_swift_errors_and_leave_nothing(swift: Swift) -> None:
    assert swift("PUT", "x" * 257).status_code == 400
    swift("PUT", "h")
    assert swift("PUT", "h/" + "o" * 1025, b"1").status_code == 400
    # a flat name, never a path on disk: `..` is kept as written and reaches nothing else
    assert swift("PUT", "h/a/%2E%2E/%2E%2E/b", b"1").status_code == 201
    assert swift("GET", "h/a/%2E%2E/%2E%2E/b").content == b"1"
    assert swift("GET", "h", params={"format": "json"}).json()[0]["name"] == "a/../../b"
    swift("DELETE", "h/a/%2E%2E/%2E%2E/b")
    assert swift("PUT", "h/%00", b"1").status_code == 400
    many = {f"X-Object-Meta-K{i}": "v" for i in range(100)}
    assert swift("PUT", "h/many", b"1", headers=many).status_code == 400
    assert swift("GET", "h", params={"format": "json"}).json() == []
    assert swift("GET", "", token="").status_code == 401
    bad = Swift.__new__(Swift)
    bad.client, bad.token, bad.base = swift.client, swift.token, "/object-storage/v1/nope"
    assert bad("GET").status_code == 404


def test_copy_by_header_and_by_method(swift: Swift) -> None:
    swift("PUT", "s")
    swift("PUT", "d")
    swift("PUT", "s/o", b"data", headers={"X-Object-Meta-K": "v"})
    copied = swift("PUT", "d/o", headers={"X-Copy-From": "s/o", "Content-Length": "0"})
    assert copied.status_code == 201 and copied.headers["x-copied-from"] == "s/o"
    assert swift("GET", "d/o").headers["x-object-meta-k"] == "v"
    again = swift("COPY", "s/o", headers={"Destination": "d/p"})
    assert again.status_code == 201 and swift("GET", "d/p").content == b"data"


def test_expired_objects_are_gone(swift: Swift) -> None:
    swift("PUT", "e")
    swift("PUT", "e/o", b"1", headers={"X-Delete-At": "1900000000"})
    assert swift("HEAD", "e/o").headers["x-delete-at"] == "1900000000"
    assert swift("PUT", "e/p", b"1", headers={"X-Delete-At": "100"}).status_code == 400
    assert swift("PUT", "e/q", b"1", headers={"X-Delete-After": "0"}).status_code == 201
    assert swift("GET", "e/q").status_code == 404
    assert [o["name"] for o in swift("GET", "e", params={"format": "json"}).json()] == ["e/o"[2:]]


def test_container_quotas_refuse_with_413(swift: Swift) -> None:
    swift(
        "PUT",
        "q",
        headers={"X-Container-Meta-Quota-Bytes": "4", "X-Container-Meta-Quota-Count": "2"},
    )
    assert swift("PUT", "q/big", b"12345").status_code == 413
    assert swift("PUT", "q/a", b"1").status_code == 201
    assert swift("PUT", "q/b", b"1").status_code == 201
    assert swift("PUT", "q/c", b"1").status_code == 413
    assert swift("HEAD", "q").headers["x-container-object-count"] == "2"


def test_account_quota_is_set_by_a_reseller_only(cloud: Cloud, swift: Swift, alice: Member) -> None:
    refused = swift("POST", "", headers={"X-Account-Meta-Quota-Bytes": "3"})
    assert refused.status_code == 403
    reseller = cloud.member("ResellerAdmin")
    assert (
        swift(
            "POST", "", token=reseller.token, headers={"X-Account-Meta-Quota-Bytes": "3"}
        ).status_code
        == 204
    )
    swift("PUT", "aq")
    assert swift("PUT", "aq/o", b"1234").status_code == 413
    assert swift("PUT", "aq/o", b"123").status_code == 201
    swift("POST", "", token=reseller.token, headers={"X-Remove-Account-Meta-Quota-Bytes": "x"})
    assert swift("PUT", "aq/p", b"1234").status_code == 201


def test_static_large_object_put_get_and_delete(swift: Swift) -> None:
    swift("PUT", "slo")
    swift("PUT", "slo/s1", b"a" * 70000)
    swift("PUT", "slo/s2", b"bc")
    manifest = [
        {"path": "/slo/s1", "etag": hashlib.md5(b"a" * 70000).hexdigest(), "size_bytes": 70000},
        {"path": "/slo/s2", "etag": None, "size_bytes": None},
    ]
    put = swift(
        "PUT", "slo/big", json.dumps(manifest).encode(), params={"multipart-manifest": "put"}
    )
    assert put.status_code == 201 and put.headers["etag"].startswith('"')
    got = swift("GET", "slo/big")
    assert got.content == b"a" * 70000 + b"bc" and got.headers["x-static-large-object"] == "True"
    listed = swift("GET", "slo/big", params={"multipart-manifest": "get"}).json()
    assert [s["name"] for s in listed] == ["/slo/s1", "/slo/s2"]
    bad = [{"path": "/slo/s2", "etag": "0" * 32}]
    assert (
        swift(
            "PUT", "slo/bad", json.dumps(bad).encode(), params={"multipart-manifest": "put"}
        ).status_code
        == 400
    )
    gone = swift("DELETE", "slo/big", params={"multipart-manifest": "delete"})
    assert gone.status_code == 204
    assert swift("HEAD", "slo").headers["x-container-object-count"] == "0"


def test_dynamic_large_object_reads_its_segments(swift: Swift) -> None:
    swift("PUT", "dlo")
    for i in range(3):
        swift("PUT", f"dlo/big/{i}", f"part{i}".encode())
    swift("PUT", "dlo/big", b"", headers={"X-Object-Manifest": "dlo/big/"})
    head = swift("HEAD", "dlo/big")
    assert head.headers["etag"].startswith('"') and head.headers["content-length"] == "15"
    assert swift("GET", "dlo/big").content == b"part0part1part2"


def test_versions_location_keeps_and_restores(swift: Swift) -> None:
    swift("PUT", "old")
    swift("PUT", "cur", headers={"X-Versions-Location": "old"})
    assert swift("HEAD", "cur").headers["x-versions-location"] == "old"
    swift("PUT", "cur/o", b"one")
    swift("PUT", "cur/o", b"two")
    assert swift("HEAD", "old").headers["x-container-object-count"] == "1"
    assert swift("DELETE", "cur/o").status_code == 204
    assert swift("GET", "cur/o").content == b"one"
    assert swift("HEAD", "old").headers["x-container-object-count"] == "0"
    swift("DELETE", "cur/o")
    assert swift("GET", "cur/o").status_code == 404


def test_s3_and_swift_share_buckets_and_bytes(cloud: Cloud, swift: Swift, alice: Member) -> None:
    s3 = S3(cloud, alice)
    assert s3.send("PUT", "/shared-bucket").status_code == 200
    assert (
        s3.send("PUT", "/shared-bucket/k", b"from s3", **{"x-amz-meta-tint": "red"}).status_code
        == 200
    )
    got = swift("GET", "shared-bucket/k")
    assert got.content == b"from s3" and got.headers["x-object-meta-tint"] == "red"
    swift("PUT", "shared-bucket/w", b"from swift", headers={"X-Object-Meta-Tint": "green"})
    back = s3.send("GET", "/shared-bucket/w")
    assert back.content == b"from swift" and back.headers["x-amz-meta-tint"] == "green"


def test_bulk_delete_removes_objects_then_containers(swift: Swift) -> None:
    swift("PUT", "bulk")
    swift("PUT", "bulk/a b", b"1")
    swift("PUT", "bulk/c", b"2")
    body = b"/bulk/a%20b\n/bulk/c\n/bulk/missing\n/bulk\n"
    done = swift(
        "DELETE", "", body, params={"bulk-delete": ""}, headers={"Accept": "application/json"}
    )
    assert done.status_code == 200
    assert done.json()["Number Deleted"] == 3 and done.json()["Number Not Found"] == 1
    assert swift("HEAD", "bulk").status_code == 404
    swift("PUT", "full")
    swift("PUT", "full/o", b"1")
    kept = swift("POST", "", b"/full\n", params={"bulk-delete": ""})
    assert "409 Conflict" in kept.text and swift("HEAD", "full").status_code == 204
    assert swift("DELETE", "").status_code == 405


def test_the_expirer_removes_due_objects_for_s3_too(
    cloud: Cloud, swift: Swift, alice: Member
) -> None:
    swift("PUT", "exp")
    swift("PUT", "exp/soon", b"1", headers={"X-Delete-At": str(int(time.time()) + 60)})
    swift("PUT", "exp/kept", b"1", headers={"X-Delete-At": str(int(time.time()) + 60)})
    swift("POST", "exp/kept", headers={"X-Object-Meta-A": "b"})  # no X-Delete-At: kept for good
    expirer = Expirer(cloud.platform.objectstore)
    assert expirer.expire_due(time.time()) == 0
    assert expirer.expire_due(time.time() + 120) == 1
    s3 = S3(cloud, alice)
    assert s3.send("GET", "/exp/soon").status_code == 404
    assert s3.send("GET", "/exp/kept").status_code == 200
    assert swift("HEAD", "exp").headers["x-container-object-count"] == "1"


def test_paths_and_methods_no_route_takes_answer_in_swift_shape(cloud: Cloud, swift: Swift) -> None:
    missing = cloud.client.get("/object-storage/v2/whatever")
    assert missing.status_code == 404 and missing.text.startswith("<html><h1>")
    assert swift("PATCH", "c/o").status_code == 405


def test_extract_archive_makes_containers_and_objects(swift: Swift) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (
            ("photos/a.jpg", b"jpeg"),
            ("photos/d/b.txt", b"x" * 70000),
            ("docs/c", b""),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    done = swift(
        "PUT",
        "",
        buffer.getvalue(),
        params={"extract-archive": "tar.gz"},
        headers={"Accept": "application/json"},
    )
    assert done.status_code == 200 and done.json()["Number Files Created"] == 3
    assert swift("GET", "photos/d/b.txt").content == b"x" * 70000
    assert swift("HEAD", "photos/a.jpg").headers["content-type"] == "image/jpeg"
    assert swift("GET", "docs").text == "c\n"
    bad = swift("PUT", "", b"not a tar", params={"extract-archive": "tar"})
    assert bad.status_code == 400
    assert swift("PUT", "", b"", params={"extract-archive": "zip"}).status_code == 400


def test_symlinks_follow_their_target_until_it_goes(swift: Swift) -> None:
    swift("PUT", "links")
    swift("PUT", "links/file.txt", b"target bytes")
    link = {"X-Symlink-Target": "links/file.txt", "Content-Type": "application/symlink"}
    assert swift("PUT", "links/link", b"", headers=link).status_code == 201
    assert swift("GET", "links/link").content == b"target bytes"
    raw = swift("GET", "links/link", params={"symlink": "get"})
    assert raw.content == b"" and raw.headers["x-symlink-target"] == "links/file.txt"
    listed = {o["name"]: o for o in swift("GET", "links", params={"format": "json"}).json()}
    assert listed["link"]["symlink_path"].endswith("/links/file.txt")
    assert swift("PUT", "links/bad", b"x", headers=link).status_code == 400
    assert (
        swift("PUT", "links/bad", b"", headers={"X-Symlink-Target": "nocontainer"}).status_code
        == 412
    )
    swift("DELETE", "links/file.txt")
    assert swift("GET", "links/link").status_code == 404


def test_healthcheck_and_a_crossdomain_policy_granting_no_site(cloud: Cloud) -> None:
    health = cloud.client.get("/object-storage/healthcheck")
    assert health.status_code == 200 and health.text == "OK"
    policy = cloud.client.get("/object-storage/crossdomain.xml")
    assert policy.text.endswith("</cross-domain-policy>") and "allow-access-from" not in policy.text
