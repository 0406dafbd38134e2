"""The object store against hostile keys and requests: it says no clearly, and stays whole.

Keys that look like paths must stay names: they round-trip, and no file is ever named after
them. Bodies too big, XML that expands or reaches for files, forged or stale signatures,
other tenants' names, lying Content-Lengths and retired signing schemes each get a precise
S3 error, never a crash, a hang or somebody else's bytes. boto3 sends what it can; the rest
goes through botocore's own signers and httpx or a raw socket.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import select
import socket
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from botocore.auth import SIGV4_TIMESTAMP, HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.e2e.conftest import REGION, Cloud, CloudFactory, unique

pytestmark = pytest.mark.e2e

KEY_LIMIT = 1024
HOSTILE_KEYS = (
    "../../etc/passwd",
    "a//b",
    "/leading",
    "..",
    ".",
    "a/./b/../c",
    "clé/été/日本語",
    "with spaces  and\ttab",
    "%",
    "%2F",
    "+",
    "a+b%20c",
    "?query=not&really",
    "#fragment",
    "trailing/",
    "é" * (KEY_LIMIT // 2),  # 1024 bytes of two-byte characters
    "k" * KEY_LIMIT,
)
# Pieces of those keys that must never turn up as a file or directory name.
KEY_MARKERS = ("passwd", "etc", "leading", "clé", "été", "日本語", " ", "%", "+", "?", "#", "é")
BLOB_PATH = re.compile(r"^objects/blobs/([0-9a-f]{2})/\1[0-9a-f]{30}$")


def _billion_laughs() -> str:
    """A DTD whose last entity expands to 10**9 `lol`s: the classic XML bomb."""
    entities = ['<!ENTITY lol0 "lol">']
    for level in range(1, 10):
        entities.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    return '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n' + "\n".join(entities) + "\n]>\n"


BILLION_LAUGHS = _billion_laughs()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def error_code(response: httpx.Response | RawResponse) -> str:
    found = re.search(rb"<Code>([^<]*)</Code>", response.content)
    return found[1].decode() if found else ""


@dataclass
class RawResponse:
    status: int
    content: bytes


class DatedSigV4(S3SigV4Auth):
    """botocore's own S3 signer, with the request time chosen by the caller."""

    def __init__(self, credentials: Credentials, when: dt.datetime) -> None:
        super().__init__(credentials, "s3", REGION)
        self.when = when

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self.when.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, signature)


@dataclass
class Account:
    """A tenant's keys, the endpoint, a boto3 client and a bucket of its own."""

    access: str
    secret: str
    url: str
    boto: Any
    bucket: str

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.access, self.secret)

    def url_for(self, key: str = "", bucket: str | None = None, query: str = "") -> str:
        path = f"/{bucket or self.bucket}/{urllib.parse.quote(key, safe='/')}"
        return f"{self.url}{path}{'?' + query if query else ''}"

    def signed_headers(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        when: dt.datetime | None = None,
        sign_payload: bool = True,
    ) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
        if not sign_payload:
            request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        DatedSigV4(self.credentials, when or dt.datetime.now(dt.UTC)).add_auth(request)
        return dict(request.headers.items())

    def send(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        when: dt.datetime | None = None,
    ) -> httpx.Response:
        signed = self.signed_headers(method, url, body, headers, when)
        return httpx.request(method, url, content=body, headers=signed, timeout=30)


def make_account(cloud: Cloud, label: str) -> Account:
    tenant = cloud.make_tenant(label)
    access, secret = cloud.ec2_credentials(tenant)
    client = cloud.s3(tenant)
    bucket = unique(label)
    client.create_bucket(Bucket=bucket)
    return Account(access, secret, cloud.s3_url, client, bucket)


@pytest.fixture(scope="module")
def alice(cloud: Cloud) -> Account:
    return make_account(cloud, "alice")


@pytest.fixture(scope="module")
def mallory(cloud: Cloud) -> Account:
    return make_account(cloud, "mallory")


def server_responds(account: Account) -> None:
    """The server still answers at once: nothing it was sent has wedged it."""
    started = time.monotonic()
    account.boto.head_bucket(Bucket=account.bucket)
    assert time.monotonic() - started < 5


