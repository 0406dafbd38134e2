"""Policy: which role may do which action. The whole table lives here and only here.

Roles imply each other: admin > member > reader. `admin` on any scope is a
cloud administrator. A rule answers "may this caller attempt this action"; a
service still hides other projects' resources by reporting them as not found.
"""

from __future__ import annotations

import enum

from souverain.common.context import RequestContext
from souverain.common.errors import Forbidden

IMPLIED_ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin", "member", "reader"}),
    "member": frozenset({"member", "reader"}),
    "reader": frozenset({"reader"}),
}


def effective_roles(roles: frozenset[str]) -> frozenset[str]:
    out: set[str] = set(roles)
    for role in roles:
        out |= IMPLIED_ROLES.get(role, frozenset())
    return frozenset(out)


class Rule(enum.Enum):
    """Who may attempt an action."""

    PUBLIC = "anyone, without a token"
    ANYONE_AUTHENTICATED = "any valid token"
    READER = "reader, member or admin in the token's scope"
    MEMBER = "member or admin in the token's scope"
    ADMIN = "admin"
    OWNER_READ = "the user the resource belongs to, or admin"
    OWNER_WRITE = "the owning user with member in scope, or admin"


IDENTITY_RULES: dict[str, Rule] = {
    # domains, regions, services and endpoints: the operator's business
    "identity:list_domains": Rule.READER,
    "identity:get_domain": Rule.READER,
    "identity:create_domain": Rule.ADMIN,
    "identity:update_domain": Rule.ADMIN,
    "identity:delete_domain": Rule.ADMIN,
    "identity:list_regions": Rule.ANYONE_AUTHENTICATED,
    "identity:get_region": Rule.ANYONE_AUTHENTICATED,
    "identity:create_region": Rule.ADMIN,
    "identity:update_region": Rule.ADMIN,
    "identity:delete_region": Rule.ADMIN,
    "identity:list_services": Rule.ADMIN,
    "identity:get_service": Rule.ADMIN,
    "identity:create_service": Rule.ADMIN,
    "identity:update_service": Rule.ADMIN,
    "identity:delete_service": Rule.ADMIN,
    "identity:list_endpoints": Rule.ADMIN,
    "identity:get_endpoint": Rule.ADMIN,
    "identity:create_endpoint": Rule.ADMIN,
    "identity:update_endpoint": Rule.ADMIN,
    "identity:delete_endpoint": Rule.ADMIN,
    # projects: readers see their own, admins manage all
    "identity:list_projects": Rule.READER,
    "identity:get_project": Rule.READER,
    "identity:create_project": Rule.ADMIN,
    "identity:update_project": Rule.ADMIN,
    "identity:delete_project": Rule.ADMIN,
    "identity:list_user_projects": Rule.OWNER_READ,
    # users and groups: readers see the people of their own project
    "identity:list_users": Rule.READER,
    "identity:get_user": Rule.READER,
    "identity:create_user": Rule.ADMIN,
    "identity:update_user": Rule.ADMIN,
    "identity:delete_user": Rule.ADMIN,
    "identity:change_password": Rule.OWNER_READ,
    "identity:list_groups": Rule.READER,
    "identity:get_group": Rule.READER,
    "identity:create_group": Rule.ADMIN,
    "identity:update_group": Rule.ADMIN,
    "identity:delete_group": Rule.ADMIN,
    "identity:list_users_in_group": Rule.READER,
    "identity:list_groups_for_user": Rule.OWNER_READ,
    "identity:add_user_to_group": Rule.ADMIN,
    "identity:remove_user_from_group": Rule.ADMIN,
    "identity:check_user_in_group": Rule.READER,
    # roles and assignments
    "identity:list_roles": Rule.READER,
    "identity:get_role": Rule.READER,
    "identity:create_role": Rule.ADMIN,
    "identity:update_role": Rule.ADMIN,
    "identity:delete_role": Rule.ADMIN,
    "identity:list_role_assignments": Rule.READER,
    "identity:list_grants": Rule.READER,
    "identity:check_grant": Rule.READER,
    "identity:create_grant": Rule.ADMIN,
    "identity:revoke_grant": Rule.ADMIN,
    # a user's own credentials
    "identity:list_application_credentials": Rule.OWNER_READ,
    "identity:get_application_credential": Rule.OWNER_READ,
    "identity:create_application_credential": Rule.OWNER_WRITE,
    "identity:delete_application_credential": Rule.OWNER_WRITE,
    "identity:list_credentials": Rule.ANYONE_AUTHENTICATED,
    "identity:get_credential": Rule.ANYONE_AUTHENTICATED,
    "identity:create_credential": Rule.OWNER_WRITE,
    "identity:update_credential": Rule.OWNER_WRITE,
    "identity:delete_credential": Rule.OWNER_WRITE,
    "identity:ec2_list_credentials": Rule.OWNER_READ,
    "identity:ec2_get_credential": Rule.OWNER_READ,
    "identity:ec2_create_credential": Rule.OWNER_WRITE,
    "identity:ec2_delete_credential": Rule.OWNER_WRITE,
    # tokens, and what a token gives its bearer (the service refuses another user's token)
    "identity:validate_token": Rule.ANYONE_AUTHENTICATED,
    "identity:revoke_token": Rule.ANYONE_AUTHENTICATED,
    "identity:get_auth_catalog": Rule.ANYONE_AUTHENTICATED,
    "identity:get_auth_projects": Rule.ANYONE_AUTHENTICATED,
    "identity:get_auth_domains": Rule.ANYONE_AUTHENTICATED,
    "identity:get_auth_system": Rule.ANYONE_AUTHENTICATED,
}

