"""Private volume types and the projects given access (os-volume-type-access), extra
specs, and QoS specs associated with types: admin-only writes, tenant isolation."""

from __future__ import annotations

from typing import Any

from .support import Cloud
from .test_volumes import Cinder, admin, cinder_error, cloud, tenant

__all__ = ["cloud"]


def private_type(a: Cinder, name: str) -> str:
    body = {"volume_type": {"name": name, "os-volume-type-access:is_public": False}}
    made = a.post("/types", body)
    assert made.status_code == 200, made.text
    type_id: str = made.json()["volume_type"]["id"]
    assert made.json()["volume_type"]["is_public"] is False
    return type_id


def type_names(c: Cinder) -> set[str]:
    return {t["name"] for t in c.get("/types").json()["volume_types"]}


def test_a_private_type_is_seen_and_used_only_by_projects_given_access(cloud: Cloud) -> None:
    a, alice, bob = admin(cloud), tenant(cloud), tenant(cloud)
    type_id = private_type(a, "private-gold")
    assert "private-gold" not in type_names(alice)
    cinder_error(alice.get(f"/types/{type_id}"), 404)
    cinder_error(alice.post("/volumes", {"volume": {"size": 1, "volume_type": type_id}}), 404)

    add = {"addProjectAccess": {"project": alice.project_id}}
    assert a.post(f"/types/{type_id}/action", add).status_code == 202
    cinder_error(a.post(f"/types/{type_id}/action", add), 409)
    access = a.get(f"/types/{type_id}/os-volume-type-access").json()["volume_type_access"]
    assert access == [{"volume_type_id": type_id, "project_id": alice.project_id}]

    assert "private-gold" in type_names(alice) and "private-gold" not in type_names(bob)
    vol = alice.create(volume_type="private-gold")
    assert vol["volume_type"] == "private-gold"
    cinder_error(bob.post("/volumes", {"volume": {"size": 1, "volume_type": type_id}}), 404)

    remove = {"removeProjectAccess": {"project": alice.project_id}}
    assert a.post(f"/types/{type_id}/action", remove).status_code == 202
    cinder_error(a.post(f"/types/{type_id}/action", remove), 404)
    assert "private-gold" not in type_names(alice)


def test_only_admins_change_or_read_access(cloud: Cloud) -> None:
    a, alice = admin(cloud), tenant(cloud)
    type_id = private_type(a, "private-silver")
    add = {"addProjectAccess": {"project": alice.project_id}}
    cinder_error(alice.post(f"/types/{type_id}/action", add), 403)
    cinder_error(alice.get(f"/types/{type_id}/os-volume-type-access"), 403)
    assert "private-silver" not in type_names(alice)


def test_access_refusals_say_why(cloud: Cloud) -> None:
    a = admin(cloud)
    public = a.post("/types", {"volume_type": {"name": "public-bronze"}}).json()["volume_type"]
    message = cinder_error(
        a.post(f"/types/{public['id']}/action", {"addProjectAccess": {"project": "p"}}), 400
    )
    assert "public" in message
    cinder_error(a.get(f"/types/{public['id']}/os-volume-type-access"), 404)
    cinder_error(a.post(f"/types/{public['id']}/action", {"addProjectAccess": {}}), 400)
    cinder_error(a.post(f"/types/{public['id']}/action", {"bogus": {"project": "p"}}), 400)
    cinder_error(a.post("/types/nope/action", {"addProjectAccess": {"project": "p"}}), 404)


def test_admins_filter_types_by_is_public(cloud: Cloud) -> None:
    a = admin(cloud)
    private_type(a, "private-filter")

    def names(query: str) -> set[str]:
        return {t["name"] for t in a.get(f"/types{query}").json()["volume_types"]}

    private, public, every = names("?is_public=false"), names("?is_public=true"), names("")
    assert "private-filter" in private and "__DEFAULT__" not in private
    assert "private-filter" not in public and "__DEFAULT__" in public
    assert every == public  # Cinder's default for an admin: the public types
    assert {"private-filter", "__DEFAULT__"} <= names("?is_public=None")
    cinder_error(a.get("/types?is_public=maybe"), 400)
    listed = tenant(cloud).get("/types?is_public=none").json()["volume_types"]
    assert "private-filter" not in {t["name"] for t in listed}


def qos(a: Cinder, name: str, **specs: Any) -> dict[str, Any]:
    made = a.post("/qos-specs", {"qos_specs": {"name": name, **specs}})
    assert made.status_code == 200, made.text
    body: dict[str, Any] = made.json()
    assert set(body) == {"qos_specs", "links"}
    return body["qos_specs"]  # type: ignore[no-any-return]


