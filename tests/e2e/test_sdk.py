"""openstacksdk in-process against the real server: listing, paging, bulk changes, grants."""

from __future__ import annotations

import pytest
from openstack import exceptions

from tests.e2e.conftest import Cloud, unique

pytestmark = pytest.mark.e2e


def test_sdk_creates_finds_updates_and_deletes_projects_and_users(cloud: Cloud) -> None:
    identity = cloud.admin.identity
    name = unique("sdk")
    project = identity.create_project(name=f"{name}-p", description="made by sdk")
    user = identity.create_user(
        name=f"{name}-u", password=unique("pw"), default_project_id=project.id
    )

    assert project.id in {p.id for p in identity.projects()}
    assert user.id in {u.id for u in identity.users()}
    assert [p.id for p in identity.projects(name=f"{name}-p")] == [project.id]
    assert [u.id for u in identity.users(name=f"{name}-u")] == [user.id]
    assert identity.get_user(user.id).default_project_id == project.id

    identity.update_project(project, description="changed")
    assert identity.get_project(project.id).description == "changed"

    identity.delete_user(user)
    identity.delete_project(project)
    with pytest.raises(exceptions.NotFoundException):
        identity.get_project(project.id)
    with pytest.raises(exceptions.NotFoundException):
        identity.get_user(user.id)
    assert project.id not in {p.id for p in identity.projects()}


def test_sdk_paging_with_limit_still_returns_every_project_and_user(cloud: Cloud) -> None:
    identity = cloud.admin.identity
    label = unique("page")
    made = [identity.create_project(name=f"{label}-{i}") for i in range(5)]
    users = [identity.create_user(name=f"{label}-u{i}") for i in range(5)]

    # The server really pages: two per page and a link to the next one.
    first_page = cloud.http("GET", "/v3/projects?limit=2", token=cloud.admin_token()).json()
    assert len(first_page["projects"]) == 2
    assert first_page["links"]["next"]

    everything = [p.id for p in identity.projects()]
    paged = [p.id for p in identity.projects(limit=2)]
    assert len(paged) == len(set(paged)) == len(everything) >= 6
    assert set(paged) == set(everything) >= {p.id for p in made}

    paged_users = [u.id for u in identity.users(limit=2)]
    assert len(paged_users) == len(set(paged_users))
    assert set(paged_users) == {u.id for u in identity.users()} >= {u.id for u in users}


def test_sdk_creates_and_deletes_many_users_and_groups(cloud: Cloud) -> None:
    identity = cloud.admin.identity
    label = unique("bulk")
    users = [identity.create_user(name=f"{label}-u{i}", password=unique("pw")) for i in range(15)]
    groups = [identity.create_group(name=f"{label}-g{i}") for i in range(5)]
    for i, user in enumerate(users):
        identity.add_user_to_group(user, groups[i % len(groups)])
    for group in groups:
        members = {u.id for u in identity.group_users(group)}
        assert len(members) == 3
        assert all(identity.check_user_in_group(u, group) for u in members)

    for user in users:
        identity.delete_user(user)
    for group in groups:
        identity.delete_group(group)
    left = {u.name for u in identity.users()} | {g.name for g in identity.groups()}
    assert not {n for n in left if n.startswith(label)}


def test_sdk_role_assignments_follow_grants_groups_and_revocations(cloud: Cloud) -> None:
    identity = cloud.admin.identity
    tenant = cloud.make_tenant("grants")
    project = identity.get_project(tenant.project_id)
    user = identity.get_user(tenant.user_id)
    role = identity.create_role(name=unique("operator"))
    reader = identity.find_role("reader", ignore_missing=False)
    group = identity.create_group(name=unique("readers"))

    identity.assign_project_role_to_user(project, user, role)
    identity.add_user_to_group(user, group)
    identity.assign_project_role_to_group(project, group, reader)

    direct = {
        (a.role["id"], a.scope["project"]["id"]) for a in identity.role_assignments(user_id=user.id)
    }
    assert direct == {
        (identity.find_role("member", ignore_missing=False).id, project.id),
        (role.id, project.id),
    }
    on_project = list(identity.role_assignments(scope_project_id=project.id))
    assert {(("group" if a.group else "user"), a.role["id"]) for a in on_project} == {
        ("user", identity.find_role("member", ignore_missing=False).id),
        ("user", role.id),
        ("group", reader.id),
    }
    effective = list(identity.role_assignments(user_id=user.id, effective=True))
    assert reader.id in {a.role["id"] for a in effective}
    named = list(identity.role_assignments(scope_project_id=project.id, include_names=True))
    assert {a.role["name"] for a in named} == {"member", role.name, "reader"}
    assert identity.validate_user_has_project_role(project, user, role)

    # Taking a role away shows in the assignments and in the user's next use of its token.
    token = cloud.token_for(tenant)
    identity.unassign_project_role_from_user(project, user, role)
    assert not identity.validate_user_has_project_role(project, user, role)
    assert role.id not in {a.role["id"] for a in identity.role_assignments(user_id=user.id)}
    assert cloud.token_status(token) == 401
    fresh = cloud.validate(cloud.token_for(tenant)).json()["token"]
    assert role.name not in {r["name"] for r in fresh["roles"]}
