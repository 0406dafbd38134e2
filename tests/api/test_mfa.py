"""Multi-factor login: TOTP credentials, the totp method, multi-factor rules and
receipts, and the operator's mandatory second factor for privileged users.

Passcodes are computed here from RFC 6238 with the standard library alone, not with
the platform's code, so that a wrong step, digit count or hash would show.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from typer.testing import CliRunner

from souverain import server
from souverain.cli import app as cli_app

from .conftest import running_platform
from .support import (
    ADMIN_PASSWORD,
    Cloud,
    Member,
    SteppingClock,
    TestClient,
    assert_keystone_error,
    cli_env,
    password_auth,
)

SECRET = base64.b32encode(b"0123456789abcdefghij").decode()  # 20 bytes, as apps use


def passcode(secret: str, when: float, offset: int = 0) -> str:
    """RFC 6238 with SHA-1, 30 s steps, 6 digits (RFC 4226's dynamic truncation)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int(when) // 30 + offset
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    start = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[start : start + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def totp_credential(cloud: Cloud, who: Member, secret: str = SECRET, token: str = "") -> Any:
    body = {"credential": {"type": "totp", "user_id": who.id, "blob": secret}}
    return cloud.post("/v3/credentials", body, token=token or who.token)


def mfa_auth(who: Member, code: str | None, password: str | None = None) -> dict[str, Any]:
    identity: dict[str, Any] = {"methods": ["password"]}
    identity["password"] = {"user": {"id": who.id, "password": password or who.password}}
    if code is not None:
        identity["methods"].append("totp")
        identity["totp"] = {"user": {"id": who.id, "passcode": code}}
    scope = {"project": {"id": who.project_id}}
    return {"auth": {"identity": identity, "scope": scope}}


def require_totp(cloud: Cloud, who: Member) -> None:
    options = {"multi_factor_auth_enabled": True, "multi_factor_auth_rules": [["password", "totp"]]}
    response = cloud.patch(f"/v3/users/{who.id}", {"user": {"options": options}})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["options"] == options


def check_totp_credentials_are_the_owners(cloud: Cloud) -> None:
    alice, bob = cloud.member(), cloud.member()
    reader = cloud.member("reader")
    made = totp_credential(cloud, alice)
    assert made.status_code == 201, made.text
    cred = made.json()["credential"]
    assert cred["type"] == "totp" and cred["blob"] == SECRET and cred["user_id"] == alice.id
    # the owner reads it back; another user, or a reader, does not see it at all
    assert cloud.get(f"/v3/credentials/{cred['id']}", token=alice.token).status_code == 200
    assert_keystone_error(cloud.get(f"/v3/credentials/{cred['id']}", token=bob.token), 404)
    listed = cloud.get("/v3/credentials?type=totp", token=bob.token).json()["credentials"]
    assert listed == []
    # nobody makes one for someone else, a reader least of all
    assert totp_credential(cloud, alice, token=bob.token).status_code in (403, 404)
    assert totp_credential(cloud, alice, token=reader.token).status_code in (403, 404)
    assert totp_credential(cloud, reader, token=reader.token).status_code == 403
    # a blob that is no base32 secret is kept, as Keystone keeps it, but matches nothing
    junk = totp_credential(cloud, bob, secret="not base32!")
    assert junk.status_code == 201
    # the secret never reaches the audit log
    assert SECRET not in cloud.platform.paths.audit_log.read_text()


def test_totp_credentials_rules_receipts_replay(cloud: Cloud, clock: SteppingClock) -> None:
    """One platform for both: TOTP credentials' tenancy, then logins with them."""
    check_totp_credentials_are_the_owners(cloud)
    alice = cloud.member()
    assert totp_credential(cloud, alice).status_code == 201
    require_totp(cloud, alice)
    # password alone: 401 with a receipt, as keystoneauth expects it
    refused = cloud.issue(password_auth(alice.password, user_id=alice.id))
    assert refused.status_code == 401, refused.text
    receipt = refused.headers["Openstack-Auth-Receipt"]
    body = refused.json()
    assert body["required_auth_methods"] == [["password", "totp"]]
    assert body["receipt"]["methods"] == ["password"]
    assert body["receipt"]["user"]["id"] == alice.id and body["receipt"]["expires_at"]
    assert body["error"]["code"] == 401
    # password + totp: a token naming both methods
    now = clock.now().timestamp()
    code = passcode(SECRET, now)
    issued = cloud.issue(mfa_auth(alice, code))
    assert issued.status_code == 201, issued.text
    assert issued.json()["token"]["methods"] == ["password", "totp"]
    # the same passcode again, even with the password: refused (replay)
    assert_keystone_error(cloud.issue(mfa_auth(alice, code)), 401)
    # the previous window works once time moved on; a wrong one, a non-digit one do not
    clock.advance(30)
    now = clock.now().timestamp()
    for wrong in (f"{(int(passcode(SECRET, now)) + 1) % 1_000_000:06d}", "12ab56", ""):
        error = assert_keystone_error(cloud.issue(mfa_auth(alice, wrong)), 401)
        assert "passcode" not in error["message"] and "totp" not in error["message"]
    # three wrong passcodes lock the account (lockout at 3), though the password was right
    assert_keystone_error(cloud.issue(mfa_auth(alice, passcode(SECRET, now))), 401)
    unlock = cloud.patch(f"/v3/users/{alice.id}", {"user": {"enabled": True}})
    assert unlock.status_code == 200
    # a wrong password with a right passcode says no more than a wrong passcode
    error = assert_keystone_error(
        cloud.issue(mfa_auth(alice, passcode(SECRET, now), password="wrong-Pa55word")), 401
    )
    assert "password" not in error["message"]
    # the receipt flow: the receipt and the totp method alone complete the login
    next_code = passcode(SECRET, now, offset=1)
    totp_only = mfa_auth(alice, next_code)
    totp_only["auth"]["identity"] = {
        "methods": ["totp"],
        "totp": totp_only["auth"]["identity"]["totp"],
    }
    done = cloud.client.post(
        "/identity/v3/auth/tokens", json=totp_only, headers={"Openstack-Auth-Receipt": receipt}
    )
    assert done.status_code == 201, done.text
    assert set(done.json()["token"]["methods"]) == {"password", "totp"}
    # another user's password with alice's receipt: refused
    bob = cloud.member()
    mixed = cloud.client.post(
        "/identity/v3/auth/tokens",
        json=password_auth(bob.password, user_id=bob.id),
        headers={"Openstack-Auth-Receipt": receipt},
    )
    assert_keystone_error(mixed, 401)
    # a token from MFA can be re-scoped with the token method
    token = done.headers["X-Subject-Token"]
    rescope = {"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
                        "scope": {"project": {"id": alice.project_id}}}}  # fmt: skip
    assert cloud.issue(rescope).status_code == 201
    # an expired receipt, a forged one, another user's: refused
    clock.advance(301)
    later = passcode(SECRET, clock.now().timestamp())
    totp_only["auth"]["identity"]["totp"]["user"]["passcode"] = later
    for bad in (receipt, receipt[:-4] + "AAAA", issued.headers["X-Subject-Token"]):
        again = cloud.client.post(
            "/identity/v3/auth/tokens", json=totp_only, headers={"Openstack-Auth-Receipt": bad}
        )
        assert_keystone_error(again, 401)
    # hostile options: refused whole, nothing changed
    for options in (
        {"multi_factor_auth_rules": "password"},
        {"multi_factor_auth_rules": [["password", "password"]]},
        {"multi_factor_auth_rules": [[]]},
        {"multi_factor_auth_rules": [[1]]},
        {"multi_factor_auth_enabled": "yes"},
        {"no_such_option": True},
    ):
        bad = cloud.patch(f"/v3/users/{alice.id}", {"user": {"options": options}})
        assert_keystone_error(bad, 400)
    user = cloud.get(f"/v3/users/{alice.id}").json()["user"]
    assert user["options"]["multi_factor_auth_rules"] == [["password", "totp"]]
    # a member cannot switch its own rules off
    off = {"user": {"options": {"multi_factor_auth_enabled": False}}}
    assert_keystone_error(cloud.patch(f"/v3/users/{alice.id}", off, token=alice.token), 403)
    # switched off by an admin (null removes an option): the password is enough again
    cleared = cloud.patch(f"/v3/users/{alice.id}",
                          {"user": {"options": {"multi_factor_auth_enabled": None}}})  # fmt: skip
    assert cleared.json()["user"]["options"] == {"multi_factor_auth_rules": [["password", "totp"]]}
    assert cloud.issue(password_auth(alice.password, user_id=alice.id)).status_code == 201
    # one passcode sent four times at once: one login, three refusals (401, not 409)
    racing = mfa_auth(alice, passcode(SECRET, clock.now().timestamp(), offset=1))

    def login(_: int) -> int:
        client = TestClient(cloud.platform.app, base_url="http://testserver")
        return int(client.post("/identity/v3/auth/tokens", json=racing).status_code)

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(login, range(4))) == [201, 401, 401, 401]
    lines = cloud.platform.paths.audit_log.read_text()
    assert SECRET not in lines and "passcode" not in lines


