"""The policy as a table: for every identity action, which callers may attempt it.

The table is written out by hand, action by action, so that loosening a rule in
`common/policy.py` (say, `create_project` from admin to member) fails here.
Callers: admin, member, reader, and a user with no role (an unscoped token, or
a role the policy does not know); each once as the owner of the resource and
once as someone else.
"""

from __future__ import annotations

from typing import Any

import pytest

from souverain.common.context import RequestContext
from souverain.common.errors import Forbidden
from souverain.common.policy import (
    BILLING_RULES,
    COMPUTE_RULES,
    IDENTITY_RULES,
    IMAGE_RULES,
    NETWORK_RULES,
    RULES,
    VOLUME_RULES,
    Rule,
    allowed,
    authorize,
    effective_roles,
    enforce,
)

CALLERS = ("admin", "member", "reader", "none")
ROLES = {
    "admin": frozenset({"admin"}),
    "member": frozenset({"member"}),
    "reader": frozenset({"reader"}),
    "none": frozenset(),
}

EVERYONE = frozenset(CALLERS)
READERS = frozenset({"admin", "member", "reader"})
MEMBERS = frozenset({"admin", "member"})
ADMIN = frozenset({"admin"})

# action: (who may, acting on someone else's resource; who may, acting on their own)
TABLE: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "identity:list_domains": (READERS, READERS),
    "identity:get_domain": (READERS, READERS),
    "identity:create_domain": (ADMIN, ADMIN),
    "identity:update_domain": (ADMIN, ADMIN),
    "identity:delete_domain": (ADMIN, ADMIN),
    "identity:list_regions": (EVERYONE, EVERYONE),
    "identity:get_region": (EVERYONE, EVERYONE),
    "identity:create_region": (ADMIN, ADMIN),
    "identity:update_region": (ADMIN, ADMIN),
    "identity:delete_region": (ADMIN, ADMIN),
    "identity:list_services": (ADMIN, ADMIN),
    "identity:get_service": (ADMIN, ADMIN),
    "identity:create_service": (ADMIN, ADMIN),
    "identity:update_service": (ADMIN, ADMIN),
    "identity:delete_service": (ADMIN, ADMIN),
    "identity:list_endpoints": (ADMIN, ADMIN),
    "identity:get_endpoint": (ADMIN, ADMIN),
    "identity:create_endpoint": (ADMIN, ADMIN),
    "identity:update_endpoint": (ADMIN, ADMIN),
    "identity:delete_endpoint": (ADMIN, ADMIN),
    "identity:list_endpoint_groups": (ADMIN, ADMIN),
    "identity:get_endpoint_group": (ADMIN, ADMIN),
    "identity:create_endpoint_group": (ADMIN, ADMIN),
    "identity:update_endpoint_group": (ADMIN, ADMIN),
    "identity:delete_endpoint_group": (ADMIN, ADMIN),
    "identity:list_endpoints_associated_with_endpoint_group": (ADMIN, ADMIN),
    "identity:list_projects_for_endpoint": (ADMIN, ADMIN),
    "identity:add_endpoint_to_project": (ADMIN, ADMIN),
    "identity:check_endpoint_in_project": (ADMIN, ADMIN),
    "identity:remove_endpoint_from_project": (ADMIN, ADMIN),
    "identity:list_endpoints_for_project": (ADMIN, ADMIN),
    "identity:list_endpoint_groups_for_project": (ADMIN, ADMIN),
    "identity:list_projects": (READERS, READERS),
    "identity:get_project": (READERS, READERS),
    "identity:create_project": (ADMIN, ADMIN),
    "identity:update_project": (ADMIN, ADMIN),
    "identity:delete_project": (ADMIN, ADMIN),
    "identity:list_user_projects": (ADMIN, EVERYONE),
    "identity:list_users": (READERS, READERS),
    "identity:get_user": (READERS, READERS),
    "identity:create_user": (ADMIN, ADMIN),
    "identity:update_user": (ADMIN, ADMIN),
    "identity:delete_user": (ADMIN, ADMIN),
    "identity:change_password": (ADMIN, EVERYONE),
    "identity:list_groups": (READERS, READERS),
    "identity:get_group": (READERS, READERS),
    "identity:create_group": (ADMIN, ADMIN),
    "identity:update_group": (ADMIN, ADMIN),
    "identity:delete_group": (ADMIN, ADMIN),
    "identity:list_users_in_group": (READERS, READERS),
    "identity:list_groups_for_user": (ADMIN, EVERYONE),
    "identity:add_user_to_group": (ADMIN, ADMIN),
    "identity:remove_user_from_group": (ADMIN, ADMIN),
    "identity:check_user_in_group": (READERS, READERS),
    "identity:list_roles": (READERS, READERS),
    "identity:get_role": (READERS, READERS),
    "identity:create_role": (ADMIN, ADMIN),
    "identity:update_role": (ADMIN, ADMIN),
    "identity:delete_role": (ADMIN, ADMIN),
    "identity:list_role_assignments": (READERS, READERS),
    "identity:list_role_inference_rules": (READERS, READERS),
    "identity:list_project_tags": (READERS, READERS),
    "identity:get_project_tag": (READERS, READERS),
    "identity:update_project_tags": (ADMIN, ADMIN),
    "identity:create_project_tag": (ADMIN, ADMIN),
    "identity:delete_project_tag": (ADMIN, ADMIN),
    "identity:delete_project_tags": (ADMIN, ADMIN),
    "identity:list_implied_roles": (READERS, READERS),
    "identity:get_implied_role": (READERS, READERS),
    "identity:create_implied_role": (ADMIN, ADMIN),
    "identity:delete_implied_role": (ADMIN, ADMIN),
    "identity:list_grants": (READERS, READERS),
    "identity:check_grant": (READERS, READERS),
    "identity:create_grant": (ADMIN, ADMIN),
    "identity:revoke_grant": (ADMIN, ADMIN),
    "identity:list_application_credentials": (ADMIN, EVERYONE),
    "identity:get_application_credential": (ADMIN, EVERYONE),
    "identity:create_application_credential": (ADMIN, MEMBERS),
    "identity:delete_application_credential": (ADMIN, MEMBERS),
    "identity:list_access_rules": (ADMIN, EVERYONE),
    "identity:get_access_rule": (ADMIN, EVERYONE),
    "identity:delete_access_rule": (ADMIN, MEMBERS),
    "identity:create_domain_config": (ADMIN, ADMIN),
    "identity:get_domain_config": (ADMIN, ADMIN),
    "identity:update_domain_config": (ADMIN, ADMIN),
    "identity:delete_domain_config": (ADMIN, ADMIN),
    "identity:get_domain_config_default": (ADMIN, ADMIN),
    "identity:get_security_compliance_domain_config": (EVERYONE, EVERYONE),
    "identity:list_credentials": (EVERYONE, EVERYONE),
    "identity:get_credential": (EVERYONE, EVERYONE),
    "identity:create_credential": (ADMIN, MEMBERS),
    "identity:update_credential": (ADMIN, MEMBERS),
    "identity:delete_credential": (ADMIN, MEMBERS),
    "identity:ec2_list_credentials": (ADMIN, EVERYONE),
    "identity:ec2_get_credential": (ADMIN, EVERYONE),
    "identity:ec2_create_credential": (ADMIN, MEMBERS),
    "identity:ec2_delete_credential": (ADMIN, MEMBERS),
    # trusts: the edge lets any token in, the service keeps them to their trustor and trustee
    "identity:list_trusts": (EVERYONE, EVERYONE),
    "identity:get_trust": (EVERYONE, EVERYONE),
    "identity:create_trust": (EVERYONE, EVERYONE),
    "identity:delete_trust": (EVERYONE, EVERYONE),
    "identity:list_roles_for_trust": (EVERYONE, EVERYONE),
    "identity:get_role_for_trust": (EVERYONE, EVERYONE),
    "identity:validate_token": (EVERYONE, EVERYONE),
    "identity:revoke_token": (EVERYONE, EVERYONE),
    "identity:get_auth_catalog": (EVERYONE, EVERYONE),
    "identity:get_auth_projects": (EVERYONE, EVERYONE),
    "identity:get_auth_domains": (EVERYONE, EVERYONE),
    "identity:get_auth_system": (EVERYONE, EVERYONE),
}

