"""Assignment rules, tested on IdentityService itself: no HTTP, a SQLite file in tmp.

Each test logs in with real tokens, so a rule that breaks shows as a token that
scopes where it should not, or keeps a role it lost.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import Forbidden, NotFound, Unauthorized
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from souverain.identity import models as m
from souverain.identity.api import IdentityApi
from souverain.identity.bootstrap import bootstrap
from souverain.identity.service import IdentityPolicySettings, IdentityService, TokenView
from souverain.identity.tokens import KeyRepository, TokenFormatter
from souverain.openstack.auth import TokenValidator
from souverain.openstack.routing import unnamed_routes

ADMIN_PASSWORD = "admin-Pa55word-for-tests"
PASSWORD = "user-Pa55word-for-tests"


class SteppingClock:
    """Real time plus an offset a test advances: expiry without sleeping."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@dataclass
class Cloud:
    identity: IdentityService
    admin: RequestContext
    admin_project: str
    roles: dict[str, str]  # name -> id
    clock: SteppingClock

    def user(self, name: str) -> str:
        return str(
            self.identity.create_user(self.admin, {"name": name, "password": PASSWORD})["id"]
        )

    def project(self, name: str, domain_id: str | None = None) -> str:
        data = {"name": name, **({"domain_id": domain_id} if domain_id else {})}
        return str(self.identity.create_project(self.admin, data)["id"])

    def grant(self, user_id: str, project_id: str, role: str, actor: str = "user") -> None:
        self.identity.create_grant(
            self.admin, actor, user_id, "project", project_id, self.roles[role]
        )

    def login(self, user_id: str, scope: dict[str, Any] | None = None) -> TokenView:
        identity: dict[str, Any] = {
            "methods": ["password"],
            "password": {"user": {"id": user_id, "password": PASSWORD}},
        }
        auth: dict[str, Any] = {"identity": identity}
        if scope is not None:
            auth["scope"] = scope
        return self.identity.authenticate(auth)

    def on_project(self, user_id: str, project_id: str) -> TokenView:
        return self.login(user_id, {"project": {"id": project_id}})


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database at the current schema; each test starts from a copy."""
    path = tmp_path_factory.mktemp("schema") / "identity.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def cloud(tmp_path: Path, schema: Path) -> Iterator[Cloud]:
    shutil.copy(schema, tmp_path / "identity.sqlite")
    engine = make_engine(f"sqlite:///{tmp_path / 'identity.sqlite'}")
    keys = KeyRepository(tmp_path / "fernet", max_active_keys=3)
    keys.setup()
    clock = SteppingClock()
    identity = IdentityService(
        Database(engine),
        TokenFormatter(keys),
        Fernet.generate_key(),
        IdentityPolicySettings(bcrypt_rounds=4),
        clock=Clock(clock.now),
    )
    boot = bootstrap(identity, "RegionOne", "http://localhost", [], ADMIN_PASSWORD, 4)
    admin = identity.authenticate(
        {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"id": boot.admin_user_id, "password": ADMIN_PASSWORD}},
            },
            "scope": {"project": {"id": boot.admin_project_id}},
        }
    ).context()
    roles = {r["name"]: r["id"] for r in identity.list_roles(admin, {})}
    yield Cloud(identity, admin, boot.admin_project_id, roles, clock)
    engine.dispose()


def role_names(view: TokenView) -> set[str]:
    return {r["name"] for r in view.roles}


def takes_a_validator(tokens: TokenValidator) -> TokenValidator:
    return tokens


# ---------------------------------------------------------------- the edge's seam


def test_identity_service_is_the_edges_token_validator(cloud: Cloud) -> None:
    validator = takes_a_validator(cloud.identity)  # mypy: IdentityService is a TokenValidator
    alice = cloud.user("alice")
    project = cloud.project("web")
    cloud.grant(alice, project, "member")
    token = cloud.on_project(alice, project).token
    view = validator.validate(token)
    assert view is not None
    ctx = view.context("req-1")
    assert (ctx.user_id, ctx.project_id, ctx.request_id) == (alice, project, "req-1")
    assert validator.validate("not-a-token") is None


def test_every_identity_route_names_a_policy_action(cloud: Cloud) -> None:
    routes = IdentityApi(cloud.identity).routes()
    assert unnamed_routes(routes) == []
    assert len(routes) > 40


# ---------------------------------------------------------------- grants


def test_a_grant_can_be_checked_then_revoked_once(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    member = cloud.roles["member"]
    parts = ("user", alice, "project", project)
    with pytest.raises(NotFound):
        cloud.identity.check_grant(cloud.admin, *parts, member)
    cloud.identity.create_grant(cloud.admin, *parts, member)
    cloud.identity.create_grant(cloud.admin, *parts, member)  # granting twice is one grant
    cloud.identity.check_grant(cloud.admin, *parts, member)
    assert [r["name"] for r in cloud.identity.list_grants(cloud.admin, *parts)] == ["member"]
    cloud.identity.revoke_grant(cloud.admin, *parts, member)
    with pytest.raises(NotFound):
        cloud.identity.check_grant(cloud.admin, *parts, member)
    with pytest.raises(NotFound):
        cloud.identity.revoke_grant(cloud.admin, *parts, member)


def test_without_a_role_a_user_cannot_scope_to_the_project(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    with pytest.raises(Unauthorized):
        cloud.on_project(alice, project)
    cloud.grant(alice, project, "reader")
    assert cloud.on_project(alice, project).payload.project_id == project


def test_revoking_a_grant_ends_the_tokens_it_carried(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    cloud.grant(alice, project, "member")
    token = cloud.on_project(alice, project).token
    cloud.identity.revoke_grant(
        cloud.admin, "user", alice, "project", project, cloud.roles["member"]
    )
    assert cloud.identity.validate(token) is None


@pytest.mark.parametrize("role", ["reader", "member"])
def test_a_reader_or_member_cannot_grant(cloud: Cloud, role: str) -> None:
    alice, bob, project = cloud.user("alice"), cloud.user("bob"), cloud.project("web")
    cloud.grant(alice, project, role)
    ctx = cloud.on_project(alice, project).context()
    with pytest.raises(Forbidden):
        cloud.identity.create_grant(ctx, "user", bob, "project", project, cloud.roles["admin"])
    with pytest.raises(Forbidden):  # not even to themselves
        cloud.identity.create_grant(ctx, "user", alice, "project", project, cloud.roles["admin"])
    with pytest.raises(NotFound):
        cloud.identity.check_grant(
            cloud.admin, "user", bob, "project", project, cloud.roles["admin"]
        )


# ---------------------------------------------------------------- implied roles


@pytest.mark.parametrize(
    ("granted", "held"),
    [
        ("reader", {"reader"}),
        ("member", {"member", "reader"}),
        ("admin", {"admin", "member", "reader"}),
    ],
)
def test_a_role_brings_the_roles_it_implies(cloud: Cloud, granted: str, held: set[str]) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    cloud.grant(alice, project, granted)
    assert role_names(cloud.on_project(alice, project)) == held


# ---------------------------------------------------------------- groups


def test_a_group_grant_reaches_its_members_and_is_listed_as_effective(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    group = cloud.identity.create_group(cloud.admin, {"name": "ops"})["id"]
    cloud.identity.add_user_to_group(cloud.admin, group, alice)
    cloud.grant(group, project, "member", actor="group")
    assert role_names(cloud.on_project(alice, project)) == {"member", "reader"}

    filters = {"user.id": alice}
    direct = cloud.identity.list_role_assignments(cloud.admin, filters, False, False)
    assert direct == []
    effective = cloud.identity.list_role_assignments(cloud.admin, filters, True, False)
    assert [(a["user"]["id"], a["scope"], a["role"]["id"]) for a in effective] == [
        (alice, {"project": {"id": project}}, cloud.roles["member"])
    ]
    assert effective[0]["_via_group"] == group


def test_leaving_the_group_ends_the_role_and_its_tokens(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    group = cloud.identity.create_group(cloud.admin, {"name": "ops"})["id"]
    cloud.identity.add_user_to_group(cloud.admin, group, alice)
    cloud.grant(group, project, "member", actor="group")
    token = cloud.on_project(alice, project).token
    cloud.identity.remove_user_from_group(cloud.admin, group, alice)
    assert cloud.identity.validate(token) is None
    with pytest.raises(Unauthorized):
        cloud.on_project(alice, project)


# ---------------------------------------------------------------- domain vs project scope


def test_a_domain_role_does_not_open_its_projects_nor_a_project_role_its_domain(
    cloud: Cloud,
) -> None:
    domain = cloud.identity.create_domain(cloud.admin, {"name": "acme"})["id"]
    project = cloud.project("web", domain_id=domain)
    alice, bob = cloud.user("alice"), cloud.user("bob")
    cloud.identity.create_grant(cloud.admin, "user", alice, "domain", domain, cloud.roles["admin"])
    cloud.grant(bob, project, "admin")

    on_domain = cloud.login(alice, {"domain": {"id": domain}})
    assert on_domain.payload.domain_id == domain and on_domain.payload.project_id is None
    with pytest.raises(Unauthorized):
        cloud.on_project(alice, project)
    with pytest.raises(Unauthorized):
        cloud.login(bob, {"domain": {"id": domain}})


def test_a_reader_lists_only_its_own_and_its_projects_assignments(cloud: Cloud) -> None:
    alice, bob = cloud.user("alice"), cloud.user("bob")
    web, db = cloud.project("web"), cloud.project("db")
    cloud.grant(alice, web, "reader")
    cloud.grant(bob, db, "member")
    ctx = cloud.on_project(alice, web).context()
    seen = cloud.identity.list_role_assignments(ctx, {}, False, False)
    assert {a["scope"]["project"]["id"] for a in seen} == {web}
    assert {a["user"]["id"] for a in seen} == {alice}


# ---------------------------------------------------------------- deleting roles


def test_deleting_a_role_removes_its_assignments_and_tokens(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    auditor = cloud.identity.create_role(cloud.admin, {"name": "auditor"})["id"]
    cloud.identity.create_grant(cloud.admin, "user", alice, "project", project, auditor)
    token = cloud.on_project(alice, project).token
    cloud.identity.delete_role(cloud.admin, auditor)
    listed = cloud.identity.list_role_assignments(cloud.admin, {"user.id": alice}, True, False)
    assert listed == []
    with cloud.identity.db.session() as s:  # no orphan row left to match a later role
        assert s.scalars(select(m.Assignment).where(m.Assignment.role_id == auditor)).all() == []
    assert cloud.identity.validate(token) is None
    with pytest.raises(NotFound):
        cloud.identity.get_role(cloud.admin, auditor)


def test_a_built_in_role_cannot_be_deleted(cloud: Cloud) -> None:
    with pytest.raises(Forbidden):
        cloud.identity.delete_role(cloud.admin, cloud.roles["member"])
    assert cloud.identity.get_role(cloud.admin, cloud.roles["member"])["name"] == "member"


# ---------------------------------------------------------------- application credentials


def test_an_application_credential_cannot_carry_a_role_its_creator_lacks(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    cloud.grant(alice, project, "member")
    ctx = cloud.on_project(alice, project).context()
    with pytest.raises(Forbidden):
        cloud.identity.create_app_cred(ctx, alice, {"name": "ci", "roles": [{"name": "admin"}]})
    # reader is implied by member, so it may be delegated alone
    cred = cloud.identity.create_app_cred(ctx, alice, {"name": "ci", "roles": [{"name": "reader"}]})
    assert [r["name"] for r in cred["roles"]] == ["reader"]
    view = cloud.identity.authenticate(
        {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": cred["id"], "secret": cred["secret"]},
            }
        }
    )
    assert role_names(view) == {"reader"}
    assert view.payload.project_id == project


def test_an_application_credential_loses_what_its_creator_loses(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    cloud.grant(alice, project, "member")
    ctx = cloud.on_project(alice, project).context()
    cred = cloud.identity.create_app_cred(ctx, alice, {"name": "ci"})
    assert {r["name"] for r in cred["roles"]} == {"member", "reader"}
    login = {
        "identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": cred["id"], "secret": cred["secret"]},
        }
    }
    token = cloud.identity.authenticate(login).token
    cloud.identity.revoke_grant(
        cloud.admin, "user", alice, "project", project, cloud.roles["member"]
    )
    assert cloud.identity.validate(token) is None
    with pytest.raises(Unauthorized):
        cloud.identity.authenticate(login)


def test_application_credentials_are_only_created_for_oneself(cloud: Cloud) -> None:
    alice, bob, project = cloud.user("alice"), cloud.user("bob"), cloud.project("web")
    cloud.grant(alice, project, "member")
    ctx = cloud.on_project(alice, project).context()
    with pytest.raises(NotFound):  # another user's credentials look absent
        cloud.identity.create_app_cred(ctx, bob, {"name": "ci"})


# ---------------------------------------------------------------- EC2 keys of application credentials


def app_cred_login(cloud: Cloud, cred: dict[str, Any]) -> RequestContext:
    login = {
        "identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": cred["id"], "secret": cred["secret"]},
        }
    }
    return cloud.identity.authenticate(login).context()


def test_an_ec2_key_of_an_application_credential_carries_its_roles_not_the_users(
    cloud: Cloud,
) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    cloud.grant(alice, project, "member")
    ctx = cloud.on_project(alice, project).context()
    cred = cloud.identity.create_app_cred(ctx, alice, {"name": "ci"})
    reader = cloud.identity.create_app_cred(
        ctx, alice, {"name": "ro", "roles": [{"name": "reader"}]}
    )
    own = cloud.identity.ec2_create(ctx, alice, project, "http://x")
    made = cloud.identity.ec2_create(app_cred_login(cloud, cred), alice, project, "http://x")
    blob = {"access": "AKIARO", "secret": "s", "app_cred_id": reader["id"]}
    cloud.identity.create_credential(
        ctx, {"user_id": alice, "project_id": project, "type": "ec2", "blob": json.dumps(blob)}
    )
    cloud.grant(alice, project, "admin")  # the user gains a role; its credentials do not

    mine = cloud.identity.ec2_principal(own["access"])
    assert mine is not None and mine.roles == {"admin", "member", "reader"}
    bound = cloud.identity.ec2_principal(made["access"])
    assert bound is not None and bound.roles == {"member", "reader"}
    assert (bound.app_cred_id, bound.project_id) == (cred["id"], project)
    read_only = cloud.identity.ec2_principal("AKIARO")
    assert read_only is not None and read_only.roles == {"reader"}


def test_an_ec2_key_of_an_application_credential_ends_when_it_expires(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    cloud.grant(alice, project, "member")
    ctx = cloud.on_project(alice, project).context()
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    cred = cloud.identity.create_app_cred(ctx, alice, {"name": "ci", "expires_at": soon})
    made = cloud.identity.ec2_create(app_cred_login(cloud, cred), alice, project, "http://x")
    own = cloud.identity.ec2_create(ctx, alice, project, "http://x")
    assert cloud.identity.ec2_principal(made["access"]) is not None  # now cached
    cloud.clock.offset = dt.timedelta(minutes=6)
    assert cloud.identity.ec2_principal(made["access"]) is None
    assert cloud.identity.ec2_principal(own["access"]) is not None


def test_an_ec2_key_of_an_application_credential_goes_with_it(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    cloud.grant(alice, project, "member")
    ctx = cloud.on_project(alice, project).context()
    cred = cloud.identity.create_app_cred(ctx, alice, {"name": "ci"})
    made = cloud.identity.ec2_create(app_cred_login(cloud, cred), alice, project, "http://x")
    assert cloud.identity.ec2_principal(made["access"]) is not None
    cloud.identity.delete_app_cred(ctx, alice, cred["id"])
    assert cloud.identity.ec2_principal(made["access"]) is None
    with cloud.identity.db.session() as s:
        assert s.scalars(select(m.Credential)).all() == []


def test_an_ec2_key_of_an_application_credential_loses_what_its_user_loses(
    cloud: Cloud,
) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    cloud.grant(alice, project, "member")
    ctx = cloud.on_project(alice, project).context()
    cred = cloud.identity.create_app_cred(ctx, alice, {"name": "ci"})
    made = cloud.identity.ec2_create(app_cred_login(cloud, cred), alice, project, "http://x")
    cloud.identity.revoke_grant(
        cloud.admin, "user", alice, "project", project, cloud.roles["member"]
    )
    cloud.grant(alice, project, "reader")
    bound = cloud.identity.ec2_principal(made["access"])
    assert bound is not None and bound.roles == {"reader"}


def test_a_restricted_application_credential_reaches_only_its_own_keys(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    cloud.grant(alice, project, "member")
    ctx = cloud.on_project(alice, project).context()
    own = cloud.identity.ec2_create(ctx, alice, project, "http://x")
    cred = cloud.identity.create_app_cred(ctx, alice, {"name": "ci"})
    as_cred = app_cred_login(cloud, cred)
    made = cloud.identity.ec2_create(as_cred, alice, project, "http://x")
    listed = cloud.identity.ec2_list(as_cred, alice, "http://x")
    assert [k["access"] for k in listed] == [made["access"]]
    with pytest.raises(NotFound):
        cloud.identity.ec2_get(as_cred, alice, own["access"], "http://x")
    with pytest.raises(NotFound):
        cloud.identity.ec2_delete(as_cred, alice, own["access"])
    with pytest.raises(Forbidden):
        cloud.identity.create_credential(
            as_cred, {"user_id": alice, "type": "totp", "blob": "seed"}
        )
    with pytest.raises(Forbidden):
        cloud.identity.delete_app_cred(as_cred, alice, cred["id"])
    full = cloud.identity.ec2_list(ctx, alice, "http://x")
    assert {k["access"] for k in full} == {own["access"], made["access"]}


def test_ec2_keys_end_when_their_user_is_disabled_or_deleted(cloud: Cloud) -> None:
    alice, project = cloud.user("alice"), cloud.project("web")
    cloud.grant(alice, project, "member")
    ctx = cloud.on_project(alice, project).context()
    cred = cloud.identity.create_app_cred(ctx, alice, {"name": "ci"})
    keys = [
        cloud.identity.ec2_create(ctx, alice, project, "http://x")["access"],
        cloud.identity.ec2_create(app_cred_login(cloud, cred), alice, project, "http://x")[
            "access"
        ],
    ]
    cloud.identity.update_user(cloud.admin, alice, {"enabled": False})
    assert [cloud.identity.ec2_principal(k) for k in keys] == [None, None]
    cloud.identity.update_user(cloud.admin, alice, {"enabled": True})
    assert all(cloud.identity.ec2_principal(k) is not None for k in keys)
    cloud.identity.delete_user(cloud.admin, alice)
    assert [cloud.identity.ec2_principal(k) for k in keys] == [None, None]
    with cloud.identity.db.session() as s:
        assert s.scalars(select(m.Credential)).all() == []