# The other services' actions. Until every service enforces roles per action (the
# tenant-safety work), their rules let any valid token attempt the action and the
# service scopes what it touches by project, as before the table named them.

COMPUTE_RULES: dict[str, Rule] = {
    "compute:availability_zone:detail": Rule.ANYONE_AUTHENTICATED,
    "compute:availability_zone:list": Rule.ANYONE_AUTHENTICATED,
    "compute:extension:list": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor:action": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor:create": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor:delete": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor:list": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor:show": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor:update": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor_access:list": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor_extra_spec:create": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor_extra_spec:delete": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor_extra_spec:list": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor_extra_spec:show": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor_extra_spec:update": Rule.ANYONE_AUTHENTICATED,
    "compute:hypervisor:detail": Rule.ANYONE_AUTHENTICATED,
    "compute:hypervisor:list": Rule.ANYONE_AUTHENTICATED,
    "compute:hypervisor:show": Rule.ANYONE_AUTHENTICATED,
    "compute:hypervisor:statistics": Rule.ANYONE_AUTHENTICATED,
    "compute:instance_action:list": Rule.ANYONE_AUTHENTICATED,
    "compute:instance_action:show": Rule.ANYONE_AUTHENTICATED,
    "compute:interface:create": Rule.ANYONE_AUTHENTICATED,
    "compute:interface:delete": Rule.ANYONE_AUTHENTICATED,
    "compute:interface:list": Rule.ANYONE_AUTHENTICATED,
    "compute:interface:show": Rule.ANYONE_AUTHENTICATED,
    "compute:keypair:create": Rule.ANYONE_AUTHENTICATED,
    "compute:keypair:delete": Rule.ANYONE_AUTHENTICATED,
    "compute:keypair:list": Rule.ANYONE_AUTHENTICATED,
    "compute:keypair:show": Rule.ANYONE_AUTHENTICATED,
    "compute:limits:show": Rule.ANYONE_AUTHENTICATED,
    "compute:quota:defaults": Rule.ANYONE_AUTHENTICATED,
    "compute:quota:delete": Rule.ANYONE_AUTHENTICATED,
    "compute:quota:detail": Rule.ANYONE_AUTHENTICATED,
    "compute:quota:show": Rule.ANYONE_AUTHENTICATED,
    "compute:quota:update": Rule.ANYONE_AUTHENTICATED,
    "compute:server:action": Rule.ANYONE_AUTHENTICATED,
    "compute:server:create": Rule.ANYONE_AUTHENTICATED,
    "compute:server:delete": Rule.ANYONE_AUTHENTICATED,
    "compute:server:list": Rule.ANYONE_AUTHENTICATED,
    "compute:server:show": Rule.ANYONE_AUTHENTICATED,
    "compute:server:update": Rule.ANYONE_AUTHENTICATED,
    "compute:server_ip:list": Rule.ANYONE_AUTHENTICATED,
    "compute:server_metadata:create": Rule.ANYONE_AUTHENTICATED,
    "compute:server_metadata:delete": Rule.ANYONE_AUTHENTICATED,
    "compute:server_metadata:list": Rule.ANYONE_AUTHENTICATED,
    "compute:server_metadata:show": Rule.ANYONE_AUTHENTICATED,
    "compute:server_metadata:update": Rule.ANYONE_AUTHENTICATED,
    "compute:server_metadata:update_all": Rule.ANYONE_AUTHENTICATED,
    "compute:server_tag:create": Rule.ANYONE_AUTHENTICATED,
    "compute:server_tag:delete": Rule.ANYONE_AUTHENTICATED,
    "compute:server_tag:delete_all": Rule.ANYONE_AUTHENTICATED,
    "compute:server_tag:list": Rule.ANYONE_AUTHENTICATED,
    "compute:server_tag:show": Rule.ANYONE_AUTHENTICATED,
    "compute:server_tag:update_all": Rule.ANYONE_AUTHENTICATED,
    "compute:service:list": Rule.ANYONE_AUTHENTICATED,
    "compute:volume_attachment:create": Rule.ANYONE_AUTHENTICATED,
    "compute:volume_attachment:delete": Rule.ANYONE_AUTHENTICATED,
    "compute:volume_attachment:list": Rule.ANYONE_AUTHENTICATED,
    "compute:volume_attachment:show": Rule.ANYONE_AUTHENTICATED,
    "compute:volume_attachment:update": Rule.ANYONE_AUTHENTICATED,
}