def enroll(data_dir: Path, user: str) -> str:
    """`souverain identity totp enroll USER`, as the operator runs it: the URI's secret."""
    result = CliRunner().invoke(
        cli_app,
        ["identity", "totp", "enroll", user, "--data-dir", str(data_dir)],
        env=cli_env(data_dir),
    )
    assert result.exit_code == 0, result.output
    uri = next(line for line in result.output.splitlines() if line.startswith("otpauth://"))
    parsed = urlparse(uri)
    assert parsed.path.startswith("/Souverain:")
    query = parse_qs(parsed.query)
    assert query["algorithm"] == ["SHA1"] and query["digits"] == ["6"] and query["period"] == ["30"]
    return query["secret"][0]


def admin_cloud(client: TestClient, platform: server.Platform, token: str) -> Cloud:
    """A `Cloud` whose admin token came from a multi-factor login (its own login cannot)."""
    cloud = Cloud.__new__(Cloud)
    cloud.client, cloud.platform, cloud._count = client, platform, 0
    cloud.admin_token = token
    cloud.role_ids = {r["name"]: r["id"] for r in cloud.get("/v3/roles").json()["roles"]}
    return cloud


def test_privileged_users_must_use_a_second_factor(database_backend: str) -> None:
    clock = SteppingClock()
    scope = {"project": {"name": "admin", "domain": {"id": "default"}}}
    admin_password = password_auth(ADMIN_PASSWORD, name="admin", scope=scope)
    with (
        running_platform(clock, mfa_required_for_privileged=True) as platform,
        TestClient(platform.app, base_url="http://testserver") as client,
    ):
        tokens = "/identity/v3/auth/tokens"
        # no TOTP credential yet: refused, told what to do, no receipt
        refused = client.post(tokens, json=admin_password)
        error = assert_keystone_error(refused, 401)
        assert "souverain identity totp enroll admin" in error["message"]
        assert "Openstack-Auth-Receipt" not in refused.headers
        # a wrong password is not told about enrolment
        wrong = password_auth("not-the-Pa55word", name="admin", scope=scope)
        assert (
            "enroll" not in assert_keystone_error(client.post(tokens, json=wrong), 401)["message"]
        )
        secret = enroll(platform.settings.data_dir, "admin")
        assert secret not in platform.paths.audit_log.read_text()
        # password alone: a receipt asking for password + totp
        receipt = client.post(tokens, json=admin_password)
        assert receipt.status_code == 401, receipt.text
        assert receipt.json()["required_auth_methods"] == [["password", "totp"]]
        both = admin_password["auth"]["identity"]
        both["methods"].append("totp")
        both["totp"] = {"user": {"name": "admin", "domain": {"id": "default"},
                                 "passcode": passcode(secret, clock.now().timestamp())}}  # fmt: skip
        issued = client.post(tokens, json=admin_password)
        assert issued.status_code == 201, issued.text
        cloud = admin_cloud(client, platform, issued.headers["X-Subject-Token"])
        # a member logs in with a password; once an account owner, no longer
        alice = cloud.member()
        owned = {"account": {"name": "ACME", "country": "FR", "owner_user_id": alice.id}}
        made = client.post("/billing/v1/accounts", json=owned,
                           headers={"X-Auth-Token": cloud.admin_token})  # fmt: skip
        assert made.status_code == 201, made.text
        again = cloud.issue(password_auth(alice.password, user_id=alice.id))
        assert "souverain identity totp enroll" in assert_keystone_error(again, 401)["message"]
        # the admin's MFA token re-scopes, and its application credential needs no passcode
        rescope = {"auth": {"identity": {"methods": ["token"],
                                         "token": {"id": cloud.admin_token}}, "scope": scope}}  # fmt: skip
        assert cloud.issue(rescope).status_code == 201
        body = {"application_credential": {"name": "ci"}}
        cred = cloud.post(f"/v3/users/{issued.json()['token']['user']['id']}"
                          "/application_credentials", body).json()["application_credential"]  # fmt: skip
        by_cred = {"auth": {"identity": {"methods": ["application_credential"],
                   "application_credential": {"id": cred["id"], "secret": cred["secret"]}}}}  # fmt: skip
        assert cloud.issue(by_cred).status_code == 201