def read_response(stream: Any) -> RawResponse | None:
    """One HTTP/1.1 response off a buffered socket file; None at end of stream."""
    status_line = stream.readline()
    if not status_line:
        return None
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return RawResponse(int(status_line.split()[1]), stream.read(length))


def raw_exchange(
    url: str,
    head: bytes,
    pieces: Iterable[bytes] = (),
    responses: int = 1,
    half_close: bool = False,
) -> list[RawResponse]:
    """Send bytes as given; stop sending as soon as the server answers; read its answers.

    Fewer responses than asked for means the server closed the connection.
    """
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname is not None
    with socket.create_connection((parsed.hostname, parsed.port or 80), timeout=30) as sock:
        try:
            sock.sendall(head)
            for piece in pieces:
                if select.select([sock], [], [], 0)[0]:
                    break  # an early answer: the rest of the body is not wanted
                sock.sendall(piece)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answers: list[RawResponse] = []
        with sock.makefile("rb") as stream:
            try:
                while len(answers) < responses:
                    answer = read_response(stream)
                    if answer is None:
                        break
                    answers.append(answer)
            except ConnectionResetError:
                pass
        return answers


def request_head(
    method: str, url: str, headers: dict[str, str], length: int | None = None
) -> bytes:
    """The request line and headers, with a Content-Length when one is given."""
    parsed = urllib.parse.urlsplit(url)
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parsed.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def assert_no_key_on_disk(cloud: Cloud) -> None:
    """Under the data dir, object bytes live only as blobs named by id; nothing by key."""
    data_dir = cloud.data_dir
    for path in cloud.workdir.rglob("*"):
        relative = path.relative_to(cloud.workdir).as_posix()
        named = [m for m in KEY_MARKERS if m in relative]
        assert not named, f"{relative} is named after an object key ({named})"
    objects = data_dir / "objects"
    assert list((objects / "tmp").iterdir()) == [], "objects/tmp is not empty at rest"
    for path in objects.rglob("*"):
        relative = path.relative_to(data_dir).as_posix()
        if path.is_dir():
            assert re.fullmatch(r"objects/(tmp|blobs(/[0-9a-f]{2})?)", relative), relative
        else:
            assert BLOB_PATH.match(relative), f"unexpected file {relative}"


# ---------------------------------------------------------------------- keys