NETWORK_RULES: dict[str, Rule] = {
    "network:resource:list": Rule.ANYONE_AUTHENTICATED,
    "network:extension:list": Rule.ANYONE_AUTHENTICATED,
    "network:extension:show": Rule.ANYONE_AUTHENTICATED,
    "network:quota:list": Rule.ANYONE_AUTHENTICATED,
    "network:quota:show": Rule.ANYONE_AUTHENTICATED,
    "network:quota:update": Rule.ANYONE_AUTHENTICATED,
    "network:quota:delete": Rule.ANYONE_AUTHENTICATED,
    "network:quota:show_default": Rule.ANYONE_AUTHENTICATED,
    "network:quota:show_details": Rule.ANYONE_AUTHENTICATED,
    "network:network:list": Rule.ANYONE_AUTHENTICATED,
    "network:network:show": Rule.ANYONE_AUTHENTICATED,
    "network:network:create": Rule.ANYONE_AUTHENTICATED,
    "network:network:update": Rule.ANYONE_AUTHENTICATED,
    "network:network:delete": Rule.ANYONE_AUTHENTICATED,
    "network:subnet:list": Rule.ANYONE_AUTHENTICATED,
    "network:subnet:show": Rule.ANYONE_AUTHENTICATED,
    "network:subnet:create": Rule.ANYONE_AUTHENTICATED,
    "network:subnet:update": Rule.ANYONE_AUTHENTICATED,
    "network:subnet:delete": Rule.ANYONE_AUTHENTICATED,
    "network:port:list": Rule.ANYONE_AUTHENTICATED,
    "network:port:show": Rule.ANYONE_AUTHENTICATED,
    "network:port:create": Rule.ANYONE_AUTHENTICATED,
    "network:port:update": Rule.ANYONE_AUTHENTICATED,
    "network:port:delete": Rule.ANYONE_AUTHENTICATED,
    "network:security_group:list": Rule.ANYONE_AUTHENTICATED,
    "network:security_group:show": Rule.ANYONE_AUTHENTICATED,
    "network:security_group:create": Rule.ANYONE_AUTHENTICATED,
    "network:security_group:update": Rule.ANYONE_AUTHENTICATED,
    "network:security_group:delete": Rule.ANYONE_AUTHENTICATED,
    "network:security_group_rule:list": Rule.ANYONE_AUTHENTICATED,
    "network:security_group_rule:show": Rule.ANYONE_AUTHENTICATED,
    "network:security_group_rule:create": Rule.ANYONE_AUTHENTICATED,
    "network:security_group_rule:update": Rule.ANYONE_AUTHENTICATED,
    "network:security_group_rule:delete": Rule.ANYONE_AUTHENTICATED,
    "network:router:list": Rule.ANYONE_AUTHENTICATED,
    "network:router:show": Rule.ANYONE_AUTHENTICATED,
    "network:router:create": Rule.ANYONE_AUTHENTICATED,
    "network:router:update": Rule.ANYONE_AUTHENTICATED,
    "network:router:delete": Rule.ANYONE_AUTHENTICATED,
    "network:router:add_router_interface": Rule.ANYONE_AUTHENTICATED,
    "network:router:remove_router_interface": Rule.ANYONE_AUTHENTICATED,
    "network:floatingip:list": Rule.ANYONE_AUTHENTICATED,
    "network:floatingip:show": Rule.ANYONE_AUTHENTICATED,
    "network:floatingip:create": Rule.ANYONE_AUTHENTICATED,
    "network:floatingip:update": Rule.ANYONE_AUTHENTICATED,
    "network:floatingip:delete": Rule.ANYONE_AUTHENTICATED,
}


