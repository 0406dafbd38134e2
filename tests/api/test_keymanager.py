"""The key manager (Barbican v1 at /key-manager) in process: wire shapes and codes of
secrets, payloads, metadata, containers, orders, ACLs and quotas; hostile and bad input in
Barbican's error body with nothing left behind; tenancy (another project 404, a reader
cannot write, a private secret, ACL users, a restricted application credential); and no
plaintext payload anywhere in the database."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from souverain.keymanager.models import Secret

from .support import Cloud, Member, SteppingClock
from .test_access_rules import cred_token, made

KM = "/key-manager"
BASE = "http://testserver/key-manager"
TEXT_PAYLOAD = "kms-plaintext-marker-4f0c9e"


def km(cloud: Cloud, method: str, path: str, who: Member | str | None = None, **kw: Any) -> Any:
    token = who.token if isinstance(who, Member) else who or cloud.admin_token
    headers = {"X-Auth-Token": token, **kw.pop("headers", {})}
    return cloud.client.request(method, KM + path, headers=headers, **kw)


def store(cloud: Cloud, who: Member, **fields: Any) -> str:
    body = {"payload": TEXT_PAYLOAD, "payload_content_type": "text/plain", **fields}
    response = km(cloud, "POST", "/v1/secrets/", who, json=body)
    assert response.status_code == 201, response.text
    ref: str = response.json()["secret_ref"]
    assert ref.startswith(f"{BASE}/v1/secrets/")
    return ref.rsplit("/", 1)[1]


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status and body["title"]
    assert TEXT_PAYLOAD not in response.text
    return str(body["description"])


def test_versions_and_catalog(shared_cloud: Cloud) -> None:
    root = shared_cloud.client.get(KM)
    assert root.status_code == 300
    [version] = root.json()["versions"]["values"]
    assert version["id"] == "v1" and version["links"][0]["href"] == f"{BASE}/v1/"
    assert shared_cloud.client.get(KM + "/v1").json()["version"]["id"] == "v1"
    token = shared_cloud.issue(
        {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": "admin",
                            "domain": {"id": "default"},
                            "password": "admin-secret-Pa55word",
                        }
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
            }
        }
    )
    catalog = token.json()["token"]["catalog"]
    assert any(e["type"] == "key-manager" and e["name"] == "barbican" for e in catalog)


def test_secret_lifecycle_shapes_and_payloads(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    secret_id = store(cloud, alice, name="db password", secret_type="passphrase")
    shown = km(cloud, "GET", f"/v1/secrets/{secret_id}", alice).json()
    assert shown["status"] == "ACTIVE" and shown["secret_type"] == "passphrase"
    assert shown["content_types"] == {"default": "text/plain"}
    assert shown["creator_id"] == alice.id and "payload" not in shown
    payload = km(cloud, "GET", f"/v1/secrets/{secret_id}/payload", alice)
    assert payload.text == TEXT_PAYLOAD and payload.headers["content-type"].startswith("text/plain")
    wrong = km(
        cloud, "GET", f"/v1/secrets/{secret_id}/payload", alice, headers={"Accept": "image/png"}
    )
    error(wrong, 406)
    raw = bytes(range(256))
    binary = store(
        cloud,
        alice,
        payload=base64.b64encode(raw).decode(),
        payload_content_type="application/octet-stream",
        payload_content_encoding="base64",
        secret_type="symmetric",
        algorithm="aes",
        bit_length=256,
    )
    got = km(
        cloud,
        "GET",
        f"/v1/secrets/{binary}/payload",
        alice,
        headers={"Accept": "application/octet-stream"},
    )
    assert got.content == raw
    as_text = km(
        cloud, "GET", f"/v1/secrets/{binary}/payload", alice, headers={"Accept": "text/plain"}
    )
    error(as_text, 406)  # not UTF-8: no text representation
    # two-step: the record first, the payload by PUT, once
    two = km(cloud, "POST", "/v1/secrets", alice, json={"name": "later"}).json()["secret_ref"]
    two_id = two.rsplit("/", 1)[1]
    error(km(cloud, "GET", f"/v1/secrets/{two_id}/payload", alice), 404)
    put = km(
        cloud,
        "PUT",
        f"/v1/secrets/{two_id}",
        alice,
        content=b"second step",
        headers={"Content-Type": "text/plain"},
    )
    assert put.status_code == 204, put.text
    assert km(cloud, "GET", f"/v1/secrets/{two_id}/payload", alice).text == "second step"
    again = km(
        cloud,
        "PUT",
        f"/v1/secrets/{two_id}",
        alice,
        content=b"x",
        headers={"Content-Type": "text/plain"},
    )
    error(again, 409)
    listed = km(cloud, "GET", "/v1/secrets?limit=2", alice).json()
    assert listed["total"] == 3 and len(listed["secrets"]) == 2 and "offset=2" in listed["next"]
    named = km(cloud, "GET", "/v1/secrets?name=later", alice).json()
    assert [s["name"] for s in named["secrets"]] == ["later"]
    typed = km(cloud, "GET", "/v1/secrets?secret_type=symmetric", alice).json()
    assert typed["total"] == 1
    assert km(cloud, "DELETE", f"/v1/secrets/{two_id}", alice).status_code == 204
    error(km(cloud, "GET", f"/v1/secrets/{two_id}", alice), 404)


def test_metadata(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    sid = store(cloud, alice)
    path = f"/v1/secrets/{sid}/metadata"
    put = km(cloud, "PUT", path, alice, json={"metadata": {"Color": "blue", "size": "s"}})
    assert put.status_code == 201 and put.json()["metadata_ref"].endswith(path)
    assert km(cloud, "GET", path, alice).json() == {"metadata": {"color": "blue", "size": "s"}}
    added = km(cloud, "POST", path, alice, json={"key": "owner", "value": "ops"})
    assert added.status_code == 201 and added.json() == {"key": "owner", "value": "ops"}
    error(km(cloud, "POST", path, alice, json={"key": "owner", "value": "x"}), 409)
    changed = km(cloud, "PUT", path + "/owner", alice, json={"key": "owner", "value": "dev"})
    assert changed.json() == {"key": "owner", "value": "dev"}
    assert km(cloud, "GET", path + "/owner", alice).json()["value"] == "dev"
    assert km(cloud, "DELETE", path + "/owner", alice).status_code == 204
    error(km(cloud, "GET", path + "/owner", alice), 404)


def test_containers_orders_and_quotas(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    cert, key = store(cloud, alice, secret_type="certificate"), store(cloud, alice)
    refs = [
        {"name": "certificate", "secret_ref": f"{BASE}/v1/secrets/{cert}"},
        {"name": "private_key", "secret_ref": f"{BASE}/v1/secrets/{key}"},
    ]
    made_c = km(
        cloud,
        "POST",
        "/v1/containers",
        alice,
        json={"type": "certificate", "name": "tls", "secret_refs": refs},
    )
    assert made_c.status_code == 201, made_c.text
    cid = made_c.json()["container_ref"].rsplit("/", 1)[1]
    shown = km(cloud, "GET", f"/v1/containers/{cid}", alice).json()
    assert shown["type"] == "certificate" and shown["consumers"] == []
    assert sorted(r["name"] for r in shown["secret_refs"]) == ["certificate", "private_key"]
    bad = km(cloud, "POST", "/v1/containers", alice, json={"type": "rsa", "secret_refs": refs})
    error(bad, 400)
    assert km(cloud, "GET", "/v1/containers", alice).json()["total"] == 1
    # a key order: ACTIVE at once, its secret a 256-bit AES key
    order = km(
        cloud,
        "POST",
        "/v1/orders",
        alice,
        json={
            "type": "key",
            "meta": {"name": "k", "algorithm": "aes", "bit_length": 256, "mode": "cbc"},
        },
    )
    assert order.status_code == 202, order.text
    oid = order.json()["order_ref"].rsplit("/", 1)[1]
    shown_o = km(cloud, "GET", f"/v1/orders/{oid}", alice).json()
    assert shown_o["status"] == "ACTIVE" and shown_o["type"] == "key"
    key_id = shown_o["secret_ref"].rsplit("/", 1)[1]
    generated = km(
        cloud,
        "GET",
        f"/v1/secrets/{key_id}/payload",
        alice,
        headers={"Accept": "application/octet-stream"},
    )
    assert len(generated.content) == 32
    pair = km(
        cloud,
        "POST",
        "/v1/orders",
        alice,
        json={"type": "asymmetric", "meta": {"algorithm": "rsa", "bit_length": 2048}},
    )
    pair_order = km(
        cloud, "GET", "/v1/orders/" + pair.json()["order_ref"].rsplit("/", 1)[1], alice
    ).json()
    container = km(
        cloud, "GET", "/v1/containers/" + pair_order["container_ref"].rsplit("/", 1)[1], alice
    ).json()
    assert container["type"] == "rsa" and len(container["secret_refs"]) == 2
    error(
        km(
            cloud,
            "POST",
            "/v1/orders",
            alice,
            json={"type": "key", "meta": {"algorithm": "aes", "bit_length": 100}},
        ),
        400,
    )
    assert km(cloud, "GET", "/v1/orders", alice).json()["total"] == 2
    # quotas: the caller's, and an admin's per project
    assert km(cloud, "GET", "/v1/quotas", alice).json()["quotas"]["secrets"] == -1
    error(
        km(
            cloud,
            "PUT",
            f"/v1/project-quotas/{alice.project_id}",
            alice,
            json={"project_quotas": {"secrets": 1}},
        ),
        403,
    )
    put = km(
        cloud,
        "PUT",
        f"/v1/project-quotas/{alice.project_id}",
        json={"project_quotas": {"secrets": 1, "containers": 5}},
    )
    assert put.status_code == 204
    assert km(cloud, "GET", f"/v1/project-quotas/{alice.project_id}").json() == {
        "project_quotas": {"secrets": 1, "containers": 5}
    }
    error(km(cloud, "POST", "/v1/secrets", alice, json={"name": "over"}), 403)
    assert km(cloud, "DELETE", f"/v1/project-quotas/{alice.project_id}").status_code == 204


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (
            {
                "payload": "!!!not base64",
                "payload_content_type": "application/octet-stream",
                "payload_content_encoding": "base64",
            },
            400,
        ),
        ({"payload": "x", "payload_content_type": "application/x-evil"}, 400),
        ({"payload": "x"}, 400),
        ({"payload": "", "payload_content_type": "text/plain"}, 400),
        ({"payload": "a" * 20001, "payload_content_type": "text/plain"}, 413),
        ({"name": "n" * 256}, 400),
        ({"secret_type": "rootkit"}, 400),
        ({"bit_length": "256"}, 400),
        ({"expiration": "2001-01-01T00:00:00Z"}, 400),
        ({"expiration": "not a date"}, 400),
        ({"name": "bad\u0000name"}, 400),
        ([1, 2], 400),
    ],
)
def test_bad_secret_input_is_refused_and_leaves_nothing(
    shared_cloud: Cloud, body: Any, status: int
) -> None:
    cloud = shared_cloud
    before = cloud.platform.keymanager.secrets.count() if cloud.platform.keymanager else 0
    error(km(cloud, "POST", "/v1/secrets", json=body), status)
    assert cloud.platform.keymanager is not None
    assert cloud.platform.keymanager.secrets.count() == before


def test_hostile_names_and_bad_puts(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    for name in (
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "'; DROP TABLE kms_secrets; --",
        "é✓\u202e",
    ):
        sid = store(cloud, alice, name=name)
        assert km(cloud, "GET", f"/v1/secrets/{sid}", alice).json()["name"] == name
    two = km(cloud, "POST", "/v1/secrets", alice, json={}).json()["secret_ref"].rsplit("/", 1)[1]
    error(
        km(
            cloud,
            "PUT",
            f"/v1/secrets/{two}",
            alice,
            content=b"x",
            headers={"Content-Type": "image/png"},
        ),
        415,
    )
    error(
        km(
            cloud,
            "PUT",
            f"/v1/secrets/{two}",
            alice,
            content=b"%%%",
            headers={"Content-Type": "application/octet-stream", "Content-Encoding": "base64"},
        ),
        400,
    )
    error(
        km(
            cloud,
            "PUT",
            f"/v1/secrets/{two}",
            alice,
            content=b"a" * 30000,
            headers={"Content-Type": "text/plain"},
        ),
        413,
    )
    error(km(cloud, "GET", "/v1/secrets/not-a-secret", alice), 404)
    error(km(cloud, "GET", "/v1/secrets?limit=abc", alice), 400)
    error(
        km(cloud, "PUT", f"/v1/secrets/{two}/acl", alice, json={"read": {"project-access": "no"}}),
        400,
    )


def test_expired_secret_is_unreadable_and_no_plaintext_is_stored(
    cloud: Cloud, clock: SteppingClock
) -> None:
    alice = cloud.member()
    soon = (clock.now() + dt.timedelta(seconds=60)).isoformat()
    sid = store(cloud, alice, expiration=soon)
    encoded = base64.b64encode(TEXT_PAYLOAD.encode()).decode()
    kept = store(
        cloud,
        alice,
        payload=encoded,
        payload_content_type="application/octet-stream",
        payload_content_encoding="base64",
    )
    assert km(cloud, "GET", f"/v1/secrets/{sid}", alice).json()["expiration"]
    clock.advance(120)
    error(km(cloud, "GET", f"/v1/secrets/{sid}", alice), 404)
    error(km(cloud, "GET", f"/v1/secrets/{sid}/payload", alice), 404)
    listed = km(cloud, "GET", "/v1/secrets", alice).json()["secrets"]
    assert [s["secret_ref"].rsplit("/", 1)[1] for s in listed] == [kept]
    # nothing at rest holds the payload: not a row (either backend), not a file of the data
    # dir (the SQLite database, its WAL, the audit log, the key file)
    marker = TEXT_PAYLOAD.encode()
    assert cloud.platform.keymanager is not None
    with cloud.platform.db.session() as s:
        for row in s.scalars(select(Secret)).all():
            assert row.ciphertext is not None and marker not in row.ciphertext
            assert row.wrapped_key is not None and len(row.wrapped_key) == 12 + 32 + 16
    cloud.platform.audit_log.flush()
    for path in cloud.platform.paths.root.rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes(), path


def test_tenancy_roles_private_secrets_and_acls(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    bob = cloud.member(project_id=alice.project_id)
    reader = cloud.member("reader", project_id=alice.project_id)
    mallory = cloud.member()  # another project
    sid = store(cloud, alice)
    for path in (f"/v1/secrets/{sid}", f"/v1/secrets/{sid}/payload", f"/v1/secrets/{sid}/metadata"):
        error(km(cloud, "GET", path, mallory), 404)
    error(km(cloud, "DELETE", f"/v1/secrets/{sid}", mallory), 404)
    assert km(cloud, "GET", "/v1/secrets", mallory).json()["total"] == 0
    assert km(cloud, "GET", f"/v1/secrets/{sid}/payload", reader).text == TEXT_PAYLOAD
    error(km(cloud, "POST", "/v1/secrets", reader, json={}), 403)
    error(km(cloud, "DELETE", f"/v1/secrets/{sid}", reader), 403)
    error(
        km(
            cloud, "PUT", f"/v1/secrets/{sid}/acl", reader, json={"read": {"project-access": False}}
        ),
        403,
    )
    # private: only its creator and the ACL's users read it
    acl = km(
        cloud,
        "PUT",
        f"/v1/secrets/{sid}/acl",
        alice,
        json={"read": {"project-access": False, "users": [mallory.id]}},
    )
    assert acl.status_code == 200 and acl.json()["acl_ref"] == f"{BASE}/v1/secrets/{sid}/acl"
    shown = km(cloud, "GET", f"/v1/secrets/{sid}/acl", alice).json()["read"]
    assert shown["project-access"] is False and shown["users"] == [mallory.id]
    error(km(cloud, "GET", f"/v1/secrets/{sid}/payload", bob), 403)
    error(km(cloud, "DELETE", f"/v1/secrets/{sid}", bob), 403)
    assert km(cloud, "GET", "/v1/secrets", bob).json()["total"] == 0
    assert km(cloud, "GET", f"/v1/secrets/{sid}/payload", alice).text == TEXT_PAYLOAD
    assert km(cloud, "GET", f"/v1/secrets/{sid}/payload", mallory).text == TEXT_PAYLOAD
    error(km(cloud, "DELETE", f"/v1/secrets/{sid}", mallory), 403)  # ACL reads, never writes
    patch = km(cloud, "PATCH", f"/v1/secrets/{sid}/acl", alice, json={"read": {"users": [bob.id]}})
    assert patch.status_code == 200
    assert km(cloud, "GET", f"/v1/secrets/{sid}/payload", bob).text == TEXT_PAYLOAD
    error(km(cloud, "GET", f"/v1/secrets/{sid}/payload", mallory), 404)
    assert km(cloud, "DELETE", f"/v1/secrets/{sid}/acl", alice).status_code == 200
    assert km(cloud, "GET", f"/v1/secrets/{sid}/acl", alice).json() == {
        "read": {"project-access": True}
    }
    # containers and orders of another project are not found either
    cid = (
        km(cloud, "POST", "/v1/containers", alice, json={"type": "generic", "secret_refs": []})
        .json()["container_ref"]
        .rsplit("/", 1)[1]
    )
    error(km(cloud, "GET", f"/v1/containers/{cid}", mallory), 404)
    error(km(cloud, "DELETE", f"/v1/containers/{cid}", reader), 403)
    foreign = [{"name": "x", "secret_ref": f"{BASE}/v1/secrets/{sid}"}]
    error(
        km(
            cloud,
            "POST",
            "/v1/containers",
            mallory,
            json={"type": "generic", "secret_refs": foreign},
        ),
        404,
    )
    oid = (
        km(
            cloud,
            "POST",
            "/v1/orders",
            alice,
            json={"type": "key", "meta": {"algorithm": "aes", "bit_length": 128}},
        )
        .json()["order_ref"]
        .rsplit("/", 1)[1]
    )
    error(km(cloud, "GET", f"/v1/orders/{oid}", mallory), 404)
    error(km(cloud, "GET", "/v1/project-quotas", alice), 403)


def test_restricted_application_credential(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    sid = store(cloud, alice)
    rules = [{"service": "key-manager", "path": "/v1/secrets/*/payload", "method": "GET"}]
    token = cred_token(cloud, made(cloud, alice, rules))
    assert km(cloud, "GET", f"/v1/secrets/{sid}/payload", token).text == TEXT_PAYLOAD
    assert km(cloud, "GET", "/v1/secrets", token).status_code == 401
    assert km(cloud, "POST", "/v1/secrets", token, json={}).status_code == 401
    assert km(cloud, "DELETE", f"/v1/secrets/{sid}", token).status_code == 401
