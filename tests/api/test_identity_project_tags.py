"""Project tags: /v3/projects/{id}/tags read by who sees the project, written by admins;
projects listed by tags, tags-any, not-tags and not-tags-any."""

from __future__ import annotations

from .support import Cloud, assert_keystone_error


def _tags(cloud: Cloud, project_id: str, token: str | None = None) -> list[str]:
    response = cloud.get(f"/v3/projects/{project_id}/tags", token=token)
    assert response.status_code == 200, response.text
    tags: list[str] = response.json()["tags"]
    return tags


def test_admin_adds_replaces_checks_and_removes_tags(cloud: Cloud) -> None:
    project = cloud.project()
    base = f"/v3/projects/{project['id']}/tags"
    assert cloud.put(f"{base}/blue").status_code == 201
    assert cloud.put(f"{base}/blue").status_code == 201  # adding twice keeps one
    assert _tags(cloud, project["id"]) == ["blue"]
    assert cloud.get(f"{base}/blue").status_code == 204
    assert_keystone_error(cloud.get(f"{base}/red"), 404)
    replaced = cloud.put(base, json={"tags": ["red", "green", "red"]})
    assert replaced.status_code == 200 and replaced.json()["tags"] == ["red", "green"]
    assert replaced.json()["links"]["self"].endswith(f"/v3/projects/{project['id']}/tags")
    assert cloud.get(f"/v3/projects/{project['id']}").json()["project"]["tags"] == ["red", "green"]
    assert cloud.delete(f"{base}/red").status_code == 204
    assert_keystone_error(cloud.delete(f"{base}/red"), 404)
    assert cloud.delete(base).status_code == 204
    assert _tags(cloud, project["id"]) == []


def test_bad_tags_are_400_and_change_nothing(cloud: Cloud) -> None:
    project = cloud.project()
    base = f"/v3/projects/{project['id']}/tags"
    assert cloud.put(f"{base}/keep").status_code == 201
    for body in ({"tags": "x"}, {"tags": ["a,b"]}, {"tags": [""]}, {"tags": ["x" * 256]}, {}):
        assert_keystone_error(cloud.put(base, json=body), 400)
    assert_keystone_error(cloud.put(base, json={"tags": [f"t{i}" for i in range(81)]}), 400)
    assert_keystone_error(cloud.put(f"{base}/a,b"), 400)
    assert _tags(cloud, project["id"]) == ["keep"]
    assert_keystone_error(cloud.get("/v3/projects/nothing/tags"), 404)


def test_members_read_their_project_tags_but_cannot_write_or_see_others(cloud: Cloud) -> None:
    person = cloud.member()
    other = cloud.project()
    base = f"/v3/projects/{person.project_id}/tags"
    assert cloud.put(f"{base}/prod").status_code == 201
    assert _tags(cloud, person.project_id, token=person.token) == ["prod"]
    assert_keystone_error(cloud.put(f"{base}/mine", token=person.token), 403)
    assert_keystone_error(cloud.delete(base, token=person.token), 403)
    assert_keystone_error(cloud.get(f"/v3/projects/{other['id']}/tags", token=person.token), 404)
    assert _tags(cloud, person.project_id) == ["prod"]


def test_projects_are_listed_by_their_tags(cloud: Cloud) -> None:
    both = cloud.project(tags=["a1", "b1"])
    only_a = cloud.project(tags=["a1"])
    neither = cloud.project(tags=["c1"])
    mine = {both["id"], only_a["id"], neither["id"]}

    def listed(query: str) -> set[str]:
        projects = cloud.get(f"/v3/projects?{query}").json()["projects"]
        return {p["id"] for p in projects} & mine

    assert listed("tags=a1,b1") == {both["id"]}
    assert listed("tags-any=b1,c1") == {both["id"], neither["id"]}
    assert listed("not-tags=a1,b1") == {only_a["id"], neither["id"]}
    assert listed("not-tags-any=b1,c1") == {only_a["id"]}