def test_qos_specs_crud_keys_and_associations(cloud: Cloud) -> None:
    a = admin(cloud)
    spec = qos(a, "fast-io", consumer="front-end", read_iops_sec="2000")
    assert spec["consumer"] == "front-end" and spec["specs"] == {"read_iops_sec": "2000"}
    cinder_error(a.post("/qos-specs", {"qos_specs": {"name": "fast-io"}}), 409)
    cinder_error(a.post("/qos-specs", {"qos_specs": {"name": "x", "consumer": "disk"}}), 400)
    qid = spec["id"]
    changed = a.put(f"/qos-specs/{qid}", {"qos_specs": {"write_iops_sec": "500"}}).json()
    assert changed == {"qos_specs": {"write_iops_sec": "500"}}
    assert a.put(f"/qos-specs/{qid}/delete_keys", {"keys": ["read_iops_sec"]}).status_code == 202
    cinder_error(a.put(f"/qos-specs/{qid}/delete_keys", {"keys": ["nope"]}), 404)
    assert a.get(f"/qos-specs/{qid}").json()["qos_specs"]["specs"] == {"write_iops_sec": "500"}

    vtype = a.post("/types", {"volume_type": {"name": "qos-typed"}}).json()["volume_type"]
    assert a.get(f"/qos-specs/{qid}/associate?vol_type_id={vtype['id']}").status_code == 202
    assoc = a.get(f"/qos-specs/{qid}/associations").json()["qos_associations"]
    assert assoc == [{"association_type": "volume_type", "id": vtype["id"], "name": "qos-typed"}]
    assert a.get(f"/types/{vtype['id']}").json()["volume_type"]["qos_specs_id"] == qid
    other = qos(a, "slow-io")
    cinder_error(a.get(f"/qos-specs/{other['id']}/associate?vol_type_id={vtype['id']}"), 400)
    cinder_error(a.get(f"/qos-specs/{qid}/associate"), 400)
    message = cinder_error(a.delete(f"/qos-specs/{qid}"), 400)
    assert "force" in message

    assert a.get(f"/qos-specs/{qid}/disassociate?vol_type_id={vtype['id']}").status_code == 202
    assert a.get(f"/qos-specs/{qid}/associations").json()["qos_associations"] == []
    a.get(f"/qos-specs/{qid}/associate?vol_type_id={vtype['id']}")
    assert a.get(f"/qos-specs/{qid}/disassociate_all").status_code == 202
    assert a.get(f"/types/{vtype['id']}").json()["volume_type"]["qos_specs_id"] is None
    a.get(f"/qos-specs/{qid}/associate?vol_type_id={vtype['id']}")
    assert a.delete(f"/qos-specs/{qid}?force=true").status_code == 202
    cinder_error(a.get(f"/qos-specs/{qid}"), 404)
    assert a.get(f"/types/{vtype['id']}").json()["volume_type"]["qos_specs_id"] is None
    listed = {q["name"] for q in a.get("/qos-specs").json()["qos_specs"]}
    assert "fast-io" not in listed and "slow-io" in listed


def test_qos_specs_are_admin_only(cloud: Cloud) -> None:
    a, c = admin(cloud), tenant(cloud)
    spec = qos(a, "hidden-io")
    cinder_error(c.get("/qos-specs"), 403)
    cinder_error(c.get(f"/qos-specs/{spec['id']}"), 403)
    cinder_error(c.post("/qos-specs", {"qos_specs": {"name": "mine"}}), 403)
    cinder_error(c.get(f"/qos-specs/{spec['id']}/disassociate_all"), 403)
    cinder_error(c.delete(f"/qos-specs/{spec['id']}"), 403)
    assert a.get(f"/qos-specs/{spec['id']}").status_code == 200


def test_retype_changes_the_type_of_an_available_volume(cloud: Cloud) -> None:
    a, c, other = admin(cloud), tenant(cloud), tenant(cloud)
    a.post("/types", {"volume_type": {"name": "retype-target"}})
    private_id = private_type(a, "retype-private")
    volume_id = c.create()["id"]
    assert c.action(volume_id, "os-retype", {"new_type": "retype-target"}).status_code == 202
    assert c.show(volume_id)["volume_type"] == "retype-target"
    cinder_error(c.action(volume_id, "os-retype", {"new_type": "retype-target"}), 400)
    cinder_error(c.action(volume_id, "os-retype", {"new_type": private_id}), 404)
    cinder_error(c.action(volume_id, "os-retype", {}), 400)
    cinder_error(other.action(volume_id, "os-retype", {"new_type": "__DEFAULT__"}), 404)
    assert c.show(volume_id)["volume_type"] == "retype-target"