CALLER_ID = "c" * 32
OTHER_ID = "o" * 32


def context(caller: str, **scope: Any) -> RequestContext:
    return RequestContext(
        user_id=CALLER_ID,
        user_domain_id="default",
        roles=ROLES[caller],
        project_id="p" * 32,
        **scope,
    )


def test_the_table_covers_every_identity_action_and_nothing_else() -> None:
    assert set(TABLE) == set(IDENTITY_RULES)


@pytest.mark.parametrize("action", sorted(TABLE))
@pytest.mark.parametrize("caller", CALLERS)
def test_policy_table(action: str, caller: str) -> None:
    as_other, as_owner = TABLE[action]
    ctx = context(caller)
    assert allowed(ctx, action, owner_user_id=OTHER_ID) is (caller in as_other)
    assert allowed(ctx, action, owner_user_id=CALLER_ID) is (caller in as_owner)


@pytest.mark.parametrize("action", sorted(TABLE))
@pytest.mark.parametrize("caller", CALLERS)
def test_decision_does_not_depend_on_the_kind_of_scope(action: str, caller: str) -> None:
    """Roles decide, whatever the token is scoped to (admin anywhere is the cloud admin)."""
    as_other, _ = TABLE[action]
    scopes: list[dict[str, Any]] = [
        {"system_scope": True},
        {"domain_id": "default"},
        {"project_id": None},
    ]
    for scope in scopes:
        ctx = RequestContext(
            user_id=CALLER_ID,
            user_domain_id="default",
            roles=ROLES[caller],
            **scope,
        )
        assert allowed(ctx, action, owner_user_id=OTHER_ID) is (caller in as_other)


