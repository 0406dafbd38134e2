"""CRUD, filters and pagination of the Keystone collections."""

from __future__ import annotations

from typing import Any

import pytest

from .support import Cloud, assert_keystone_error

MISSING = "0123456789abcdef0123456789abcdef"


def ids(response: Any, collection: str) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()[collection]]


def walk_pages(cloud: Cloud, path: str, collection: str, limit: int) -> list[str]:
    """Follow links.next until it is null, as openstacksdk does."""
    seen: list[str] = []
    url = f"{path}{'&' if '?' in path else '?'}limit={limit}"
    for _ in range(100):
        response = cloud.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        page = [item["id"] for item in body[collection]]
        assert len(page) <= limit
        seen.extend(page)
        following = body["links"]["next"]
        if following is None:
            return seen
        assert f"marker={page[-1]}" in following
        url = following.split("/identity", 1)[1]
    raise AssertionError("pagination never ended")


# ---------------------------------------------------------------- domains


def test_domain_crud(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name="acme", description="ACME corp", tags=["eu"])
    assert domain["enabled"] is True and domain["tags"] == ["eu"]
    assert domain["links"]["self"].endswith(f"/v3/domains/{domain['id']}")
    assert cloud.get(f"/v3/domains/{domain['id']}").json()["domain"]["name"] == "acme"
    assert ids(cloud.get("/v3/domains?name=acme"), "domains") == [domain["id"]]
    updated = cloud.patch(f"/v3/domains/{domain['id']}", {"domain": {"description": "new"}})
    assert updated.json()["domain"]["description"] == "new"
    # Keystone refuses to delete an enabled domain.
    assert_keystone_error(cloud.delete(f"/v3/domains/{domain['id']}"), 403)
    cloud.patch(f"/v3/domains/{domain['id']}", {"domain": {"enabled": False}})
    assert ids(cloud.get("/v3/domains?enabled=false"), "domains") == [domain["id"]]
    assert domain["id"] not in ids(cloud.get("/v3/domains?enabled=true"), "domains")
    assert cloud.delete(f"/v3/domains/{domain['id']}").status_code == 204
    assert_keystone_error(cloud.get(f"/v3/domains/{domain['id']}"), 404)


def test_domain_with_explicit_id_and_duplicate_name(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name="d1", explicit_domain_id=MISSING)
    assert domain["id"] == MISSING
    assert_keystone_error(cloud.post("/v3/domains", {"domain": {"name": "d1"}}), 409)


def test_domain_holding_projects_cannot_be_deleted(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name="busy")
    cloud.project(domain_id=domain["id"])
    cloud.patch(f"/v3/domains/{domain['id']}", {"domain": {"enabled": False}})
    assert_keystone_error(cloud.delete(f"/v3/domains/{domain['id']}"), 409)


def test_default_domain_cannot_be_disabled(cloud: Cloud) -> None:
    assert_keystone_error(cloud.patch("/v3/domains/default", {"domain": {"enabled": False}}), 403)


# ---------------------------------------------------------------- projects


def test_project_crud_and_hierarchy(cloud: Cloud) -> None:
    parent = cloud.project("parent", description="top")
    assert parent["parent_id"] == "default" and parent["domain_id"] == "default"
    child = cloud.project("child", parent_id=parent["id"])
    assert child["parent_id"] == parent["id"]
    assert ids(cloud.get(f"/v3/projects?parent_id={parent['id']}"), "projects") == [child["id"]]
    assert ids(cloud.get("/v3/projects?name=child"), "projects") == [child["id"]]
    assert_keystone_error(cloud.delete(f"/v3/projects/{parent['id']}"), 403)
    patched = cloud.patch(
        f"/v3/projects/{child['id']}", {"project": {"name": "kid", "tags": ["a"]}}
    )
    assert patched.status_code == 200
    assert patched.json()["project"]["name"] == "kid"
    assert patched.json()["project"]["tags"] == ["a"]
    assert cloud.delete(f"/v3/projects/{child['id']}").status_code == 204
    assert cloud.delete(f"/v3/projects/{parent['id']}").status_code == 204
    assert_keystone_error(cloud.get(f"/v3/projects/{parent['id']}"), 404)


