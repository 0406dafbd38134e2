"""The audit log: one line per mutating call, and no secret in it or in the logs."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from souverain.common import audit

from .support import ADMIN_PASSWORD, MAX_BODY_BYTES, Cloud, password_auth

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def audit_lines(cloud: Cloud) -> list[dict[str, Any]]:
    text = cloud.platform.paths.audit_log.read_text()
    return [json.loads(line) for line in text.splitlines()]


class Recorder:
    """Sends requests through the cloud's client and remembers every mutating one."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(
        self, method: str, path: str, body: Any = None, token: str | None = None, **kw: Any
    ) -> Any:
        headers = {"X-Auth-Token": token if token is not None else self.cloud.admin_token}
        headers.update(kw.pop("headers", {}))
        response = self.cloud.client.request(
            method, "/identity" + path, json=body, headers=headers, **kw
        )
        if method in MUTATING:
            self.calls.append((method, path, response))
        return response


def run_a_day_of_calls(cloud: Cloud, call: Recorder) -> list[str]:
    """A mix of successful and failed mutating calls; returns every secret that crossed the wire."""
    secrets = [ADMIN_PASSWORD, cloud.admin_token]
    alice_password, new_password = "alice-first-Pa55word", "alice-second-Pa55word"
    wrong_password = "definitely-wrong-guess"
    secrets += [alice_password, new_password, wrong_password]
    project = call("POST", "/v3/projects", {"project": {"name": "audited"}}).json()["project"]
    alice = call(
        "POST", "/v3/users", {"user": {"name": "alice", "password": alice_password}}
    ).json()["user"]
    role = cloud.role_ids["member"]
    call("PUT", f"/v3/projects/{project['id']}/users/{alice['id']}/roles/{role}")
    for _ in range(2):
        call("POST", "/v3/auth/tokens", password_auth(wrong_password, name="alice"))
    call("POST", "/v3/auth/tokens", password_auth(wrong_password, name="nobody"))
    scope = {"project": {"id": project["id"]}}
    issued = call(
        "POST", "/v3/auth/tokens", password_auth(alice_password, user_id=alice["id"], scope=scope)
    )
    token = issued.headers["X-Subject-Token"]
    secrets.append(token)
    app = call(
        "POST",
        f"/v3/users/{alice['id']}/application_credentials",
        {"application_credential": {"name": "ci", "secret": "app-cred-chosen-secret"}},
        token=token,
    ).json()["application_credential"]
    secrets.append(app["secret"])
    app_login = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": app["id"], "secret": app["secret"]},
            }
        }
    }
    app_token = call("POST", "/v3/auth/tokens", app_login).headers["X-Subject-Token"]
    secrets.append(app_token)
    bad_app_login = json.loads(json.dumps(app_login))
    bad_app_login["auth"]["identity"]["application_credential"]["secret"] = "wrong-app-secret"
    secrets.append("wrong-app-secret")
    call("POST", "/v3/auth/tokens", bad_app_login)
    ec2 = call(
        "POST",
        f"/v3/users/{alice['id']}/credentials/OS-EC2",
        {"tenant_id": project["id"]},
        token=token,
    ).json()["credential"]
    secrets.append(ec2["secret"])
    blob = json.dumps({"access": "audit-access", "secret": "stored-blob-secret"})
    secrets.append("stored-blob-secret")
    call(
        "POST",
        "/v3/credentials",
        {
            "credential": {
                "type": "ec2",
                "user_id": alice["id"],
                "project_id": project["id"],
                "blob": blob,
            }
        },
        token=token,
    )
    change = {"user": {"original_password": wrong_password, "password": new_password}}
    call("POST", f"/v3/users/{alice['id']}/password", change, token=token)
    change = {"user": {"original_password": alice_password, "password": new_password}}
    call("POST", f"/v3/users/{alice['id']}/password", change, token=token)
    call("PATCH", f"/v3/users/{alice['id']}", {"user": {"password": "admin-set-Pa55word"}})
    secrets.append("admin-set-Pa55word")
    call("POST", "/v3/users", {"user": {"name": "shorty", "password": "tiny"}})
    call("DELETE", "/v3/auth/tokens", headers={"X-Subject-Token": app_token})
    call("DELETE", f"/v3/projects/{'0' * 32}")
    call("POST", "/v3/projects", {"project": {"name": "x"}}, token="forged-token-value")
    secrets.append("forged-token-value")
    call("PATCH", f"/v3/projects/{project['id']}", {"project": {"enabled": False}})
    return secrets