@pytest.mark.parametrize("action", sorted(a for a, (_, own) in TABLE.items() if own != TABLE[a][0]))
def test_owner_rules_need_a_named_owner(action: str) -> None:
    """Without an owner id, an ownership rule grants nothing but to the admin."""
    assert not allowed(context("member"), action, owner_user_id=None)
    assert allowed(context("admin"), action, owner_user_id=None)


def test_unknown_action_is_refused_even_to_admin() -> None:
    assert not allowed(context("admin"), "identity:launch_missiles")
    with pytest.raises(Forbidden, match="identity:launch_missiles"):
        enforce(context("admin"), "identity:launch_missiles")


def test_a_role_the_policy_does_not_know_grants_nothing() -> None:
    ctx = RequestContext(user_id=CALLER_ID, user_domain_id="default", roles=frozenset({"operator"}))
    for action, (as_other, _) in TABLE.items():
        assert allowed(ctx, action, owner_user_id=OTHER_ID) is (as_other == EVERYONE), action


def test_implied_roles() -> None:
    assert effective_roles(frozenset({"admin"})) == {"admin", "member", "reader"}
    assert effective_roles(frozenset({"member"})) == {"member", "reader"}
    assert effective_roles(frozenset({"reader"})) == {"reader"}
    assert effective_roles(frozenset({"operator", "reader"})) == {"operator", "reader"}
    assert effective_roles(frozenset()) == frozenset()


def test_enforce_names_the_action_and_what_it_needs() -> None:
    with pytest.raises(Forbidden) as raised:
        enforce(context("reader"), "identity:create_project")
    assert "identity:create_project" in raised.value.message
    assert RULES["identity:create_project"].value in raised.value.message
    enforce(context("admin"), "identity:create_project")  # does not raise


# ------------------------------------------------------------- the project services