def test_project_filters_by_domain_and_enabled(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name="other")
    there = cloud.project("there", domain_id=domain["id"])
    off = cloud.project("off", enabled=False)
    assert ids(cloud.get(f"/v3/projects?domain_id={domain['id']}"), "projects") == [there["id"]]
    assert ids(cloud.get("/v3/projects?enabled=false"), "projects") == [off["id"]]


def test_project_with_unknown_parent_or_domain_is_404(cloud: Cloud) -> None:
    assert_keystone_error(
        cloud.post("/v3/projects", {"project": {"name": "x", "parent_id": MISSING}}), 404
    )
    assert_keystone_error(
        cloud.post("/v3/projects", {"project": {"name": "x", "domain_id": MISSING}}), 404
    )


def test_project_name_is_unique_per_domain(cloud: Cloud) -> None:
    cloud.project("same")
    assert_keystone_error(cloud.post("/v3/projects", {"project": {"name": "same"}}), 409)
    domain = cloud.create("domains", "domain", name="elsewhere")
    assert cloud.project("same", domain_id=domain["id"])["name"] == "same"


def test_project_cannot_move_domain(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name="d")
    project = cloud.project()
    body = {"project": {"domain_id": domain["id"]}}
    assert_keystone_error(cloud.patch(f"/v3/projects/{project['id']}", body), 400)


# ---------------------------------------------------------------- users


def test_user_crud_never_shows_a_password(cloud: Cloud) -> None:
    user = cloud.user("alice", password="alice-Pa55word", email="a@example.com")
    assert "password" not in user and user["email"] == "a@example.com"
    assert user["domain_id"] == "default" and user["enabled"] is True
    got = cloud.get(f"/v3/users/{user['id']}").json()["user"]
    assert got["name"] == "alice" and "password" not in got
    assert ids(cloud.get("/v3/users?name=alice"), "users") == [user["id"]]
    assert ids(cloud.get("/v3/users?domain_id=default&name=alice"), "users") == [user["id"]]
    patched = cloud.patch(f"/v3/users/{user['id']}", {"user": {"email": "b@example.com"}})
    assert patched.json()["user"]["email"] == "b@example.com"
    assert cloud.delete(f"/v3/users/{user['id']}").status_code == 204
    assert_keystone_error(cloud.get(f"/v3/users/{user['id']}"), 404)
    assert_keystone_error(cloud.delete(f"/v3/users/{user['id']}"), 404)


def test_user_name_is_unique_per_domain(cloud: Cloud) -> None:
    cloud.user("bob")
    assert_keystone_error(cloud.post("/v3/users", {"user": {"name": "bob"}}), 409)


def test_disabled_users_filter(cloud: Cloud) -> None:
    off = cloud.user(enabled=False)
    assert ids(cloud.get("/v3/users?enabled=false"), "users") == [off["id"]]


def test_admin_cannot_delete_itself(cloud: Cloud) -> None:
    assert_keystone_error(cloud.delete(f"/v3/users/{cloud.admin_id}"), 403)


# ---------------------------------------------------------------- groups and membership


def test_group_crud_and_membership(cloud: Cloud) -> None:
    group = cloud.create("groups", "group", name="ops", description="operators")
    user = cloud.user()
    member_path = f"/v3/groups/{group['id']}/users/{user['id']}"
    assert cloud.head(member_path).status_code == 404
    assert_keystone_error(cloud.get(member_path), 404)
    assert cloud.put(member_path).status_code == 204
    assert cloud.put(member_path).status_code == 204  # idempotent
    assert cloud.head(member_path).status_code == 204
    assert cloud.get(member_path).status_code == 204
    assert ids(cloud.get(f"/v3/groups/{group['id']}/users"), "users") == [user["id"]]
    assert ids(cloud.get(f"/v3/users/{user['id']}/groups"), "groups") == [group["id"]]
    assert ids(cloud.get("/v3/groups?name=ops"), "groups") == [group["id"]]
    renamed = cloud.patch(f"/v3/groups/{group['id']}", {"group": {"name": "sre"}})
    assert renamed.json()["group"]["name"] == "sre"
    assert cloud.delete(member_path).status_code == 204
    assert_keystone_error(cloud.delete(member_path), 404)
    assert ids(cloud.get(f"/v3/groups/{group['id']}/users"), "users") == []
    assert cloud.delete(f"/v3/groups/{group['id']}").status_code == 204
    assert_keystone_error(cloud.get(f"/v3/groups/{group['id']}"), 404)


