"""Barbican's consumers in process: the microversion range in the version documents; a
secret's consumers (shown from 1.1, listed, registered once, removed by body) and the
refused plain delete of a secret that has some (1.2; 1.0 clients still delete); container
consumers; bad input refused with nothing left; tenancy (another project 404, a reader
403, an ACL's user registers and removes its own, a restricted application credential,
the consumers quota); and no consumer row outlives its secret or container."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from souverain.keymanager.models import ContainerConsumer, SecretConsumer

from .support import Cloud, Member
from .test_access_rules import cred_token, made
from .test_keymanager import BASE, error, km, store

V10 = {"OpenStack-API-Version": "key-manager 1.0"}
V11 = {"OpenStack-API-Version": "key-manager 1.1"}
V12 = {"OpenStack-API-Version": "key-manager 1.2"}
GLANCE = {"service": "image", "resource_type": "image", "resource_id": "img-1"}
CINDER = {"service": "volume", "resource_type": "volume", "resource_id": "vol-1"}
HAS_CONSUMERS = "Secret cannot be deleted as it has consumers"


def consumers(cloud: Cloud, sid: str, who: Member | str, query: str = "") -> Any:
    response = km(cloud, "GET", f"/v1/secrets/{sid}/consumers{query}", who)
    assert response.status_code == 200, response.text
    return response.json()


def rows(cloud: Cloud, table: Any, column: Any, entity_id: str) -> int:
    with cloud.platform.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(table).where(column == entity_id)))


def test_versions_say_the_microversion_range_when_asked(shared_cloud: Cloud) -> None:
    client = shared_cloud.client
    root = client.get("/key-manager/", headers=V11)
    assert root.status_code == 300 and root.headers["OpenStack-API-Version"] == "key-manager 1.1"
    [version] = root.json()["versions"]
    assert (version["status"], version["min_version"], version["max_version"]) == (
        "CURRENT",
        "1.0",
        "1.2",
    )
    assert client.get("/key-manager/v1", headers=V12).json()["version"]["max_version"] == "1.2"
    legacy = client.get("/key-manager/v1", headers=V10).json()["version"]
    assert legacy["status"] == "stable" and "max_version" not in legacy
    assert (
        client.get(
            "/key-manager/", headers={"OpenStack-API-Version": "key-manager 1.9"}
        ).status_code
        == 406
    )


def test_secret_consumers_and_the_refused_delete(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    sid = store(cloud, alice)
    path = f"/v1/secrets/{sid}/consumers"
    added = km(cloud, "POST", path, alice, json=GLANCE, headers=V11)
    assert added.status_code == 200, added.text
    assert added.json()["secret_ref"] == f"{BASE}/v1/secrets/{sid}"
    assert added.json()["consumers"] == [GLANCE]
    assert km(cloud, "POST", path, alice, json=GLANCE).status_code == 200  # kept once
    assert km(cloud, "POST", path, alice, json=CINDER).status_code == 200
    assert "consumers" not in km(cloud, "GET", f"/v1/secrets/{sid}", alice).json()  # 1.0
    shown = km(cloud, "GET", f"/v1/secrets/{sid}", alice, headers=V11).json()
    assert shown["consumers"] == [GLANCE, CINDER]
    page = km(cloud, "GET", "/v1/secrets?limit=100", alice, headers=V11).json()["secrets"]
    assert [s["consumers"] for s in page if s["secret_ref"].endswith(sid)] == [[GLANCE, CINDER]]
    listed = consumers(cloud, sid, alice, "?limit=1")
    assert listed["total"] == 2 and "offset=1" in listed["next"]
    [first] = listed["consumers"]
    assert {k: first[k] for k in GLANCE} == GLANCE and first["status"] == "ACTIVE"
    assert first["created"] and first["updated"]
    # from 1.2 a plain delete is refused (Barbican's 400) and so is a bad force
    refused = km(cloud, "DELETE", f"/v1/secrets/{sid}", alice, headers=V12)
    assert HAS_CONSUMERS in error(refused, 400)
    error(km(cloud, "DELETE", f"/v1/secrets/{sid}?force=abc", alice, headers=V12), 400)
    error(km(cloud, "DELETE", f"/v1/secrets/{sid}?force=false", alice, headers=V12), 400)
    # removing a consumer takes its identifying body; one not registered is not found
    gone = km(cloud, "DELETE", path, alice, json=GLANCE, headers=V11)
    assert gone.status_code == 200 and gone.json()["consumers"] == [CINDER]
    error(km(cloud, "DELETE", path, alice, json=GLANCE), 404)
    forced = km(cloud, "DELETE", f"/v1/secrets/{sid}?force=true", alice, headers=V12)
    assert forced.status_code == 204
    assert rows(cloud, SecretConsumer, SecretConsumer.secret_id, sid) == 0
    error(km(cloud, "GET", path, alice), 404)
    # a client at 1.0 deletes as before (python-barbicanclient checks itself there)
    old = store(cloud, alice)
    assert km(cloud, "POST", f"/v1/secrets/{old}/consumers", alice, json=CINDER).is_success
    assert km(cloud, "DELETE", f"/v1/secrets/{old}", alice).status_code == 204
    assert rows(cloud, SecretConsumer, SecretConsumer.secret_id, old) == 0
    # without consumers a 1.2 delete needs no force
    plain = store(cloud, alice)
    assert km(cloud, "DELETE", f"/v1/secrets/{plain}", alice, headers=V12).status_code == 204


def test_bad_consumer_input_is_refused_and_leaves_nothing(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    sid = store(cloud, alice)
    path = f"/v1/secrets/{sid}/consumers"
    missing = km(cloud, "POST", path, alice, json={"service": "image", "resource_type": "image"})
    assert "resource_id" in error(missing, 400)
    for body in (
        {**GLANCE, "resource_id": "x" * 257},
        {**GLANCE, "service": ""},
        {**GLANCE, "service": 7},
        ["not", "an", "object"],
    ):
        error(km(cloud, "POST", path, alice, json=body), 400)
    error(
        km(
            cloud,
            "POST",
            path,
            alice,
            content=b"{nope",
            headers={"Content-Type": "application/json"},
        ),
        400,
    )
    error(km(cloud, "POST", "/v1/secrets/no-such-secret/consumers", alice, json=GLANCE), 404)
    error(
        km(cloud, "POST", f"/v1/containers/{sid}/consumers", alice, json={"name": "x", "URL": "u"}),
        404,
    )
    assert consumers(cloud, sid, alice)["total"] == 0


def test_container_consumers(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    made_ = km(cloud, "POST", "/v1/containers", alice, json={"type": "generic", "secret_refs": []})
    cid = made_.json()["container_ref"].rsplit("/", 1)[1]
    path = f"/v1/containers/{cid}/consumers"
    lb = {"name": "listener-1", "URL": "https://lb.example/listeners/1"}
    added = km(cloud, "POST", path, alice, json=lb)
    assert added.status_code == 200 and added.json()["consumers"] == [lb]
    assert km(cloud, "GET", f"/v1/containers/{cid}", alice).json()["consumers"] == [lb]
    listed = km(cloud, "GET", path, alice).json()
    assert listed["total"] == 1 and listed["consumers"][0]["URL"] == lb["URL"]
    error(km(cloud, "POST", path, alice, json={"name": "x"}), 400)
    assert km(cloud, "DELETE", path, alice, json=lb).json()["consumers"] == []
    assert km(cloud, "POST", path, alice, json=lb).is_success
    assert km(cloud, "DELETE", f"/v1/containers/{cid}", alice).status_code == 204
    assert rows(cloud, ContainerConsumer, ContainerConsumer.container_id, cid) == 0


def test_consumer_tenancy_acl_users_credentials_and_quota(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    bob = cloud.member(project_id=alice.project_id)
    reader = cloud.member("reader", project_id=alice.project_id)
    mallory = cloud.member()  # another project
    sid = store(cloud, alice)
    path = f"/v1/secrets/{sid}/consumers"
    error(km(cloud, "GET", path, mallory), 404)
    error(km(cloud, "POST", path, mallory, json=GLANCE), 404)
    error(km(cloud, "POST", path, reader, json=GLANCE), 403)
    assert consumers(cloud, sid, reader)["total"] == 0
    # an ACL's user of another project registers a consumer, and may remove its own
    acl = {"read": {"users": [mallory.id]}}
    assert km(cloud, "PUT", f"/v1/secrets/{sid}/acl", alice, json=acl).status_code == 200
    assert km(cloud, "POST", path, mallory, json=GLANCE).status_code == 200
    assert km(cloud, "POST", path, alice, json=CINDER).status_code == 200
    error(km(cloud, "DELETE", path, mallory, json=CINDER), 403)  # the secret's project's
    assert km(cloud, "DELETE", path, mallory, json=GLANCE).status_code == 200
    assert km(cloud, "POST", path, mallory, json=GLANCE).status_code == 200
    assert km(cloud, "DELETE", path, bob, json=GLANCE).status_code == 200  # the secret's project
    error(km(cloud, "DELETE", f"/v1/secrets/{sid}", mallory, headers=V12), 403)
    # a private secret: another member of the project neither adds nor removes consumers
    private = {"read": {"project-access": False}}
    assert km(cloud, "PUT", f"/v1/secrets/{sid}/acl", alice, json=private).status_code == 200
    error(km(cloud, "POST", path, bob, json=GLANCE), 403)
    error(km(cloud, "DELETE", path, bob, json=CINDER), 403)
    # an application credential allowed to read payloads only
    rules = [{"service": "key-manager", "path": "/v1/secrets/*/payload", "method": "GET"}]
    token = cred_token(cloud, made(cloud, alice, rules))
    assert km(cloud, "POST", path, token, json=GLANCE).status_code == 401
    assert km(cloud, "DELETE", path, token, json=CINDER).status_code == 401
    assert km(cloud, "GET", path, token).status_code == 401
    # the consumers quota counts the registering project's consumers
    quota = {"project_quotas": {"consumers": 1}}
    assert km(cloud, "PUT", f"/v1/project-quotas/{alice.project_id}", json=quota).status_code == 204
    other = store(cloud, alice)
    error(km(cloud, "POST", f"/v1/secrets/{other}/consumers", alice, json=GLANCE), 403)
    assert consumers(cloud, sid, alice)["consumers"][0]["resource_id"] == CINDER["resource_id"]
    assert km(cloud, "DELETE", f"/v1/project-quotas/{alice.project_id}").status_code == 204
