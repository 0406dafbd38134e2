"""Who may touch a Swift account: its readers and members, other projects through ACLs,
anyone through a temporary URL, a ResellerAdmin everywhere; nobody else."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from .support import Cloud, Member
from .test_swift_api import Swift


@pytest.fixture
def owner(cloud: Cloud) -> Member:
    return cloud.member("member")


@pytest.fixture
def swift(cloud: Cloud, owner: Member) -> Swift:
    account = Swift(cloud, owner)
    assert account("PUT", "box").status_code == 201
    assert account("PUT", "box/secret", b"s3cr3t").status_code == 201
    return account


def _app_cred_token(cloud: Cloud, member: Member, roles: list[str]) -> str:
    made = cloud.post(
        f"/v3/users/{member.id}/application_credentials",
        {
            "application_credential": {
                "name": cloud.unique("ac"),
                "roles": [{"name": r} for r in roles],
            }
        },
        token=member.token,
    ).json()["application_credential"]
    auth = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": made["id"], "secret": made["secret"]},
            }
        }
    }
    issued = cloud.issue(auth)
    assert issued.status_code == 201, issued.text
    token: str = issued.headers["X-Subject-Token"]
    return token


def test_another_project_cannot_read_list_or_write_without_acl(cloud: Cloud, swift: Swift) -> None:
    other = cloud.member("member").token
    assert swift("GET", "", token=other).status_code == 403
    assert swift("GET", "box", token=other).status_code == 403
    assert swift("GET", "box/secret", token=other).status_code == 403
    assert swift("PUT", "box/new", b"x", token=other).status_code == 403
    assert swift("DELETE", "box/secret", token=other).status_code == 403
    assert swift("POST", "box", token=other, headers={"X-Container-Read": "*:*"}).status_code == 403
    assert swift("PUT", "box2", token=other).status_code == 403
    assert swift("GET", "box/secret", token="").status_code == 401
    # whether a container exists is not told to outsiders either
    assert swift("GET", "nothing-here", token=other).status_code == 403
    assert swift("GET", "nothing-here/x", token="").status_code == 401
    assert swift("GET", "box", params={"format": "json"}).json()[0]["name"] == "secret"
    assert len(swift("GET", "box", params={"format": "json"}).json()) == 1


def test_reader_reads_but_does_not_write(cloud: Cloud, swift: Swift, owner: Member) -> None:
    reader = cloud.member("reader", project_id=owner.project_id).token
    assert swift("GET", "box/secret", token=reader).content == b"s3cr3t"
    assert swift("GET", "box", token=reader).status_code == 200
    assert swift("PUT", "box/x", b"1", token=reader).status_code == 403
    assert swift("DELETE", "box/secret", token=reader).status_code == 403
    assert swift("POST", "", token=reader, headers={"X-Account-Meta-A": "b"}).status_code == 403
    assert swift("PUT", "other", token=reader).status_code == 403


def test_restricted_application_credential_is_a_reader(
    cloud: Cloud, swift: Swift, owner: Member
) -> None:
    token = _app_cred_token(cloud, owner, ["reader"])
    assert swift("GET", "box/secret", token=token).status_code == 200
    assert swift("PUT", "box/x", b"1", token=token).status_code == 403
    assert swift("DELETE", "box", token=token).status_code == 403


def test_acl_grants_read_and_write_to_one_user_of_another_project(
    cloud: Cloud, swift: Swift
) -> None:
    friend = cloud.member("member")
    stranger = cloud.member("member")
    grant = f"{friend.project_id}:{friend.id}"
    assert swift("POST", "box", headers={"X-Container-Read": grant}).status_code == 204
    assert swift("HEAD", "box").headers["x-container-read"] == grant
    assert swift("GET", "box/secret", token=friend.token).content == b"s3cr3t"
    assert swift("HEAD", "box", token=friend.token).headers.get("x-container-read") is None
    assert swift("GET", "box/secret", token=stranger.token).status_code == 403
    assert swift("PUT", "box/f", b"1", token=friend.token).status_code == 403
    swift("POST", "box", headers={"X-Container-Write": grant})
    assert swift("PUT", "box/f", b"1", token=friend.token).status_code == 201
    assert swift("PUT", "box/g", b"1", token=stranger.token).status_code == 403
    assert swift("POST", "box", headers={"X-Container-Write": ".r:*"}).status_code == 400


def test_public_read_acl_opens_objects_and_listing_to_anyone(swift: Swift) -> None:
    assert swift("GET", "box/secret", token="").status_code == 401
    swift("POST", "box", headers={"X-Container-Read": ".r:*"})
    assert swift("GET", "box/secret", token="").content == b"s3cr3t"
    assert swift("GET", "box", token="").status_code == 401  # no .rlistings
    swift("POST", "box", headers={"X-Container-Read": ".r:*,.rlistings"})
    assert swift("GET", "box", token="").text == "secret\n"
    assert swift("PUT", "box/anon", b"1", token="").status_code == 401


def test_temp_url_lets_anyone_get_and_put_one_object(swift: Swift, owner: Member) -> None:
    swift("POST", "", headers={"X-Account-Meta-Temp-URL-Key": "k3y"})
    expires = int(time.time()) + 600
    path = f"/object-storage/v1/AUTH_{owner.project_id}/box/secret"

    def signed(method: str, key: str = "k3y", when: int = expires) -> dict[str, str]:
        body = f"{method}\n{when}\n{path}".encode()
        sig = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        return {"temp_url_sig": sig, "temp_url_expires": str(when)}

    assert swift("GET", "box/secret", token="", params=signed("GET")).content == b"s3cr3t"
    assert swift("PUT", "box/secret", b"new", token="", params=signed("PUT")).status_code == 201
    assert swift("HEAD", "box/secret", token="", params=signed("PUT")).status_code == 200
    assert swift("GET", "box/secret", token="", params=signed("GET", "wrong")).status_code == 401
    past = signed("GET", when=int(time.time()) - 1)
    assert swift("GET", "box/secret", token="", params=past).status_code == 401
    assert swift("DELETE", "box/secret", token="", params=signed("GET")).status_code == 401
    assert swift("GET", "box/secret").content == b"new"
    other_key = swift("HEAD", "", token="").status_code
    assert other_key == 401


def test_reseller_admin_acts_on_any_account(cloud: Cloud, swift: Swift) -> None:
    reseller = cloud.member("ResellerAdmin").token
    assert swift("GET", "box/secret", token=reseller).content == b"s3cr3t"
    assert swift("HEAD", "", token=reseller).status_code == 204


def test_a_name_another_project_holds_is_a_conflict_not_a_leak(cloud: Cloud, swift: Swift) -> None:
    other = Swift(cloud, cloud.member("member"))
    assert other("PUT", "box").status_code == 409
    assert other("HEAD", "box").status_code == 404
    assert other("GET", "", params={"format": "json"}).json() == []


def _form(path: str, key: str, expires: int, files: dict[str, bytes]) -> tuple[bytes, str]:
    redirect, size, count = "", "1000", "2"
    body = f"{path}\n{redirect}\n{size}\n{count}\n{expires}".encode()
    signature = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    fields = {"redirect": redirect, "max_file_size": size, "max_file_count": count}
    fields.update(expires=str(expires), signature=signature)
    parts = [
        f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    raw = "".join(parts).encode()
    for name, data in files.items():
        raw += (
            (
                f'--b\r\nContent-Disposition: form-data; name="f"; filename="{name}"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return raw + b"--b--\r\n", "multipart/form-data; boundary=b"


def test_formpost_stores_signed_files_and_refuses_the_rest(swift: Swift, owner: Member) -> None:
    swift("POST", "", headers={"X-Account-Meta-Temp-URL-Key": "form-key"})
    path = f"/object-storage/v1/AUTH_{owner.project_id}/box/up-"
    later = int(time.time()) + 600
    body, ctype = _form(path, "form-key", later, {"a.txt": b"hello"})
    posted = swift("POST", "box/up-", body, token="", headers={"Content-Type": ctype})
    assert posted.status_code == 201
    assert swift("GET", "box/up-a.txt").content == b"hello"
    forged, ctype = _form(path, "guess", later, {"b.txt": b"x"})
    refused = swift("POST", "box/up-", forged, token="", headers={"Content-Type": ctype})
    assert refused.status_code == 401 and "Invalid Signature" in refused.text
    old, ctype = _form(path, "form-key", int(time.time()) - 5, {"c.txt": b"x"})
    assert (
        "Form Expired"
        in swift("POST", "box/up-", old, token="", headers={"Content-Type": ctype}).text
    )
    many, ctype = _form(path, "form-key", later, {"1": b"1", "2": b"2", "3": b"3"})
    assert (
        swift("POST", "box/up-", many, token="", headers={"Content-Type": ctype}).status_code == 400
    )
    names = [o["name"] for o in swift("GET", "box", params={"format": "json"}).json()]
    assert names == ["secret", "up-a.txt"]


def test_temp_url_with_a_prefix_admits_only_that_prefix(swift: Swift, owner: Member) -> None:
    swift("POST", "box", headers={"X-Container-Meta-Temp-URL-Key": "box-key"})
    swift("PUT", "box/pub/a.txt", b"a")
    expires = int(time.time()) + 300
    body = f"GET\n{expires}\nprefix:/v1/AUTH_{owner.project_id}/box/pub/".encode()
    sig = hmac.new(b"box-key", body, hashlib.sha256).hexdigest()
    query = {"temp_url_sig": sig, "temp_url_expires": str(expires), "temp_url_prefix": "pub/"}
    assert swift("GET", "box/pub/a.txt", token="", params=query).content == b"a"
    assert swift("GET", "box/secret", token="", params=query).status_code == 401