def test_group_membership_with_unknown_ids_is_404(cloud: Cloud) -> None:
    group = cloud.create("groups", "group", name="g")
    user = cloud.user()
    assert_keystone_error(cloud.put(f"/v3/groups/{MISSING}/users/{user['id']}"), 404)
    assert_keystone_error(cloud.put(f"/v3/groups/{group['id']}/users/{MISSING}"), 404)


def test_group_name_is_unique_per_domain(cloud: Cloud) -> None:
    cloud.create("groups", "group", name="g")
    assert_keystone_error(cloud.post("/v3/groups", {"group": {"name": "g"}}), 409)


# ---------------------------------------------------------------- roles


def test_role_crud(cloud: Cloud) -> None:
    role = cloud.create("roles", "role", name="auditor", description="reads logs")
    assert ids(cloud.get("/v3/roles?name=auditor"), "roles") == [role["id"]]
    assert {"admin", "member", "reader", "auditor"} <= {
        r["name"] for r in cloud.get("/v3/roles").json()["roles"]
    }
    patched = cloud.patch(f"/v3/roles/{role['id']}", {"role": {"name": "inspector"}})
    assert patched.json()["role"]["name"] == "inspector"
    assert_keystone_error(cloud.post("/v3/roles", {"role": {"name": "inspector"}}), 409)
    assert cloud.delete(f"/v3/roles/{role['id']}").status_code == 204
    assert_keystone_error(cloud.get(f"/v3/roles/{role['id']}"), 404)


def test_builtin_roles_cannot_be_renamed_or_deleted(cloud: Cloud) -> None:
    admin = cloud.role_ids["admin"]
    assert_keystone_error(cloud.patch(f"/v3/roles/{admin}", {"role": {"name": "boss"}}), 403)
    assert_keystone_error(cloud.delete(f"/v3/roles/{admin}"), 403)


# ---------------------------------------------------------------- catalog


def test_region_crud(cloud: Cloud) -> None:
    assert "fr-1" in ids(cloud.get("/v3/regions"), "regions")
    parent = cloud.create("regions", "region", id="eu-west", description="West")
    child = cloud.create("regions", "region", id="eu-west-1", parent_region_id="eu-west")
    assert child["parent_region_id"] == "eu-west"
    assert ids(cloud.get("/v3/regions?parent_region_id=eu-west"), "regions") == ["eu-west-1"]
    assert_keystone_error(cloud.post("/v3/regions", {"region": {"id": "eu-west"}}), 409)
    assert_keystone_error(cloud.delete(f"/v3/regions/{parent['id']}"), 409)
    assert_keystone_error(
        cloud.patch("/v3/regions/eu-west", {"region": {"parent_region_id": "eu-west"}}), 400
    )
    patched = cloud.patch("/v3/regions/eu-west-1", {"region": {"description": "one"}})
    assert patched.json()["region"]["description"] == "one"
    assert cloud.delete("/v3/regions/eu-west-1").status_code == 204
    assert cloud.delete("/v3/regions/eu-west").status_code == 204
    assert_keystone_error(cloud.get("/v3/regions/eu-west"), 404)
    generated = cloud.create("regions", "region", description="no id given")
    assert len(generated["id"]) == 32


def test_service_and_endpoint_crud_shape_the_catalog(cloud: Cloud) -> None:
    service = cloud.create("services", "service", type="placement", name="placement")
    assert ids(cloud.get("/v3/services?type=placement"), "services") == [service["id"]]
    endpoint = cloud.create(
        "endpoints",
        "endpoint",
        service_id=service["id"],
        interface="public",
        url="http://example.test/placement",
        region_id="fr-1",
    )
    assert endpoint["region_id"] == "fr-1" and endpoint["enabled"] is True
    filtered = cloud.get(f"/v3/endpoints?service_id={service['id']}&interface=public")
    assert ids(filtered, "endpoints") == [endpoint["id"]]
    catalog = cloud.get("/v3/auth/catalog").json()["catalog"]
    placement = next(s for s in catalog if s["type"] == "placement")
    assert placement["endpoints"][0]["url"] == "http://example.test/placement"
    patched = cloud.patch(
        f"/v3/endpoints/{endpoint['id']}", {"endpoint": {"url": "https://example.test/c"}}
    )
    assert patched.json()["endpoint"]["url"] == "https://example.test/c"
    cloud.patch(f"/v3/services/{service['id']}", {"service": {"enabled": False}})
    catalog = cloud.get("/v3/auth/catalog").json()["catalog"]
    assert "placement" not in {s["type"] for s in catalog}
    assert cloud.delete(f"/v3/endpoints/{endpoint['id']}").status_code == 204
    assert_keystone_error(cloud.get(f"/v3/endpoints/{endpoint['id']}"), 404)
    assert cloud.delete(f"/v3/services/{service['id']}").status_code == 204
    assert_keystone_error(cloud.get(f"/v3/services/{service['id']}"), 404)