# Written out by hand, as the identity table above: what runs the cloud is the admin's,
# what describes it is anyone's; every other action is a project's, read by its readers
# and written by its members.
PROJECT_ADMIN_ONLY = frozenset(
    {
        "compute:migration:list",
        "compute:server_migration:list",
        "compute:server_migration:show",
        "compute:server_migration:delete",
        "compute:server_migration:force_complete",
        "compute:aggregate:action",
        "compute:aggregate:create",
        "compute:aggregate:delete",
        "compute:aggregate:list",
        "compute:aggregate:show",
        "compute:aggregate:update",
        "compute:availability_zone:detail",
        "compute:flavor:action",
        "compute:flavor:create",
        "compute:flavor:delete",
        "compute:flavor:update",
        "compute:flavor_access:list",
        "compute:flavor_extra_spec:create",
        "compute:flavor_extra_spec:delete",
        "compute:flavor_extra_spec:update",
        "compute:hypervisor:detail",
        "compute:hypervisor:list",
        "compute:hypervisor:search",
        "compute:hypervisor:servers",
        "compute:hypervisor:show",
        "compute:hypervisor:statistics",
        "compute:hypervisor:uptime",
        "compute:quota:delete",
        "compute:quota:update",
        "compute:server:diagnostics",
        "compute:console_auth_token:show",
        "compute:service:list",
        "compute:service:update",
        "network:metering_label:create",
        "network:metering_label:delete",
        "network:metering_label:list",
        "network:metering_label:show",
        "network:metering_label:update",
        "network:metering_label_rule:create",
        "network:metering_label_rule:delete",
        "network:metering_label_rule:list",
        "network:metering_label_rule:show",
        "network:metering_label_rule:update",
        "network:quota:delete",
        "network:quota:list",
        "network:quota:update",
        "volume:quota:delete",
        "volume:quota:update",
        "volume:backup:export_record",
        "volume:backup:import_record",
        "volume:type:create",
        "volume:type:delete",
        "volume:type:update",
        "volume:type_extra_spec:delete",
        "volume:type_extra_spec:update",
        "volume:type_access:list",
        "volume:type_encryption:show",
        "volume:type_encryption:create",
        "volume:type_encryption:update",
        "volume:type_encryption:delete",
        "volume:type_access:update",
        "volume:qos_specs:list",
        "volume:qos_specs:show",
        "volume:qos_specs:create",
        "volume:qos_specs:update",
        "volume:qos_specs:delete",
        "volume:host:list",
        "volume:host:show",
        "volume:pool:list",
        "volume:manage:list",
        "volume:manage:create",
        "image:image:deactivate",
        "image:image:reactivate",
        "image:metadef:create",
        "image:metadef:update",
        "image:metadef:delete",
    }
)
OPEN_TO_ANY_TOKEN = frozenset(
    {
        "compute:availability_zone:list",
        "compute:extension:list",
        "compute:flavor:list",
        "compute:flavor:show",
        "compute:flavor_extra_spec:list",
        "compute:flavor_extra_spec:show",
        "compute:quota:defaults",
        "network:extension:list",
        "network:extension:show",
        "network:quota:show_default",
        "network:resource:list",
        "volume:availability_zone:list",
        "volume:extension:list",
        "volume:type:list",
        "volume:type:show",
        "volume:type_extra_spec:list",
        "volume:type_extra_spec:show",
        "image:schema:show",
        "image:info:show",
    }
)
READ_VERBS = frozenset({"list", "show", "detail", "download", "show_details"})
PROJECT_ACTIONS = {**COMPUTE_RULES, **NETWORK_RULES, **VOLUME_RULES, **IMAGE_RULES}
SCOPES: dict[str, dict[str, Any]] = {
    "project": {"project_id": "p" * 32},
    "domain": {"domain_id": "default"},
    "system": {"system_scope": True},
    "unscoped": {},
}


def expected(action: str, caller: str, scope: str) -> bool:
    if caller == "admin" or action in OPEN_TO_ANY_TOKEN:
        return True
    if action in PROJECT_ADMIN_ONLY or scope != "project":
        return False
    if action.rsplit(":", 1)[1] in READ_VERBS:
        return caller in ("member", "reader")
    return caller == "member"


def test_admin_only_and_open_actions_exist() -> None:
    assert set(PROJECT_ACTIONS) >= PROJECT_ADMIN_ONLY
    assert set(PROJECT_ACTIONS) >= OPEN_TO_ANY_TOKEN


@pytest.mark.parametrize("action", sorted(PROJECT_ACTIONS))
@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_project_services_table(action: str, scope: str) -> None:
    for caller in CALLERS:
        ctx = RequestContext(
            user_id=CALLER_ID, user_domain_id="default", roles=ROLES[caller], **SCOPES[scope]
        )
        assert allowed(ctx, action) is expected(action, caller, scope), (caller, scope)
        refused = not expected(action, caller, scope)
        if refused:
            with pytest.raises(Forbidden, match=action):
                authorize(ctx, action)
        else:
            authorize(ctx, action)


def test_an_unknown_role_in_a_project_reads_nothing_of_it() -> None:
    ctx = RequestContext(
        user_id=CALLER_ID, user_domain_id="default", roles=frozenset({"operator"}), project_id="p"
    )
    assert not allowed(ctx, "compute:server:list")
    assert allowed(ctx, "compute:flavor:list")


def test_billing_is_left_to_the_account_roles() -> None:
    """Billing's users often hold unscoped tokens; the account's own roles decide."""
    for action, rule in BILLING_RULES.items():
        assert rule in (Rule.ANYONE_AUTHENTICATED, Rule.PUBLIC), action
