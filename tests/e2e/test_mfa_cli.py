"""Multi-factor login with the real `openstack` CLI (keystoneauth's v3multifactor plugin):
a user whose rules ask for password + totp logs in with a passcode, and not without one,
and not twice with the same passcode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time

import pytest

from tests.e2e.conftest import Cloud

pytestmark = pytest.mark.e2e


def passcode(secret: str, when: float) -> str:
    """RFC 6238 (SHA-1, 30 s, 6 digits), as an authenticator app computes it."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(when) // 30), hashlib.sha1).digest()
    start = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[start : start + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def test_v3multifactor_login_with_password_and_totp(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("mfa")
    secret = base64.b32encode(hashlib.sha256(tenant.password.encode()).digest()[:20]).decode()
    cloud.secrets.add(secret)
    # the user enrols its own authenticator; the admin then requires the second factor
    body = {"credential": {"type": "totp", "user_id": tenant.user_id, "blob": secret}}
    made = cloud.http("POST", "/v3/credentials", token=cloud.token_for(tenant), json=body)
    assert made.status_code == 201, made.text
    rules = {"multi_factor_auth_enabled": True, "multi_factor_auth_rules": [["password", "totp"]]}
    patched = cloud.http("PATCH", f"/v3/users/{tenant.user_id}", token=cloud.admin_token(),
                         json={"user": {"options": rules}})  # fmt: skip
    assert patched.status_code == 200, patched.text
    # the password alone: refused, keystoneauth reports the missing methods
    refused = cloud.cli_fails("token", "issue", cloud=tenant.cloud_name)
    assert "totp" in refused and secret not in refused
    # password + passcode through v3multifactor: a token
    code = passcode(secret, time.time())
    flags = [*cloud.user_flags(tenant.user_name, tenant.password, tenant.project_name),
             "--os-auth-type", "v3multifactor", "--os-auth-methods", "v3password,v3totp"]  # fmt: skip
    issued = cloud.cli_json(*flags, "--os-passcode", code, "token", "issue", cloud=None)
    assert issued["user_id"] == tenant.user_id and issued["project_id"] == tenant.project_id
    # the same passcode again: refused (a passcode works once)
    replay = cloud.cli_fails(*flags, "--os-passcode", code, "token", "issue", cloud=None)
    assert "401" in replay