VOLUME_RULES: dict[str, Rule] = {
    # admin-only actions (types, quotas, force delete, reset status) the service refuses itself
    "volume:volume:list": Rule.ANYONE_AUTHENTICATED,
    "volume:volume:show": Rule.ANYONE_AUTHENTICATED,
    "volume:volume:create": Rule.ANYONE_AUTHENTICATED,
    "volume:volume:update": Rule.ANYONE_AUTHENTICATED,
    "volume:volume:delete": Rule.ANYONE_AUTHENTICATED,
    "volume:volume:action": Rule.ANYONE_AUTHENTICATED,
    "volume:volume_metadata:list": Rule.ANYONE_AUTHENTICATED,
    "volume:volume_metadata:show": Rule.ANYONE_AUTHENTICATED,
    "volume:volume_metadata:update": Rule.ANYONE_AUTHENTICATED,
    "volume:volume_metadata:delete": Rule.ANYONE_AUTHENTICATED,
    "volume:snapshot:list": Rule.ANYONE_AUTHENTICATED,
    "volume:snapshot:show": Rule.ANYONE_AUTHENTICATED,
    "volume:snapshot:create": Rule.ANYONE_AUTHENTICATED,
    "volume:snapshot:update": Rule.ANYONE_AUTHENTICATED,
    "volume:snapshot:delete": Rule.ANYONE_AUTHENTICATED,
    "volume:snapshot:action": Rule.ANYONE_AUTHENTICATED,
    "volume:snapshot_metadata:list": Rule.ANYONE_AUTHENTICATED,
    "volume:snapshot_metadata:show": Rule.ANYONE_AUTHENTICATED,
    "volume:snapshot_metadata:update": Rule.ANYONE_AUTHENTICATED,
    "volume:snapshot_metadata:delete": Rule.ANYONE_AUTHENTICATED,
    "volume:type:list": Rule.ANYONE_AUTHENTICATED,
    "volume:type:show": Rule.ANYONE_AUTHENTICATED,
    "volume:type:create": Rule.ANYONE_AUTHENTICATED,
    "volume:type:update": Rule.ANYONE_AUTHENTICATED,
    "volume:type:delete": Rule.ANYONE_AUTHENTICATED,
    "volume:type_extra_spec:list": Rule.ANYONE_AUTHENTICATED,
    "volume:type_extra_spec:show": Rule.ANYONE_AUTHENTICATED,
    "volume:type_extra_spec:update": Rule.ANYONE_AUTHENTICATED,
    "volume:type_extra_spec:delete": Rule.ANYONE_AUTHENTICATED,
    "volume:quota:show": Rule.ANYONE_AUTHENTICATED,
    "volume:quota:update": Rule.ANYONE_AUTHENTICATED,
    "volume:quota:delete": Rule.ANYONE_AUTHENTICATED,
    "volume:limits:show": Rule.ANYONE_AUTHENTICATED,
    "volume:availability_zone:list": Rule.ANYONE_AUTHENTICATED,
    "volume:message:list": Rule.ANYONE_AUTHENTICATED,
    "volume:message:show": Rule.ANYONE_AUTHENTICATED,
    "volume:extension:list": Rule.ANYONE_AUTHENTICATED,
}


IMAGE_RULES: dict[str, Rule] = {
    # owners, members and admins: the service decides per image
    "image:image:list": Rule.ANYONE_AUTHENTICATED,
    "image:image:show": Rule.ANYONE_AUTHENTICATED,
    "image:image:create": Rule.ANYONE_AUTHENTICATED,
    "image:image:update": Rule.ANYONE_AUTHENTICATED,
    "image:image:delete": Rule.ANYONE_AUTHENTICATED,
    "image:image:upload": Rule.ANYONE_AUTHENTICATED,
    "image:image:download": Rule.ANYONE_AUTHENTICATED,
    "image:image:deactivate": Rule.ANYONE_AUTHENTICATED,
    "image:image:reactivate": Rule.ANYONE_AUTHENTICATED,
    "image:tag:create": Rule.ANYONE_AUTHENTICATED,
    "image:tag:delete": Rule.ANYONE_AUTHENTICATED,
    "image:member:list": Rule.ANYONE_AUTHENTICATED,
    "image:member:show": Rule.ANYONE_AUTHENTICATED,
    "image:member:create": Rule.ANYONE_AUTHENTICATED,
    "image:member:update": Rule.ANYONE_AUTHENTICATED,
    "image:member:delete": Rule.ANYONE_AUTHENTICATED,
    "image:schema:show": Rule.ANYONE_AUTHENTICATED,
}


