"""The key manager with the real `openstack` CLI (python-barbicanclient) against a real
server: store, list, get the payload, order a key, delete (an ACL user's read over HTTP);
then `souverain kms rotate --projects` beside the running server, and a second rotate
that deletes the old keys nothing names: the secret still reads back through the CLI;
`souverain kms status` shows the new root key version and nothing left to delete. A
consumer registered by the CLI makes its plain delete refused; `--force` deletes. What
the CLI hides (another project's 404, the ACL user's read) is checked over plain HTTP."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Cloud, run_souverain

pytestmark = pytest.mark.e2e

PAYLOAD = "e2e-kms-payload-9b27d1"


def test_secret_cli_round_trip_survives_rotation(cloud: Cloud) -> None:
    alice, bob = cloud.make_tenant("kms"), cloud.make_tenant("kms-other")
    cloud.secrets.add(PAYLOAD)
    me = alice.cloud_name
    href = cloud.cli_json("secret", "store", "--name", "db-pass", "--payload", PAYLOAD, cloud=me)[
        "Secret href"
    ]
    assert href.startswith(cloud.base_url + "/key-manager/v1/secrets/")
    assert [s["Name"] for s in cloud.cli_json("secret", "list", cloud=me)] == ["db-pass"]
    assert cloud.cli_json("secret", "get", "--payload", href, cloud=me)["Payload"] == PAYLOAD
    order = cloud.cli_json(
        "secret", "order", "create", "key", "--name", "gen", "--bit-length", "256", cloud=me
    )
    path = href.removeprefix(cloud.base_url) + "/payload"
    bob_token, alice_token = cloud.token_for(bob), cloud.token_for(alice)
    assert cloud.api("GET", path, bob_token).status_code == 404
    acl = {"read": {"users": [bob.user_id]}}
    assert cloud.api(
        "PATCH", path.removesuffix("/payload") + "/acl", alice_token, json=acl
    ).is_success
    assert cloud.api("GET", path, bob_token).text == PAYLOAD
    shown = cloud.api("GET", order["Order href"].removeprefix(cloud.base_url), alice_token).json()
    assert shown["status"] == "ACTIVE" and shown["secret_ref"].startswith(cloud.base_url)
    # rotate the root key and every project key while the server runs
    rotated = run_souverain("kms", "rotate", "--projects", "--data-dir", str(cloud.data_dir))
    assert rotated.returncode == 0, rotated.stderr
    old, new = rotated.stdout.split("root key ")[1].split(":")[0].split(" -> ")
    assert f"retired: {old}" in rotated.stdout and "project(s) given a new key" in rotated.stdout
    assert "0 old project key(s) named by nothing deleted" in rotated.stdout  # their grace
    purged = run_souverain(
        "kms", "rotate", "--grace-minutes", "0", "--data-dir", str(cloud.data_dir)
    )
    assert purged.returncode == 0, purged.stderr
    assert f"root key {new} -> " in purged.stdout
    newest = purged.stdout.split("root key ")[1].split(":")[0].split(" -> ")[1]
    status = run_souverain("kms", "status", "--data-dir", str(cloud.data_dir))
    assert "root of trust: file" in status.stdout
    assert f"current root key version: {newest}" in status.stdout
    assert "older root key versions kept: 0 (none)" in status.stdout
    assert "previous project keys named by nothing: 0" in status.stdout
    assert cloud.cli_json("secret", "get", "--payload", href, cloud=me)["Payload"] == PAYLOAD
    generated = shown["secret_ref"].removeprefix(cloud.base_url) + "/payload"
    octets = {"Accept": "application/octet-stream"}
    assert len(cloud.api("GET", generated, alice_token, headers=octets).content) == 32
    # a consumer through the real client, which negotiates 1.2: a plain delete is refused
    use = ("--service-type-name", "image", "--resource-type", "image", "--resource-id", "img-1")
    cloud.cli_ok("secret", "consumer", "create", *use, href, cloud=me)
    assert "has consumers" in cloud.cli_fails("secret", "delete", href, cloud=me)
    cloud.cli_ok("secret", "delete", "--force", href, cloud=me)
    listed = cloud.api("GET", "/key-manager/v1/secrets", alice_token).json()["secrets"]
    assert [s["name"] for s in listed] == ["gen"]
    for output in (rotated.stdout, rotated.stderr, purged.stdout, status.stdout):
        assert PAYLOAD not in output