def test_hostile_keys_are_plain_names_that_round_trip(cloud: Cloud, alice: Account) -> None:
    bucket = unique("keys")
    alice.boto.create_bucket(Bucket=bucket)
    for key in HOSTILE_KEYS:
        alice.boto.put_object(Bucket=bucket, Key=key, Body=key.encode() + b"|bytes")

    listed = [
        item["Key"]
        for page in alice.boto.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    assert listed == sorted(HOSTILE_KEYS), listed
    v1 = [item["Key"] for item in alice.boto.list_objects(Bucket=bucket)["Contents"]]
    assert v1 == sorted(HOSTILE_KEYS)
    for key in HOSTILE_KEYS:
        one = alice.boto.list_objects_v2(Bucket=bucket, Prefix=key)
        assert key in [item["Key"] for item in one["Contents"]], key
        body = alice.boto.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == key.encode() + b"|bytes", key

    # `..` is a name, not a way up: `a/./b/../c` is not `a/c`, and `a//b` is not `a/b`.
    for alias in ("a/c", "a/b", "etc/passwd", "leading"):
        with pytest.raises(ClientError) as missing:
            alice.boto.head_object(Bucket=bucket, Key=alias)
        assert missing.value.response["Error"]["Code"] == "404", alias
    assert_no_key_on_disk(cloud)


def test_key_of_1025_bytes_is_too_long(alice: Account) -> None:
    for key in ("k" * (KEY_LIMIT + 1), "é" * (KEY_LIMIT // 2) + "k"):
        # boto3 sends `Expect: 100-continue` and, refused at once, never sends the body:
        # the next call, on the same pooled connection, must not be read as that body.
        with pytest.raises(ClientError) as refused:
            alice.boto.put_object(Bucket=alice.bucket, Key=key, Body=b"x")
        assert refused.value.response["Error"]["Code"] == "KeyTooLongError"
        with pytest.raises(ClientError) as refused:
            alice.boto.create_multipart_upload(Bucket=alice.bucket, Key=key)
        assert refused.value.response["Error"]["Code"] == "KeyTooLongError"
    assert alice.boto.head_bucket(Bucket=alice.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_keys_that_are_not_text_are_refused(alice: Account) -> None:
    invalid_utf8 = f"{alice.url}/{alice.bucket}/bad%FFkey"
    response = alice.send("PUT", invalid_utf8, b"x")
    assert response.status_code == 400 and error_code(response) == "InvalidURI", response.text
    nul = alice.url_for("nul\x00key")
    response = alice.send("PUT", nul, b"x")
    assert response.status_code == 400 and error_code(response) == "InvalidArgument", response.text


# ---------------------------------------------------------------------- request bodies


def delete_document(keys: Iterable[str]) -> bytes:
    objects = "".join(f"<Object><Key>{key}</Key></Object>" for key in keys)
    return f"<Delete>{objects}</Delete>".encode()


def test_oversized_xml_body_is_refused_before_it_is_read(alice: Account) -> None:
    body = delete_document(f"key-{i:07d}-{'x' * 40}" for i in range(30_000))
    assert len(body) > 2 * 1024 * 1024
    url = alice.url_for(query="delete=")
    headers = alice.signed_headers(
        "POST", url, body, {"Content-MD5": md5_b64(body)}, sign_payload=False
    )
    too_big = ("MaxMessageLengthExceeded", "EntityTooLarge")

    # Declared too big and waiting for 100 Continue: the answer comes without the body.
    head = request_head("POST", url, {**headers, "Expect": "100-continue"}, len(body))
    [answer] = raw_exchange(url, head)
    assert answer.status == 400 and error_code(answer) in too_big, answer

    # Sent anyway, all at once: an error too (or a closed connection), never a crash.
    answers = raw_exchange(url, request_head("POST", url, headers, len(body)), [body])
    assert all(a.status == 400 and error_code(a) in too_big for a in answers), answers

    # Not declared at all (chunked): the server stops reading at its limit.
    chunks = [
        b"%x\r\n%s\r\n" % (len(piece), piece)
        for piece in (body[i : i + 65536] for i in range(0, len(body), 65536))
    ]
    head = request_head("POST", url, {**headers, "Transfer-Encoding": "chunked"})
    [answer] = raw_exchange(url, head, [*chunks, b"0\r\n\r\n"])
    assert answer.status == 400 and error_code(answer) in too_big, answer
    server_responds(alice)


def test_xml_entity_expansion_and_external_entities_are_malformed_xml(alice: Account) -> None:
    bucket = unique("laughs")
    laughs = (
        BILLION_LAUGHS + "<CreateBucketConfiguration><LocationConstraint>&lol9;"
        "</LocationConstraint></CreateBucketConfiguration>"
    ).encode()
    response = alice.send("PUT", alice.url_for(bucket=bucket), laughs)
    assert response.status_code == 400 and error_code(response) == "MalformedXML", response.text
    with pytest.raises(ClientError) as missing:
        alice.boto.head_bucket(Bucket=bucket)
    assert missing.value.response["Error"]["Code"] == "404"

    alice.boto.put_object(Bucket=alice.bucket, Key="lol", Body=b"still here")
    laughs = (
        BILLION_LAUGHS + "<Delete><Object><Key>&lol9;</Key></Object>"
        "<Object><Key>lol</Key></Object></Delete>"
    ).encode()
    started = time.monotonic()
    response = alice.send(
        "POST", alice.url_for(query="delete="), laughs, {"Content-MD5": md5_b64(laughs)}
    )
    assert time.monotonic() - started < 5, "entity expansion took the server's time"
    assert response.status_code == 400 and error_code(response) == "MalformedXML", response.text
    assert alice.boto.get_object(Bucket=alice.bucket, Key="lol")["Body"].read() == b"still here"

    external = (
        b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<Tagging><TagSet><Tag><Key>k</Key><Value>&xxe;</Value></Tag></TagSet></Tagging>"
    )
    response = alice.send("PUT", alice.url_for("lol", query="tagging="), external)
    assert response.status_code == 400 and error_code(response) == "MalformedXML", response.text
    assert alice.boto.get_object_tagging(Bucket=alice.bucket, Key="lol")["TagSet"] == []
    server_responds(alice)


def test_body_shorter_than_content_length_is_incomplete_and_stores_nothing(
    cloud: Cloud, alice: Account
) -> None:
    url = alice.url_for("short-body")
    headers = alice.signed_headers("PUT", url, b"x" * 1000, sign_payload=False)
    head = request_head("PUT", url, headers, 1000)
    answers = raw_exchange(url, head, [b"x" * 400], half_close=True)
    # The client went quiet: there may be nobody left to tell, but if there is, say why.
    assert all(a.status == 400 and error_code(a) == "IncompleteBody" for a in answers), answers
    with pytest.raises(ClientError) as missing:
        alice.boto.head_object(Bucket=alice.bucket, Key="short-body")
    assert missing.value.response["Error"]["Code"] == "404"
    tmp = cloud.data_dir / "objects" / "tmp"
    deadline = time.monotonic() + 5  # the server notices the hang-up on its own time
    while list(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp.iterdir()) == [], "an abandoned upload left its bytes in objects/tmp"
    server_responds(alice)


def test_bytes_past_content_length_are_a_separate_request_without_the_signature(
    alice: Account,
) -> None:
    """HTTP frames a body by its Content-Length; what follows is the next request, unsigned."""
    alice.boto.put_object(Bucket=alice.bucket, Key="victim", Body=b"keep me")
    url = alice.url_for("long-body")
    payload = bytes(range(256)) * 4
    smuggled = request_head("DELETE", alice.url_for("victim"), {}, 0)
    sent = payload + smuggled

    # Signed over everything sent, declared shorter: the payload hash cannot match.
    headers = alice.signed_headers("PUT", url, sent)
    answers = raw_exchange(url, request_head("PUT", url, headers, len(payload)), [sent], 2)
    assert [(a.status, error_code(a)) for a in answers] == [
        (400, "XAmzContentSHA256Mismatch"),
        (403, "AccessDenied"),
    ], answers
    with pytest.raises(ClientError):
        alice.boto.head_object(Bucket=alice.bucket, Key="long-body")

    # An unsigned payload: the declared bytes are the object; the rest is refused alone.
    headers = alice.signed_headers("PUT", url, payload, sign_payload=False)
    answers = raw_exchange(url, request_head("PUT", url, headers, len(payload)), [sent], 2)
    assert [(a.status, error_code(a)) for a in answers] == [(200, ""), (403, "AccessDenied")]
    stored = alice.boto.get_object(Bucket=alice.bucket, Key="long-body")["Body"].read()
    assert stored == payload
    assert alice.boto.get_object(Bucket=alice.bucket, Key="victim")["Body"].read() == b"keep me"
    server_responds(alice)


# ---------------------------------------------------------------------- signatures


def test_forged_signature_is_refused(alice: Account) -> None:
    url = alice.url_for("forged")
    headers = alice.signed_headers("PUT", url, b"forged")
    signature = headers["Authorization"][-64:]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    headers["Authorization"] = headers["Authorization"][:-64] + flipped
    response = httpx.put(url, content=b"forged", headers=headers, timeout=30)
    assert response.status_code == 403, response.text
    assert error_code(response) == "SignatureDoesNotMatch"

    # Signed for other bytes than those sent: the payload hash gives it away.
    headers = alice.signed_headers("PUT", url, b"what was signed")
    response = httpx.put(url, content=b"what was sent!!", headers=headers, timeout=30)
    assert response.status_code == 400, response.text
    assert error_code(response) == "XAmzContentSHA256Mismatch"

    wrong_secret = Account(alice.access, "not-" + alice.secret, alice.url, None, alice.bucket)
    response = wrong_secret.send("PUT", url, b"forged")
    assert response.status_code == 403 and error_code(response) == "SignatureDoesNotMatch"
    unknown = Account("AKIAUNKNOWN0000000000", alice.secret, alice.url, None, alice.bucket)
    response = unknown.send("GET", alice.url_for())
    assert response.status_code == 403 and error_code(response) == "InvalidAccessKeyId"

    with pytest.raises(ClientError):
        alice.boto.head_object(Bucket=alice.bucket, Key="forged")


@pytest.mark.parametrize("offset_minutes", [-16, 16])
def test_request_sixteen_minutes_off_is_too_skewed(alice: Account, offset_minutes: int) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=offset_minutes)
    response = alice.send("GET", alice.url_for(), when=when)
    assert response.status_code == 403, response.text
    assert error_code(response) == "RequestTimeTooSkewed"
    # Fourteen minutes is within S3's fifteen.
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=offset_minutes * 14 // 16)
    assert alice.send("GET", alice.url_for(), when=when).status_code == 200


def test_presigned_url_valid_for_more_than_a_week_is_refused(alice: Account) -> None:
    alice.boto.put_object(Bucket=alice.bucket, Key="shared", Body=b"shared bytes")
    params = {"Bucket": alice.bucket, "Key": "shared"}
    week = 7 * 24 * 3600
    url = alice.boto.generate_presigned_url("get_object", Params=params, ExpiresIn=week + 1)
    response = httpx.get(url, timeout=30)
    assert response.status_code == 400, response.text
    assert error_code(response) == "AuthorizationQueryParametersError"
    assert b"604800" in response.content

    url = alice.boto.generate_presigned_url("get_object", Params=params, ExpiresIn=week)
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200 and response.content == b"shared bytes"


def test_sigv2_signed_requests_are_told_to_use_sigv4(alice: Account) -> None:
    alice.boto.put_object(Bucket=alice.bucket, Key="v2", Body=b"v2 bytes")
    url = alice.url_for("v2")
    request = AWSRequest(method="GET", url=url)
    HmacV1Auth(alice.credentials).add_auth(request)
    assert request.headers["Authorization"].startswith("AWS ")
    response = httpx.get(url, headers=dict(request.headers.items()), timeout=30)
    assert response.status_code == 400, response.text
    assert error_code(response) == "InvalidRequest"
    assert b"AWS4-HMAC-SHA256" in response.content

    request = AWSRequest(method="GET", url=url)
    HmacV1QueryAuth(alice.credentials, expires=300).add_auth(request)
    assert "Signature=" in request.url and "AWSAccessKeyId=" in request.url
    response = httpx.get(request.url, timeout=30)
    assert response.status_code == 400, response.text
    assert error_code(response) == "InvalidRequest"
    assert b"AWS4-HMAC-SHA256" in response.content
    assert b"v2 bytes" not in response.content


# ---------------------------------------------------------------------- other tenants


def test_another_tenants_bucket_is_access_denied_whatever_the_key(
    alice: Account, mallory: Account
) -> None:
    secret = b"alice's secret bytes"
    alice.boto.put_object(Bucket=alice.bucket, Key="private/report", Body=secret)
    upload_id = alice.boto.create_multipart_upload(Bucket=alice.bucket, Key="pending")["UploadId"]
    m = mallory.boto
    on_alice = {"Bucket": alice.bucket}
    report = {**on_alice, "Key": "private/report"}
    pending = {**on_alice, "Key": "pending", "UploadId": upload_id}
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("get_object", report),
        ("get_object", {**on_alice, "Key": "does/not/exist"}),
        ("get_object_tagging", report),
        ("put_object_tagging", {**report, "Tagging": {"TagSet": []}}),
        ("get_object_acl", report),
        ("list_objects_v2", on_alice),
        ("list_objects", on_alice),
        ("list_object_versions", on_alice),
        ("list_multipart_uploads", on_alice),
        ("list_parts", pending),
        ("put_object", {**on_alice, "Key": "planted", "Body": b"x"}),
        ("delete_object", report),
        ("create_multipart_upload", {**on_alice, "Key": "planted"}),
        ("upload_part", {**pending, "PartNumber": 1, "Body": b"x"}),
        ("complete_multipart_upload", {**pending, "MultipartUpload": {"Parts": []}}),
        ("abort_multipart_upload", pending),
        (
            "copy_object",
            {
                "Bucket": mallory.bucket,
                "Key": "stolen",
                "CopySource": {"Bucket": alice.bucket, "Key": "private/report"},
            },
        ),
        ("get_bucket_policy", on_alice),
        ("put_bucket_policy", {**on_alice, "Policy": '{"Statement": []}'}),
        ("get_bucket_acl", on_alice),
        ("put_bucket_versioning", {**on_alice, "VersioningConfiguration": {"Status": "Enabled"}}),
        ("delete_bucket", on_alice),
    ]
    for operation, params in attempts:
        with pytest.raises(ClientError) as denied:
            getattr(m, operation)(**params)
        error = denied.value.response["Error"]
        assert error["Code"] == "AccessDenied", (operation, error)
        assert secret.decode() not in str(denied.value.response), operation
    # Deleting several at once is answered per key: each refused, present or not.
    wanted = {"Objects": [{"Key": "private/report"}, {"Key": "does/not/exist"}]}
    result = m.delete_objects(Bucket=alice.bucket, Delete=wanted)
    assert [e["Code"] for e in result.get("Errors", [])] == ["AccessDenied"] * 2, result
    assert result.get("Deleted", []) == []
    # An upload id is no key to another bucket: in Mallory's own bucket it does not exist.
    with pytest.raises(ClientError) as elsewhere:
        m.upload_part(
            Bucket=mallory.bucket, Key="pending", UploadId=upload_id, PartNumber=1, Body=b"x"
        )
    assert elsewhere.value.response["Error"]["Code"] == "NoSuchUpload"

    with pytest.raises(ClientError) as head:
        m.head_object(Bucket=alice.bucket, Key="does/not/exist")
    assert head.value.response["Error"]["Code"] == "403"

    # Nothing of Alice's moved, and nothing of Mallory's appeared.
    assert alice.boto.get_object(Bucket=alice.bucket, Key="private/report")["Body"].read() == secret
    keys = [o["Key"] for o in alice.boto.list_objects_v2(Bucket=alice.bucket).get("Contents", [])]
    assert "planted" not in keys and "private/report" in keys
    uploads = alice.boto.list_multipart_uploads(Bucket=alice.bucket)["Uploads"]
    assert [u["UploadId"] for u in uploads if u["Key"] == "pending"] == [upload_id]
    assert (
        alice.boto.list_parts(Bucket=alice.bucket, Key="pending", UploadId=upload_id).get(
            "Parts", []
        )
        == []
    )
    assert alice.bucket not in [b["Name"] for b in m.list_buckets()["Buckets"]]
    assert "stolen" not in [
        o["Key"] for o in m.list_objects_v2(Bucket=mallory.bucket).get("Contents", [])
    ]
    alice.boto.abort_multipart_upload(Bucket=alice.bucket, Key="pending", UploadId=upload_id)


@pytest.fixture(scope="module")
def impatient_cloud(start_cloud: CloudFactory) -> Iterator[Cloud]:
    cloud = start_cloud("s3-impatient", SOUVERAIN_OBJECTSTORE__BODY_IDLE_TIMEOUT="1")
    yield cloud
    cloud.stop_and_check()


def test_a_client_that_stalls_mid_body_is_timed_out_and_leaves_nothing(
    impatient_cloud: Cloud,
) -> None:
    slow = make_account(impatient_cloud, "slowloris")
    url = slow.url_for("stalled")
    headers = slow.signed_headers("PUT", url, b"x" * 1000, sign_payload=False)
    started = time.monotonic()
    # Half the body, then silence with the connection still open.
    answers = raw_exchange(url, request_head("PUT", url, headers, 1000), [b"x" * 500])
    assert time.monotonic() - started < 10
    assert [(a.status, error_code(a)) for a in answers] == [(400, "RequestTimeout")]
    assert list((impatient_cloud.data_dir / "objects" / "tmp").iterdir()) == []
    with pytest.raises(ClientError):
        slow.boto.head_object(Bucket=slow.bucket, Key="stalled")
    server_responds(slow)