def test_one_audit_line_per_mutating_call_with_who_what_and_outcome(cloud: Cloud) -> None:
    start = len(audit_lines(cloud))
    call = Recorder(cloud)
    run_a_day_of_calls(cloud, call)
    lines = audit_lines(cloud)[start:]
    assert len(lines) == len(call.calls)
    for line, (_method, path, response) in zip(lines, call.calls, strict=True):
        assert line["request_id"] == response.headers["x-openstack-request-id"]
        assert line["outcome"] == ("success" if response.status_code < 400 else "failure"), path
        assert line["status"] == response.status_code
        assert line["time"].endswith("Z")
        assert isinstance(line["initiator"], dict) and "user_id" in line["initiator"]
        assert isinstance(line["action"], str) and line["action"]
        assert isinstance(line["target"], dict) and line["target"]
    actions = [line["action"] for line in lines]
    assert actions[0] == "identity.project.create"
    assert lines[0]["target"]["id"] == call.calls[0][2].json()["project"]["id"]
    assert lines[0]["initiator"]["user_id"] == cloud.admin_id
    failed_login = lines[3]
    assert failed_login["action"] == "identity.token.issue"
    assert failed_login["outcome"] == "failure"
    assert failed_login["initiator"].get("user_name") == "alice"
    assert "identity.role_assignment.create" in actions
    assert "identity.application_credential.create" in actions
    assert "identity.ec2_credential.create" in actions
    assert "identity.user.change_password" in actions
    assert "identity.token.revoke" in actions


def test_audit_chain_verifies(cloud: Cloud) -> None:
    run_a_day_of_calls(cloud, Recorder(cloud))
    cloud.platform.audit_log.flush()
    key = cloud.platform.paths.audit_key.read_bytes()
    verdict = audit.verify(cloud.platform.paths.audit_log, key)
    assert verdict.ok, verdict


def test_no_secret_in_the_audit_log_or_the_logs(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = run_a_day_of_calls(cloud, Recorder(cloud))
    audit_text = cloud.platform.paths.audit_log.read_text()
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert "souverain.access" in {r.name for r in caplog.records}, "the access log was captured"
    for secret in secrets:
        assert secret not in audit_text, f"secret {secret[:6]}... in the audit log"
        assert secret not in logged, f"secret {secret[:6]}... in the logs"


def test_refused_oversized_call_is_audited_too(cloud: Cloud) -> None:
    start = len(audit_lines(cloud))
    headers = {"X-Auth-Token": cloud.admin_token, "Content-Type": "application/json"}
    big = b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}"
    response = cloud.client.post("/identity/v3/projects", content=big, headers=headers)
    assert response.status_code == 413
    lines = audit_lines(cloud)[start:]
    assert [line["status"] for line in lines] == [413]


def test_a_call_refused_at_the_edge_is_audited_under_its_policy_action(cloud: Cloud) -> None:
    reader = cloud.member(role="reader")
    start = len(audit_lines(cloud))
    refused = cloud.post("/v3/users", {"user": {"name": "not-by-a-reader"}}, token=reader.token)
    assert refused.status_code == 403
    (line,) = audit_lines(cloud)[start:]
    assert line["action"] == "identity:create_user"
    assert line["outcome"] == "failure" and line["status"] == 403
    assert line["initiator"]["user_id"] == reader.id
