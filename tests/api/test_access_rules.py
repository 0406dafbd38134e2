"""Access rules on application credentials: stored, shared, shown, and enforced at the edge
of every OpenStack API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from souverain.app import SERVICES
from souverain.identity.access_match import MOUNTS, AllowedCall, permits

from .support import Cloud, Member, assert_keystone_error

SERVERS = {"service": "compute", "path": "/v2.1/servers", "method": "GET"}


def make_cred(cloud: Cloud, who: Member, rules: Any, **fields: Any) -> Any:
    body = {"application_credential": {"name": cloud.unique("ac"), "access_rules": rules, **fields}}
    return cloud.post(f"/v3/users/{who.id}/application_credentials", body, token=who.token)


def cred_token(cloud: Cloud, cred: dict[str, Any]) -> str:
    auth = {
        "identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": cred["id"], "secret": cred["secret"]},
        }
    }
    response = cloud.issue({"auth": auth})
    assert response.status_code == 201, response.text
    token: str = response.headers["X-Subject-Token"]
    return token


def made(cloud: Cloud, who: Member, rules: Any) -> dict[str, Any]:
    response = make_cred(cloud, who, rules)
    assert response.status_code == 201, response.text
    cred: dict[str, Any] = response.json()["application_credential"]
    return cred


# ------------------------------------------------------------------ matching


@pytest.mark.parametrize(
    ("pattern", "path", "allowed"),
    [
        ("/v2.1/servers", "/v2.1/servers", True),
        ("/v2.1/servers", "/v2.1/servers/x", False),
        ("/v2.1/servers/*", "/v2.1/servers/abc", True),
        ("/v2.1/servers/*", "/v2.1/servers/abc/ips", False),
        ("/v2.1/servers/*", "/v2.1/servers/", False),
        ("/v2.1/servers/*/ips", "/v2.1/servers/abc/ips", True),
        ("/v2.1/servers/{server_id}/ips", "/v2.1/servers/abc/ips", True),
        ("/v2.1/servers/**", "/v2.1/servers/abc/ips/net", True),
        ("/v2.1/**", "/v2.1/flavors", True),
        ("/v2.1/**", "/v2.10/flavors", False),
        ("/v2.1/servers.+", "/v2.1/serversXX", False),  # not a regular expression
    ],
)
def test_path_patterns(pattern: str, path: str, allowed: bool) -> None:
    rule = AllowedCall("compute", pattern, "GET")
    assert rule.matches("compute", path, "GET") is allowed


def test_service_method_and_mount_must_match() -> None:
    rules = (AllowedCall("volumev3", "/v3/**", "GET"),)
    assert permits(rules, "/volume", "/v3/volumes", "GET")  # an alias of block-storage
    assert not permits(rules, "/volume", "/v3/volumes", "POST")
    assert not permits(rules, "/compute", "/v3/volumes", "GET")
    assert not permits(rules, "/billing", "/v3/volumes", "GET")  # no catalog type: refused
    assert permits(None, "/anything", "/", "DELETE")  # a credential without rules


def test_every_catalog_service_has_its_mount() -> None:
    for entry in SERVICES:
        mount = entry.path.split("/")[1]
        assert MOUNTS[mount] == entry.type


# ------------------------------------------------------------------ the resource


def test_rules_shown_listed_and_shared_between_credentials(cloud: Cloud) -> None:
    alice = cloud.member("member")
    first = made(cloud, alice, [SERVERS])
    [rule] = first["access_rules"]
    assert set(rule) == {"id", "service", "path", "method"}
    assert {k: rule[k] for k in SERVERS} == SERVERS
    # the same rule again, by its fields or by its id: reused, not duplicated
    second = made(cloud, alice, [dict(SERVERS)])
    third = made(cloud, alice, [{"id": rule["id"]}])
    assert second["access_rules"][0]["id"] == third["access_rules"][0]["id"] == rule["id"]
    base = f"/v3/users/{alice.id}/access_rules"
    listed = cloud.get(base, token=alice.token)
    assert listed.status_code == 200, listed.text
    assert [r["id"] for r in listed.json()["access_rules"]] == [rule["id"]]
    assert listed.json()["access_rules"][0]["links"]["self"].endswith(f"{base}/{rule['id']}")
    filtered = cloud.get(base + "?service=image", token=alice.token).json()["access_rules"]
    assert filtered == []
    shown = cloud.get(f"{base}/{rule['id']}", token=alice.token)
    assert shown.json()["access_rule"]["path"] == "/v2.1/servers"
    got = cloud.get(
        f"/v3/users/{alice.id}/application_credentials/{first['id']}", token=alice.token
    )
    assert got.json()["application_credential"]["access_rules"] == [rule]
    token = cloud.issue(
        {
            "auth": {
                "identity": {
                    "methods": ["application_credential"],
                    "application_credential": {"id": first["id"], "secret": first["secret"]},
                }
            }
        }
    ).json()["token"]
    assert token["application_credential"]["access_rules"] == [rule]


def test_a_rule_in_use_cannot_be_deleted(cloud: Cloud) -> None:
    alice = cloud.member("member")
    cred = made(cloud, alice, [{"service": "monitoring", "path": "/v1/**", "method": "GET"}])
    rule_id = cred["access_rules"][0]["id"]
    path = f"/v3/users/{alice.id}/access_rules/{rule_id}"
    error = assert_keystone_error(cloud.delete(path, token=alice.token), 403)
    assert "in use" in error["message"]
    gone = cloud.delete(
        f"/v3/users/{alice.id}/application_credentials/{cred['id']}", token=alice.token
    )
    assert gone.status_code == 204
    assert cloud.get(path, token=alice.token).status_code == 200  # kept after its credential
    assert cloud.delete(path, token=alice.token).status_code == 204
    assert_keystone_error(cloud.get(path, token=alice.token), 404)
    assert_keystone_error(cloud.delete(path, token=alice.token), 404)


@pytest.mark.parametrize(
    "rules",
    [
        [{"service": "compute", "path": "/v2.1/servers", "method": "FETCH"}],
        [{"service": "compute", "path": "v2.1/servers", "method": "GET"}],
        [{"service": "compute", "path": "/" + "a" * 300, "method": "GET"}],
        [{"service": "comp ute", "path": "/v2.1", "method": "GET"}],
        [{"service": "compute", "path": "/v2.1", "method": "GET", "extra": 1}],
        [{"service": "compute", "method": "GET"}],
        ["compute"],
        {"service": "compute"},
    ],
)
def test_bad_rules_refused_and_nothing_left(shared_cloud: Cloud, rules: Any) -> None:
    bob = shared_cloud.member("member")
    assert_keystone_error(make_cred(shared_cloud, bob, rules), 400)
    listed = shared_cloud.get(f"/v3/users/{bob.id}/application_credentials", token=bob.token)
    assert listed.json()["application_credentials"] == []
    rules_left = shared_cloud.get(f"/v3/users/{bob.id}/access_rules", token=bob.token)
    assert rules_left.json()["access_rules"] == []


def test_an_unknown_rule_id_is_not_found(shared_cloud: Cloud) -> None:
    bob = shared_cloud.member("member")
    assert_keystone_error(make_cred(shared_cloud, bob, [{"id": "no-such-rule"}]), 404)


def test_another_user_cannot_read_or_delete_my_rules(cloud: Cloud) -> None:
    alice, mallory = cloud.member("member"), cloud.member("member")
    cred = made(cloud, alice, [SERVERS])
    rule_id = cred["access_rules"][0]["id"]
    base = f"/v3/users/{alice.id}/access_rules"
    assert_keystone_error(cloud.get(base, token=mallory.token), 404)
    assert_keystone_error(cloud.get(f"{base}/{rule_id}", token=mallory.token), 404)
    assert_keystone_error(cloud.delete(f"{base}/{rule_id}", token=mallory.token), 404)
    # nor reuse it by id: it is not hers
    assert_keystone_error(make_cred(cloud, mallory, [{"id": rule_id}]), 404)
    # under her own user the rule does not exist either
    mine = f"/v3/users/{mallory.id}/access_rules/{rule_id}"
    assert_keystone_error(cloud.get(mine, token=mallory.token), 404)
    # a reader of alice's project is another user too
    reader = cloud.member("reader", project_id=alice.project_id)
    assert_keystone_error(cloud.get(base, token=reader.token), 404)
    # the cloud admin sees them
    assert cloud.get(base).json()["access_rules"][0]["id"] == rule_id


# ------------------------------------------------------------------ enforcement


def test_token_limited_to_its_rules_on_every_api(cloud: Cloud) -> None:
    alice = cloud.member("member")
    token = cred_token(cloud, made(cloud, alice, [SERVERS]))
    headers = {"X-Auth-Token": token}
    client = cloud.client
    listed = client.get("/compute/v2.1/servers", headers=headers)
    assert listed.status_code == 200, listed.text
    # another method on the same path: Nova's own fault body
    refused = client.post("/compute/v2.1/servers", headers=headers, json={"server": {}})
    assert refused.status_code == 401, refused.text
    assert refused.json()["unauthorized"]["code"] == 401
    assert "access rule" in refused.json()["unauthorized"]["message"]
    # another path of the same service
    assert client.get("/compute/v2.1/flavors", headers=headers).status_code == 401
    # other services, each in its own error format
    volumes = client.get(f"/volume/v3/{alice.project_id}/volumes", headers=headers)
    assert volumes.status_code == 401 and "unauthorized" in volumes.json()
    networks = client.get("/network/v2.0/networks", headers=headers)
    assert networks.status_code == 401 and "NeutronError" in networks.json()
    assert client.get("/image/v2/images", headers=headers).status_code == 401
    swift = client.get(f"/object-storage/v1/AUTH_{alice.project_id}", headers=headers)
    assert swift.status_code == 401
    # identity itself: even its own credentials
    mine = cloud.get(f"/v3/users/{alice.id}/application_credentials", token=token)
    assert_keystone_error(mine, 401)
    # the user's own password token is not limited
    assert client.get("/image/v2/images", headers=alice.headers).status_code == 200


def test_wildcards_and_project_paths(cloud: Cloud) -> None:
    alice = cloud.member("member")
    rules = [
        {"service": "block-storage", "path": "/v3/*/volumes/**", "method": "GET"},
        {"service": "compute", "path": "/v2.1/**", "method": "GET"},
    ]
    headers = {"X-Auth-Token": cred_token(cloud, made(cloud, alice, rules))}
    client = cloud.client
    assert client.get("/compute/v2.1/flavors/detail", headers=headers).status_code == 200
    assert client.get("/compute/v2.1/servers", headers=headers).status_code == 200
    detail = client.get(f"/volume/v3/{alice.project_id}/volumes/detail", headers=headers)
    assert detail.status_code == 200, detail.text
    # `**` after `/volumes/` does not cover the collection itself, nor another collection
    bare = client.get(f"/volume/v3/{alice.project_id}/volumes", headers=headers)
    assert bare.status_code == 401
    snaps = client.get(f"/volume/v3/{alice.project_id}/snapshots", headers=headers)
    assert snaps.status_code == 401
    assert client.delete("/compute/v2.1/servers/x", headers=headers).status_code == 401


def test_no_ec2_keys_for_a_credential_with_rules(cloud: Cloud) -> None:
    alice = cloud.member("member")
    cred = made(cloud, alice, [SERVERS])
    body = {"tenant_id": alice.project_id}
    # bound by naming the credential in the blob, with the user's own token
    blob = json.dumps({"access": "ak-ruled", "secret": "s", "app_cred_id": cred["id"]})
    stored = {
        "credential": {
            "type": "ec2",
            "blob": blob,
            "user_id": alice.id,
            "project_id": alice.project_id,
        }
    }
    assert_keystone_error(cloud.post("/v3/credentials", stored, token=alice.token), 403)
    # with a token of the credential (identity allowed by a rule)
    rules = [{"service": "identity", "path": "/v3/users/*/credentials/OS-EC2", "method": "POST"}]
    other = made(cloud, alice, rules)
    path = f"/v3/users/{alice.id}/credentials/OS-EC2"
    refused = cloud.post(path, body, token=cred_token(cloud, other))
    assert_keystone_error(refused, 403)
    assert cloud.get(path, token=alice.token).json()["credentials"] == []


def test_swift_matches_head_and_get_apart(cloud: Cloud) -> None:
    alice = cloud.member("member")
    account = f"/v1/AUTH_{alice.project_id}"
    rules = [{"service": "object-store", "path": account, "method": "HEAD"}]
    headers = {"X-Auth-Token": cred_token(cloud, made(cloud, alice, rules))}
    client = cloud.client
    head = client.head(f"/object-storage{account}", headers=headers)
    assert head.status_code == 204, head.text
    assert client.get(f"/object-storage{account}", headers=headers).status_code == 401
    other = f"/object-storage/v1/AUTH_{cloud.admin_project_id}"
    assert client.head(other, headers=headers).status_code == 401


def test_a_ruled_credential_cannot_make_an_unlimited_one(cloud: Cloud) -> None:
    alice = cloud.member("member")
    path = f"/v3/users/{alice.id}/application_credentials"
    rules = [
        {"service": "identity", "path": "/v3/users/*/application_credentials", "method": "POST"}
    ]
    body = {
        "application_credential": {"name": "parent", "access_rules": rules, "unrestricted": True}
    }
    parent = cloud.post(path, body, token=alice.token).json()["application_credential"]
    token = cred_token(cloud, parent)
    child = {"application_credential": {"name": "child"}}
    error = assert_keystone_error(cloud.post(path, child, token=token), 403)
    assert "access rules" in error["message"]
    names = [
        c["name"] for c in cloud.get(path, token=alice.token).json()["application_credentials"]
    ]
    assert "child" not in names