def test_endpoint_needs_a_known_service_and_region(cloud: Cloud) -> None:
    service = cloud.create("services", "service", type="image")
    body = {"service_id": MISSING, "interface": "public", "url": "http://x.test"}
    assert_keystone_error(cloud.post("/v3/endpoints", {"endpoint": body}), 404)
    body = {"service_id": service["id"], "interface": "public", "url": "http://x.test"}
    assert_keystone_error(
        cloud.post("/v3/endpoints", {"endpoint": {**body, "region_id": "nowhere"}}), 404
    )
    assert_keystone_error(
        cloud.post("/v3/endpoints", {"endpoint": {**body, "interface": "private"}}), 400
    )
    assert_keystone_error(
        cloud.post("/v3/endpoints", {"endpoint": {**body, "url": "ftp://x.test"}}), 400
    )


# ---------------------------------------------------------------- unknown ids


@pytest.mark.parametrize(
    "collection",
    ["domains", "projects", "users", "groups", "roles", "regions", "services", "endpoints",
     "credentials"],
)  # fmt: skip
def test_unknown_id_is_404_for_get_patch_and_delete(shared_cloud: Cloud, collection: str) -> None:
    cloud, member = shared_cloud, collection[:-1]
    assert_keystone_error(cloud.get(f"/v3/{collection}/{MISSING}"), 404)
    assert_keystone_error(cloud.patch(f"/v3/{collection}/{MISSING}", {member: {}}), 404)
    assert_keystone_error(cloud.delete(f"/v3/{collection}/{MISSING}"), 404)


# ---------------------------------------------------------------- pagination


@pytest.mark.parametrize(
    ("collection", "member", "make"),
    [
        ("projects", "project", lambda c, i: {"name": f"p{i:02d}"}),
        ("users", "user", lambda c, i: {"name": f"u{i:02d}"}),
        ("groups", "group", lambda c, i: {"name": f"g{i:02d}"}),
        ("domains", "domain", lambda c, i: {"name": f"d{i:02d}"}),
        ("roles", "role", lambda c, i: {"name": f"r{i:02d}"}),
        ("regions", "region", lambda c, i: {"id": f"region-{i:02d}"}),
        ("services", "service", lambda c, i: {"type": f"t{i:02d}"}),
    ],
)
def test_limit_and_marker_walk_every_item_once(
    cloud: Cloud, collection: str, member: str, make: Any
) -> None:
    for i in range(7):
        cloud.create(collection, member, **make(cloud, i))
    everything = ids(cloud.get(f"/v3/{collection}"), collection)
    assert cloud.get(f"/v3/{collection}").json()["links"]["next"] is None
    for limit in (1, 3, len(everything), len(everything) + 5):
        assert walk_pages(cloud, f"/v3/{collection}", collection, limit) == everything


def test_pagination_keeps_filters_in_the_next_link(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name="paged")
    made = [cloud.project(f"x{i}", domain_id=domain["id"])["id"] for i in range(5)]
    cloud.project("not-in-the-domain")
    walked = walk_pages(cloud, f"/v3/projects?domain_id={domain['id']}", "projects", 2)
    assert sorted(walked) == sorted(made)


def test_bad_limit_or_marker_is_400(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    for query in ("limit=0", "limit=-1", "limit=abc", f"marker={MISSING}"):
        assert_keystone_error(cloud.get(f"/v3/projects?{query}"), 400)


def test_top_level_projects_are_found_by_their_domain_as_parent(cloud: Cloud) -> None:
    """Keystone reports a top-level project's parent_id as its domain, and filters the same way."""
    top = cloud.project("top")
    cloud.project("below", parent_id=top["id"])
    listed = cloud.get("/v3/projects?parent_id=default").json()["projects"]
    assert {p["name"] for p in listed} == {"admin", "top"}
    assert all(p["parent_id"] == "default" for p in listed)
