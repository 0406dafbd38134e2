"""Browser form uploads (POST Object) on the real S3 port: a form signed by boto3's
generate_presigned_post, posted as multipart/form-data with httpx the way a browser
posts it. Every policy condition is enforced and a refused form stores nothing.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring

from tests.e2e.conftest import Cloud, unique
from tests.e2e.s3_support import error_document, md5_hex, new_bucket, s3_error

pytestmark = pytest.mark.e2e

PICTURE = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100


@pytest.fixture(scope="module")
def s3(cloud: Cloud) -> Any:
    return cloud.s3(cloud.make_tenant("s3post"))


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    return new_bucket(s3, "forms")


def post_form(
    form: dict[str, Any], data: bytes = PICTURE, filename: str = "photo.png", **extra: str
) -> httpx.Response:
    fields = {**form["fields"], **extra}
    files = {"file": (filename, data, "image/png")}
    return httpx.post(form["url"], data=fields, files=files, timeout=30)


def refused(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, error_document(response)["Code"]


def absent(s3: Any, bucket: str, key: str) -> bool:
    return s3_error(s3.head_object, Bucket=bucket, Key=key)[1] == 404


def test_a_signed_form_uploads_the_file_under_the_key_it_names(s3: Any, bucket: str) -> None:
    prefix = unique("uploads") + "/"
    form = s3.generate_presigned_post(
        bucket,
        prefix + "${filename}",
        Fields={"Content-Type": "image/png"},
        Conditions=[
            {"Content-Type": "image/png"},
            ["content-length-range", 1, 10_000],
        ],
    )

    response = post_form(form)

    assert response.status_code == 204, response.text
    assert response.headers["etag"] == f'"{md5_hex(PICTURE)}"'
    stored = s3.get_object(Bucket=bucket, Key=prefix + "photo.png")
    assert stored["Body"].read() == PICTURE
    assert stored["ContentType"] == "image/png"


def test_success_action_status_201_answers_with_a_post_response(s3: Any, bucket: str) -> None:
    key = unique("status")
    form = s3.generate_presigned_post(
        bucket,
        key,
        Fields={"success_action_status": "201"},
        Conditions=[{"success_action_status": "201"}],
    )

    response = post_form(form)

    assert response.status_code == 201, response.text
    root = fromstring(response.content)
    found = {child.tag.split("}")[-1]: child.text for child in root}
    assert (found["Bucket"], found["Key"]) == (bucket, key)
    assert found["ETag"] == f'"{md5_hex(PICTURE)}"'
    assert found["Location"].endswith(f"/{bucket}/{key}")


def test_success_action_redirect_sends_the_browser_on(s3: Any, bucket: str) -> None:
    key = unique("redirect")
    target = "https://app.example.com/done?step=2"
    form = s3.generate_presigned_post(
        bucket,
        key,
        Fields={"success_action_redirect": target},
        Conditions=[["starts-with", "$success_action_redirect", "https://app.example.com/"]],
    )

    response = post_form(form)

    assert response.status_code == 303, response.text
    location = urllib.parse.urlsplit(response.headers["location"])
    assert location.netloc == "app.example.com"
    query = urllib.parse.parse_qs(location.query)
    assert query["step"] == ["2"] and query["bucket"] == [bucket] and query["key"] == [key]
    assert query["etag"] == [f'"{md5_hex(PICTURE)}"']
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(PICTURE)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ({"Content-Type": "text/html"}, (403, "AccessDenied")),
        ({"key": "elsewhere/evil.html"}, (403, "AccessDenied")),
        ({"x-amz-meta-note": "not in the policy"}, (403, "AccessDenied")),
        ({"x-amz-signature": "0" * 64}, (403, "SignatureDoesNotMatch")),
        ({"policy": "not base64!"}, (403, "SignatureDoesNotMatch")),
    ],
)
def test_a_form_that_strays_from_its_policy_stores_nothing(
    s3: Any, bucket: str, tamper: dict[str, str], expected: tuple[int, str]
) -> None:
    prefix = unique("strict") + "/"
    form = s3.generate_presigned_post(
        bucket,
        prefix + "${filename}",
        Fields={"Content-Type": "image/png"},
        Conditions=[["eq", "$Content-Type", "image/png"]],
    )

    response = post_form(form, **tamper)

    assert refused(response) == expected
    assert absent(s3, bucket, prefix + "photo.png")
    assert absent(s3, bucket, "elsewhere/evil.html")


@pytest.mark.parametrize(("size", "code"), [(2001, "EntityTooLarge"), (9, "EntityTooSmall")])
def test_content_length_range_bounds_the_file(s3: Any, bucket: str, size: int, code: str) -> None:
    key = unique("sized")
    form = s3.generate_presigned_post(bucket, key, Conditions=[["content-length-range", 10, 2000]])

    assert refused(post_form(form, b"x" * size)) == (400, code)
    assert absent(s3, bucket, key)


def test_an_expired_policy_is_refused(s3: Any, bucket: str) -> None:
    key = unique("late")
    form = s3.generate_presigned_post(bucket, key, ExpiresIn=1)
    time.sleep(2)

    response = post_form(form)

    assert refused(response) == (403, "AccessDenied")
    assert "expired" in error_document(response)["Message"]
    assert absent(s3, bucket, key)


def test_another_project_cannot_sign_a_form_for_this_bucket(
    cloud: Cloud, s3: Any, bucket: str
) -> None:
    stranger = cloud.s3(cloud.make_tenant("s3post-stranger"))
    key = unique("intruder")
    form = stranger.generate_presigned_post(bucket, key)

    assert refused(post_form(form)) == (403, "AccessDenied")
    assert absent(s3, bucket, key)


def test_an_unsigned_form_is_refused(s3: Any, bucket: str) -> None:
    key = unique("anonymous")
    url = s3.generate_presigned_post(bucket, key)["url"]

    response = httpx.post(url, data={"key": key}, files={"file": ("a", b"data")}, timeout=30)

    assert refused(response) == (403, "AccessDenied")
    assert absent(s3, bucket, key)


def test_malformed_forms_get_s3_errors(s3: Any, bucket: str) -> None:
    form = s3.generate_presigned_post(bucket, unique("broken"))
    url = form["url"]

    no_file = httpx.post(url, data=form["fields"], files={}, timeout=30)
    assert no_file.status_code == 400
    assert error_document(no_file)["Code"] in (
        "IncorrectNumberOfFilesInPostRequest",
        "MalformedPOSTRequest",
    )
    signed = "".join(
        f'--xyz\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in form["fields"].items()
    ).encode()
    truncated = httpx.post(
        url,
        content=signed + b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="f"'
        b"\r\n\r\nno closing boundary",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
        timeout=30,
    )
    assert refused(truncated) == (400, "MalformedPOSTRequest")
    not_a_form = httpx.post(url, content=b"key=k", headers={"content-type": "text/plain"})
    assert refused(not_a_form) == (400, "MalformedPOSTRequest")


def test_fields_after_the_file_are_ignored(s3: Any, bucket: str) -> None:
    form = s3.generate_presigned_post(bucket, unique("order"))
    fields = form["fields"]
    boundary = "b0undary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = (
        "".join(parts).encode()
        + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
        "Content-Type: text/plain\r\n\r\n".encode()
        + b"the bytes\r\n"
        + f'--{boundary}\r\nContent-Disposition: form-data; name="acl"\r\n\r\n'
        f"public-read\r\n--{boundary}--\r\n".encode()
    )

    response = httpx.post(
        form["url"],
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )

    assert response.status_code == 204, response.text
    assert s3.get_object(Bucket=bucket, Key=fields["key"])["Body"].read() == b"the bytes"
    grants = s3.get_object_acl(Bucket=bucket, Key=fields["key"])["Grants"]
    assert all(g["Grantee"].get("Type") != "Group" for g in grants)