BILLING_RULES: dict[str, Rule] = {
    # account roles (owner, billing, viewer) and the operator-only actions are checked by
    # the billing service itself, which knows the account
    "billing:catalog:show": Rule.ANYONE_AUTHENTICATED,
    "billing:account:list": Rule.ANYONE_AUTHENTICATED,
    "billing:account:create": Rule.ANYONE_AUTHENTICATED,
    "billing:account:show": Rule.ANYONE_AUTHENTICATED,
    "billing:account:update": Rule.ANYONE_AUTHENTICATED,
    "billing:account:delete": Rule.ANYONE_AUTHENTICATED,
    "billing:account_project:list": Rule.ANYONE_AUTHENTICATED,
    "billing:account_project:create": Rule.ANYONE_AUTHENTICATED,
    "billing:account_role:grant": Rule.ANYONE_AUTHENTICATED,
    "billing:account_role:revoke": Rule.ANYONE_AUTHENTICATED,
    "billing:consumption:show": Rule.ANYONE_AUTHENTICATED,
    "billing:budget:update": Rule.ANYONE_AUTHENTICATED,
    "billing:invoice:list": Rule.ANYONE_AUTHENTICATED,
    "billing:invoice:show": Rule.ANYONE_AUTHENTICATED,
    "billing:invoice:download": Rule.ANYONE_AUTHENTICATED,
    "billing:invoicing:run": Rule.ANYONE_AUTHENTICATED,
    "billing:credit_note:create": Rule.ANYONE_AUTHENTICATED,
    # the API's description, read without a token like the version documents
    "billing:openapi:show": Rule.PUBLIC,
}


# Version documents and discovery: read without a token, as every OpenStack API allows.
PUBLIC_RULES: dict[str, Rule] = {
    "identity:version:show": Rule.PUBLIC,
    "identity:token:issue": Rule.PUBLIC,
    "compute:version:show": Rule.PUBLIC,
    "network:version:show": Rule.PUBLIC,
    "volume:version:show": Rule.PUBLIC,
    "image:version:show": Rule.PUBLIC,
    "billing:version:show": Rule.PUBLIC,
}

RULES: dict[str, Rule] = {
    **IDENTITY_RULES,
    **COMPUTE_RULES,
    **NETWORK_RULES,
    **VOLUME_RULES,
    **IMAGE_RULES,
    **BILLING_RULES,
    **PUBLIC_RULES,
}


def allowed(ctx: RequestContext, action: str, owner_user_id: str | None = None) -> bool:
    """Decide from the table; an action missing from the table is refused."""
    rule = RULES.get(action)
    if rule is None:
        return False
    roles = effective_roles(ctx.roles)
    if "admin" in roles or rule is Rule.PUBLIC:
        return True
    if rule is Rule.ANYONE_AUTHENTICATED:
        return True
    if rule is Rule.READER:
        return "reader" in roles
    if rule is Rule.MEMBER:
        return "member" in roles
    if rule is Rule.OWNER_READ:
        return owner_user_id is not None and owner_user_id == ctx.user_id
    if rule is Rule.OWNER_WRITE:
        return owner_user_id == ctx.user_id and "member" in roles
    return False


def enforce(ctx: RequestContext, action: str, owner_user_id: str | None = None) -> None:
    if not allowed(ctx, action, owner_user_id):
        raise Forbidden(
            f"You are not authorized to perform the requested action: {action}. "
            f"It requires: {RULES[action].value if action in RULES else 'an unknown rule'}."
        )


def authorize(ctx: RequestContext, action: str) -> None:
    """What the edge decides before the service runs: the part of the rule that needs no
    target. Owner rules are checked again by the service, which knows the owner."""
    rule = RULES.get(action)
    if rule in (Rule.PUBLIC, Rule.ANYONE_AUTHENTICATED, Rule.OWNER_READ):
        return
    if rule is Rule.OWNER_WRITE:
        roles = effective_roles(ctx.roles)
        if "admin" in roles or "member" in roles:
            return
    enforce(ctx, action)
