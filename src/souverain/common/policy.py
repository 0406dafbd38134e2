"""Policy: which role may do which action. The whole table lives here and only here.

Roles imply each other: admin > member > reader. `admin` on any scope is a
cloud administrator. A rule answers "may this caller attempt this action"; a
service still hides other projects' resources by reporting them as not found.

A project's resources (servers, networks, volumes, images...) are read by its
readers and written by its members, with a token scoped to that project: an
unscoped or domain-scoped token holds no project, so it may touch none.
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
    PROJECT_READER = "reader or member with a project-scoped token, or admin"
    PROJECT_MEMBER = "member with a project-scoped token, or admin"
    ADMIN = "admin"
    OWNER_READ = "the user the resource belongs to, or admin"
    OWNER_WRITE = "the owning user with member in scope, or admin"
    HOST_AGENT = "a host agent's own credential, for what is assigned to its host"


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
    # endpoint filters (OS-EP-FILTER): what runs the cloud, so its administrators only
    "identity:list_endpoint_groups": Rule.ADMIN,
    "identity:get_endpoint_group": Rule.ADMIN,
    "identity:create_endpoint_group": Rule.ADMIN,
    "identity:update_endpoint_group": Rule.ADMIN,
    "identity:delete_endpoint_group": Rule.ADMIN,
    "identity:list_endpoints_associated_with_endpoint_group": Rule.ADMIN,
    "identity:list_projects_for_endpoint": Rule.ADMIN,
    "identity:add_endpoint_to_project": Rule.ADMIN,
    "identity:check_endpoint_in_project": Rule.ADMIN,
    "identity:remove_endpoint_from_project": Rule.ADMIN,
    "identity:list_endpoints_for_project": Rule.ADMIN,
    "identity:list_endpoint_groups_for_project": Rule.ADMIN,
    # projects: readers see their own, admins manage all
    "identity:list_projects": Rule.READER,
    "identity:get_project": Rule.READER,
    "identity:create_project": Rule.ADMIN,
    "identity:update_project": Rule.ADMIN,
    "identity:delete_project": Rule.ADMIN,
    "identity:list_user_projects": Rule.OWNER_READ,
    "identity:list_project_tags": Rule.READER,
    "identity:get_project_tag": Rule.READER,
    "identity:update_project_tags": Rule.ADMIN,
    "identity:create_project_tag": Rule.ADMIN,
    "identity:delete_project_tag": Rule.ADMIN,
    "identity:delete_project_tags": Rule.ADMIN,
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
    # implied roles: fixed rules (admin implies member, member implies reader) and those
    # administrators add
    "identity:list_role_inference_rules": Rule.READER,
    "identity:list_implied_roles": Rule.READER,
    "identity:get_implied_role": Rule.READER,
    "identity:create_implied_role": Rule.ADMIN,
    "identity:delete_implied_role": Rule.ADMIN,
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
    # trusts: the service lets in their trustor, trustee and admins only
    "identity:list_trusts": Rule.ANYONE_AUTHENTICATED,
    "identity:get_trust": Rule.ANYONE_AUTHENTICATED,
    "identity:create_trust": Rule.ANYONE_AUTHENTICATED,
    "identity:delete_trust": Rule.ANYONE_AUTHENTICATED,
    "identity:list_roles_for_trust": Rule.ANYONE_AUTHENTICATED,
    "identity:get_role_for_trust": Rule.ANYONE_AUTHENTICATED,
    "identity:validate_token": Rule.ANYONE_AUTHENTICATED,
    "identity:revoke_token": Rule.ANYONE_AUTHENTICATED,
    "identity:get_auth_catalog": Rule.ANYONE_AUTHENTICATED,
    "identity:get_auth_projects": Rule.ANYONE_AUTHENTICATED,
    "identity:get_auth_domains": Rule.ANYONE_AUTHENTICATED,
    "identity:get_auth_system": Rule.ANYONE_AUTHENTICATED,
    # a domain's own configuration (identity and ldap groups): the operator's business
    "identity:create_domain_config": Rule.ADMIN,
    "identity:get_domain_config": Rule.ADMIN,
    "identity:update_domain_config": Rule.ADMIN,
    "identity:delete_domain_config": Rule.ADMIN,
    "identity:get_domain_config_default": Rule.ADMIN,
    "identity:get_security_compliance_domain_config": Rule.ANYONE_AUTHENTICATED,
    # access rules of a user's application credentials (made with a credential)
    "identity:list_access_rules": Rule.OWNER_READ,
    "identity:get_access_rule": Rule.OWNER_READ,
    "identity:delete_access_rule": Rule.OWNER_WRITE,
}

# The project services' actions, as OpenStack's "consistent and secure RBAC" defaults:
# a project's reader reads, its member also writes; what runs the cloud (flavors, volume
# types, quotas, hypervisors) is the admin's, and the service checks that again itself.
# What describes the cloud to everyone (versions, extensions, flavors, volume types,
# zones, schemas) stays open to any valid token. Which rows a caller sees is still the
# service's business: another project's resource is not found.

COMPUTE_RULES: dict[str, Rule] = {
    "compute:aggregate:action": Rule.ADMIN,
    "compute:aggregate:create": Rule.ADMIN,
    "compute:aggregate:delete": Rule.ADMIN,
    "compute:aggregate:list": Rule.ADMIN,
    "compute:aggregate:show": Rule.ADMIN,
    "compute:aggregate:update": Rule.ADMIN,
    "compute:availability_zone:detail": Rule.ADMIN,
    "compute:availability_zone:list": Rule.ANYONE_AUTHENTICATED,
    "compute:extension:list": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor:action": Rule.ADMIN,
    "compute:flavor:create": Rule.ADMIN,
    "compute:flavor:delete": Rule.ADMIN,
    "compute:flavor:list": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor:show": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor:update": Rule.ADMIN,
    "compute:flavor_access:list": Rule.ADMIN,
    "compute:flavor_extra_spec:create": Rule.ADMIN,
    "compute:flavor_extra_spec:delete": Rule.ADMIN,
    "compute:flavor_extra_spec:list": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor_extra_spec:show": Rule.ANYONE_AUTHENTICATED,
    "compute:flavor_extra_spec:update": Rule.ADMIN,
    "compute:hypervisor:detail": Rule.ADMIN,
    "compute:image:delete": Rule.PROJECT_MEMBER,
    "compute:image:list": Rule.PROJECT_READER,
    "compute:image:show": Rule.PROJECT_READER,
    "compute:hypervisor:list": Rule.ADMIN,
    "compute:hypervisor:search": Rule.ADMIN,
    "compute:hypervisor:servers": Rule.ADMIN,
    "compute:hypervisor:uptime": Rule.ADMIN,
    "compute:hypervisor:show": Rule.ADMIN,
    "compute:hypervisor:statistics": Rule.ADMIN,
    "compute:instance_action:list": Rule.PROJECT_READER,
    "compute:instance_action:show": Rule.PROJECT_READER,
    "compute:interface:create": Rule.PROJECT_MEMBER,
    "compute:interface:delete": Rule.PROJECT_MEMBER,
    "compute:interface:list": Rule.PROJECT_READER,
    "compute:interface:show": Rule.PROJECT_READER,
    "compute:keypair:create": Rule.PROJECT_MEMBER,
    "compute:keypair:delete": Rule.PROJECT_MEMBER,
    "compute:keypair:list": Rule.PROJECT_READER,
    "compute:keypair:show": Rule.PROJECT_READER,
    "compute:limits:show": Rule.PROJECT_READER,
    "compute:quota:defaults": Rule.ANYONE_AUTHENTICATED,
    "compute:quota:delete": Rule.ADMIN,
    "compute:quota:detail": Rule.PROJECT_READER,
    "compute:quota:show": Rule.PROJECT_READER,
    "compute:quota:update": Rule.ADMIN,
    "compute:migration:list": Rule.ADMIN,
    "compute:server_migration:list": Rule.ADMIN,
    "compute:server_migration:show": Rule.ADMIN,
    "compute:server_migration:delete": Rule.ADMIN,
    "compute:server_migration:force_complete": Rule.ADMIN,
    "compute:server:action": Rule.PROJECT_MEMBER,
    "compute:server:create": Rule.PROJECT_MEMBER,
    "compute:server:delete": Rule.PROJECT_MEMBER,
    "compute:server:diagnostics": Rule.ADMIN,
    "compute:server:list": Rule.PROJECT_READER,
    "compute:server:show": Rule.PROJECT_READER,
    "compute:server:update": Rule.PROJECT_MEMBER,
    "compute:server_group:create": Rule.PROJECT_MEMBER,
    "compute:server_group:delete": Rule.PROJECT_MEMBER,
    "compute:server_group:list": Rule.PROJECT_READER,
    "compute:server_group:show": Rule.PROJECT_READER,
    "compute:server_ip:list": Rule.PROJECT_READER,
    "compute:server_metadata:create": Rule.PROJECT_MEMBER,
    "compute:server_metadata:delete": Rule.PROJECT_MEMBER,
    "compute:server_metadata:list": Rule.PROJECT_READER,
    "compute:server_metadata:show": Rule.PROJECT_READER,
    "compute:server_metadata:update": Rule.PROJECT_MEMBER,
    "compute:server_metadata:update_all": Rule.PROJECT_MEMBER,
    "compute:server_tag:create": Rule.PROJECT_MEMBER,
    "compute:server_tag:delete": Rule.PROJECT_MEMBER,
    "compute:server_tag:delete_all": Rule.PROJECT_MEMBER,
    "compute:server_tag:list": Rule.PROJECT_READER,
    "compute:server_tag:show": Rule.PROJECT_READER,
    "compute:server_tag:update_all": Rule.PROJECT_MEMBER,
    "compute:service:list": Rule.ADMIN,
    "compute:service:update": Rule.ADMIN,
    "compute:volume_attachment:create": Rule.PROJECT_MEMBER,
    "compute:volume_attachment:delete": Rule.PROJECT_MEMBER,
    "compute:volume_attachment:list": Rule.PROJECT_READER,
    "compute:volume_attachment:show": Rule.PROJECT_READER,
    "compute:volume_attachment:update": Rule.PROJECT_MEMBER,
    # remote consoles: a console URL is the member's; where a token leads, the admin's
    "compute:remote_console:create": Rule.PROJECT_MEMBER,
    "compute:console_auth_token:show": Rule.ADMIN,
}


NETWORK_RULES: dict[str, Rule] = {
    "network:resource:list": Rule.ANYONE_AUTHENTICATED,
    "network:extension:list": Rule.ANYONE_AUTHENTICATED,
    "network:extension:show": Rule.ANYONE_AUTHENTICATED,
    "network:quota:list": Rule.ADMIN,
    "network:quota:show": Rule.PROJECT_READER,
    "network:quota:update": Rule.ADMIN,
    "network:quota:delete": Rule.ADMIN,
    "network:quota:show_default": Rule.ANYONE_AUTHENTICATED,
    "network:quota:show_details": Rule.PROJECT_READER,
    "network:network:list": Rule.PROJECT_READER,
    "network:network:show": Rule.PROJECT_READER,
    "network:network:create": Rule.PROJECT_MEMBER,
    "network:network:update": Rule.PROJECT_MEMBER,
    "network:network:delete": Rule.PROJECT_MEMBER,
    "network:subnet:list": Rule.PROJECT_READER,
    "network:subnet:show": Rule.PROJECT_READER,
    "network:subnet:create": Rule.PROJECT_MEMBER,
    "network:subnet:update": Rule.PROJECT_MEMBER,
    "network:subnet:delete": Rule.PROJECT_MEMBER,
    "network:subnetpool:list": Rule.PROJECT_READER,
    "network:subnetpool:show": Rule.PROJECT_READER,
    "network:subnetpool:create": Rule.PROJECT_MEMBER,
    "network:subnetpool:update": Rule.PROJECT_MEMBER,
    "network:subnetpool:delete": Rule.PROJECT_MEMBER,
    "network:subnetpool:add_prefixes": Rule.PROJECT_MEMBER,
    "network:subnetpool:remove_prefixes": Rule.PROJECT_MEMBER,
    "network:tag:list": Rule.PROJECT_READER,
    "network:tag:show": Rule.PROJECT_READER,
    "network:tag:update": Rule.PROJECT_MEMBER,
    "network:tag:delete": Rule.PROJECT_MEMBER,
    "network:metering_label:list": Rule.ADMIN,
    "network:metering_label:show": Rule.ADMIN,
    "network:metering_label:create": Rule.ADMIN,
    "network:metering_label:update": Rule.ADMIN,
    "network:metering_label:delete": Rule.ADMIN,
    "network:metering_label_rule:list": Rule.ADMIN,
    "network:metering_label_rule:show": Rule.ADMIN,
    "network:metering_label_rule:create": Rule.ADMIN,
    "network:metering_label_rule:update": Rule.ADMIN,
    "network:metering_label_rule:delete": Rule.ADMIN,
    "network:port:list": Rule.PROJECT_READER,
    "network:port:show": Rule.PROJECT_READER,
    "network:port:create": Rule.PROJECT_MEMBER,
    "network:port:update": Rule.PROJECT_MEMBER,
    "network:port:delete": Rule.PROJECT_MEMBER,
    "network:security_group:list": Rule.PROJECT_READER,
    "network:security_group:show": Rule.PROJECT_READER,
    "network:security_group:create": Rule.PROJECT_MEMBER,
    "network:security_group:update": Rule.PROJECT_MEMBER,
    "network:security_group:delete": Rule.PROJECT_MEMBER,
    "network:security_group_rule:list": Rule.PROJECT_READER,
    "network:security_group_rule:show": Rule.PROJECT_READER,
    "network:security_group_rule:create": Rule.PROJECT_MEMBER,
    "network:security_group_rule:update": Rule.PROJECT_MEMBER,
    "network:security_group_rule:delete": Rule.PROJECT_MEMBER,
    "network:router:list": Rule.PROJECT_READER,
    "network:router:show": Rule.PROJECT_READER,
    "network:router:create": Rule.PROJECT_MEMBER,
    "network:router:update": Rule.PROJECT_MEMBER,
    "network:router:delete": Rule.PROJECT_MEMBER,
    "network:router:add_router_interface": Rule.PROJECT_MEMBER,
    "network:router:remove_router_interface": Rule.PROJECT_MEMBER,
    "network:floatingip:list": Rule.PROJECT_READER,
    "network:floatingip:show": Rule.PROJECT_READER,
    "network:floatingip:create": Rule.PROJECT_MEMBER,
    "network:floatingip:update": Rule.PROJECT_MEMBER,
    "network:floatingip:delete": Rule.PROJECT_MEMBER,
}


VOLUME_RULES: dict[str, Rule] = {
    # force delete and reset status are volume and snapshot actions: the service refuses them
    "volume:volume:list": Rule.PROJECT_READER,
    "volume:volume:show": Rule.PROJECT_READER,
    "volume:volume:create": Rule.PROJECT_MEMBER,
    "volume:volume:update": Rule.PROJECT_MEMBER,
    "volume:volume:delete": Rule.PROJECT_MEMBER,
    "volume:volume:action": Rule.PROJECT_MEMBER,
    "volume:volume_metadata:list": Rule.PROJECT_READER,
    "volume:volume_metadata:show": Rule.PROJECT_READER,
    "volume:volume_metadata:update": Rule.PROJECT_MEMBER,
    "volume:volume_metadata:delete": Rule.PROJECT_MEMBER,
    "volume:snapshot:list": Rule.PROJECT_READER,
    "volume:snapshot:show": Rule.PROJECT_READER,
    "volume:snapshot:create": Rule.PROJECT_MEMBER,
    "volume:snapshot:update": Rule.PROJECT_MEMBER,
    "volume:snapshot:delete": Rule.PROJECT_MEMBER,
    "volume:snapshot:action": Rule.PROJECT_MEMBER,
    "volume:backup:list": Rule.PROJECT_READER,
    "volume:backup:show": Rule.PROJECT_READER,
    "volume:backup:create": Rule.PROJECT_MEMBER,
    "volume:backup:update": Rule.PROJECT_MEMBER,
    "volume:backup:delete": Rule.PROJECT_MEMBER,
    "volume:backup:restore": Rule.PROJECT_MEMBER,
    # reset status and force delete are backup actions: the service refuses them to non-admins
    "volume:backup:action": Rule.PROJECT_MEMBER,
    "volume:backup:export_record": Rule.ADMIN,
    "volume:backup:import_record": Rule.ADMIN,
    "volume:snapshot_metadata:list": Rule.PROJECT_READER,
    "volume:snapshot_metadata:show": Rule.PROJECT_READER,
    "volume:snapshot_metadata:update": Rule.PROJECT_MEMBER,
    "volume:snapshot_metadata:delete": Rule.PROJECT_MEMBER,
    "volume:type:list": Rule.ANYONE_AUTHENTICATED,
    "volume:type:show": Rule.ANYONE_AUTHENTICATED,
    "volume:type:create": Rule.ADMIN,
    "volume:type:update": Rule.ADMIN,
    "volume:type:delete": Rule.ADMIN,
    "volume:type_extra_spec:list": Rule.ANYONE_AUTHENTICATED,
    "volume:type_extra_spec:show": Rule.ANYONE_AUTHENTICATED,
    "volume:type_extra_spec:update": Rule.ADMIN,
    "volume:type_extra_spec:delete": Rule.ADMIN,
    "volume:type_encryption:show": Rule.ADMIN,
    "volume:type_encryption:create": Rule.ADMIN,
    "volume:type_encryption:update": Rule.ADMIN,
    "volume:type_encryption:delete": Rule.ADMIN,
    "volume:type_access:list": Rule.ADMIN,
    "volume:type_access:update": Rule.ADMIN,
    "volume:qos_specs:list": Rule.ADMIN,
    "volume:qos_specs:show": Rule.ADMIN,
    "volume:qos_specs:create": Rule.ADMIN,
    "volume:qos_specs:update": Rule.ADMIN,
    "volume:qos_specs:delete": Rule.ADMIN,
    "volume:host:list": Rule.ADMIN,
    "volume:host:show": Rule.ADMIN,
    "volume:pool:list": Rule.ADMIN,
    "volume:manage:list": Rule.ADMIN,
    "volume:manage:create": Rule.ADMIN,
    "volume:transfer:list": Rule.PROJECT_READER,
    "volume:transfer:show": Rule.PROJECT_READER,
    "volume:transfer:create": Rule.PROJECT_MEMBER,
    "volume:transfer:accept": Rule.PROJECT_MEMBER,
    "volume:transfer:delete": Rule.PROJECT_MEMBER,
    "volume:quota:show": Rule.PROJECT_READER,
    "volume:quota:update": Rule.ADMIN,
    "volume:quota:delete": Rule.ADMIN,
    "volume:limits:show": Rule.PROJECT_READER,
    "volume:availability_zone:list": Rule.ANYONE_AUTHENTICATED,
    "volume:message:list": Rule.PROJECT_READER,
    "volume:message:show": Rule.PROJECT_READER,
    "volume:extension:list": Rule.ANYONE_AUTHENTICATED,
}


IMAGE_RULES: dict[str, Rule] = {
    # which image a caller sees and changes (owner, shared, public) the service decides
    "image:image:list": Rule.PROJECT_READER,
    "image:image:show": Rule.PROJECT_READER,
    "image:image:create": Rule.PROJECT_MEMBER,
    "image:image:update": Rule.PROJECT_MEMBER,
    "image:image:delete": Rule.PROJECT_MEMBER,
    "image:image:upload": Rule.PROJECT_MEMBER,
    "image:image:download": Rule.PROJECT_READER,
    "image:image:deactivate": Rule.ADMIN,
    "image:image:reactivate": Rule.ADMIN,
    "image:tag:create": Rule.PROJECT_MEMBER,
    "image:tag:delete": Rule.PROJECT_MEMBER,
    "image:member:list": Rule.PROJECT_READER,
    "image:member:show": Rule.PROJECT_READER,
    "image:member:create": Rule.PROJECT_MEMBER,
    "image:member:update": Rule.PROJECT_MEMBER,
    "image:member:delete": Rule.PROJECT_MEMBER,
    "image:schema:show": Rule.ANYONE_AUTHENTICATED,
    # interoperable import: stage data, import it, read the tasks that record it
    "image:info:show": Rule.ANYONE_AUTHENTICATED,
    "image:image:stage": Rule.PROJECT_MEMBER,
    "image:image:import": Rule.PROJECT_MEMBER,
    "image:task:list": Rule.PROJECT_READER,
    "image:task:show": Rule.PROJECT_READER,
    # metadata definitions: read by any project's reader (private ones by their owner's),
    # written by cloud administrators only
    "image:metadef:list": Rule.PROJECT_READER,
    "image:metadef:show": Rule.PROJECT_READER,
    "image:metadef:create": Rule.ADMIN,
    "image:metadef:update": Rule.ADMIN,
    "image:metadef:delete": Rule.ADMIN,
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
    "billing:audit:list": Rule.ANYONE_AUTHENTICATED,  # account owners; the service checks
    "billing:invoice:show": Rule.ANYONE_AUTHENTICATED,
    "billing:invoice:download": Rule.ANYONE_AUTHENTICATED,
    "billing:invoicing:run": Rule.ANYONE_AUTHENTICATED,
    "billing:credit_note:create": Rule.ANYONE_AUTHENTICATED,
    # the API's description, read without a token like the version documents
    "billing:openapi:show": Rule.PUBLIC,
}


# Swift (object-store): an account's readers read it, its members write it. Callers from
# other projects or without a token act only as a container's ACLs or a temp URL allow,
# which the object store decides; a ResellerAdmin acts on every account.
OBJECT_STORE_RULES: dict[str, Rule] = {
    "object-store:account:show": Rule.PROJECT_READER,
    "object-store:account:update": Rule.PROJECT_MEMBER,
    "object-store:account:bulk_delete": Rule.PROJECT_MEMBER,
    "object-store:account:extract_archive": Rule.PROJECT_MEMBER,
    "object-store:container:show": Rule.PROJECT_READER,
    "object-store:container:create": Rule.PROJECT_MEMBER,
    "object-store:container:update": Rule.PROJECT_MEMBER,
    "object-store:container:delete": Rule.PROJECT_MEMBER,
    "object-store:object:show": Rule.PROJECT_READER,
    "object-store:object:create": Rule.PROJECT_MEMBER,
    "object-store:object:update": Rule.PROJECT_MEMBER,
    "object-store:object:delete": Rule.PROJECT_MEMBER,
    "object-store:object:copy": Rule.PROJECT_MEMBER,
}


# The key manager (Barbican v1), with Barbican's secure-RBAC defaults: a project's readers
# read, its members write, admin runs quotas. The service checks the target again: another
# project's secret is not found, a private one (`project-access: false`) is its creator's
# and its ACL's users' only, and an ACL's users read (never write) whatever their project.
KEY_MANAGER_RULES: dict[str, Rule] = {
    "key-manager:secret:list": Rule.PROJECT_READER,
    "key-manager:secret:show": Rule.PROJECT_READER,
    "key-manager:secret:decrypt": Rule.PROJECT_READER,
    "key-manager:secret:create": Rule.PROJECT_MEMBER,
    "key-manager:secret:update": Rule.PROJECT_MEMBER,
    "key-manager:secret:delete": Rule.PROJECT_MEMBER,
    "key-manager:secret_consumers:list": Rule.PROJECT_READER,
    "key-manager:secret_consumers:create": Rule.PROJECT_MEMBER,
    "key-manager:secret_consumers:delete": Rule.PROJECT_MEMBER,
    "key-manager:secret_meta:list": Rule.PROJECT_READER,
    "key-manager:secret_meta:show": Rule.PROJECT_READER,
    "key-manager:secret_meta:create": Rule.PROJECT_MEMBER,
    "key-manager:secret_meta:update": Rule.PROJECT_MEMBER,
    "key-manager:secret_meta:delete": Rule.PROJECT_MEMBER,
    "key-manager:container:list": Rule.PROJECT_READER,
    "key-manager:container:show": Rule.PROJECT_READER,
    "key-manager:container:create": Rule.PROJECT_MEMBER,
    "key-manager:container:delete": Rule.PROJECT_MEMBER,
    "key-manager:container_consumers:list": Rule.PROJECT_READER,
    "key-manager:container_consumers:create": Rule.PROJECT_MEMBER,
    "key-manager:container_consumers:delete": Rule.PROJECT_MEMBER,
    "key-manager:order:list": Rule.PROJECT_READER,
    "key-manager:order:show": Rule.PROJECT_READER,
    "key-manager:order:create": Rule.PROJECT_MEMBER,
    "key-manager:order:delete": Rule.PROJECT_MEMBER,
    "key-manager:acl:show": Rule.PROJECT_READER,
    "key-manager:acl:update": Rule.PROJECT_MEMBER,
    "key-manager:acl:delete": Rule.PROJECT_MEMBER,
    "key-manager:quota:show": Rule.PROJECT_READER,
    "key-manager:project_quota:list": Rule.ADMIN,
    "key-manager:project_quota:show": Rule.ADMIN,
    "key-manager:project_quota:update": Rule.ADMIN,
    "key-manager:project_quota:delete": Rule.ADMIN,
}


# Version documents and discovery: read without a token, as every OpenStack API allows.
# The control plane's internal API: each host agent's own token, for its own host only
# (the handlers hold the caller to the host it names: compute/api_internal.py).
INTERNAL_RULES: dict[str, Rule] = {
    "internal:host:assignments": Rule.HOST_AGENT,
    "internal:host:heartbeat": Rule.HOST_AGENT,
    "internal:server:state": Rule.HOST_AGENT,
    "internal:server:console": Rule.HOST_AGENT,
    "internal:server:volumes": Rule.HOST_AGENT,
    "internal:image:download": Rule.HOST_AGENT,
    "internal:migration:report": Rule.HOST_AGENT,
}

PUBLIC_RULES: dict[str, Rule] = {
    "identity:version:show": Rule.PUBLIC,
    "identity:token:issue": Rule.PUBLIC,
    "compute:version:show": Rule.PUBLIC,
    # the serial console's websocket: its console token authorizes it, as nova-serialproxy
    "compute:serial_console:connect": Rule.PUBLIC,
    "network:version:show": Rule.PUBLIC,
    "volume:version:show": Rule.PUBLIC,
    "image:version:show": Rule.PUBLIC,
    "billing:version:show": Rule.PUBLIC,
    "key-manager:version:show": Rule.PUBLIC,
    "object-store:info:show": Rule.PUBLIC,
    "object-store:healthcheck:show": Rule.PUBLIC,
    "object-store:crossdomain:show": Rule.PUBLIC,
}

RULES: dict[str, Rule] = {
    **IDENTITY_RULES,
    **COMPUTE_RULES,
    **NETWORK_RULES,
    **VOLUME_RULES,
    **IMAGE_RULES,
    **BILLING_RULES,
    **OBJECT_STORE_RULES,
    **KEY_MANAGER_RULES,
    **INTERNAL_RULES,
    **PUBLIC_RULES,
}


def allowed(ctx: RequestContext, action: str, owner_user_id: str | None = None) -> bool:
    """Decide from the table; an action missing from the table is refused."""
    rule = RULES.get(action)
    if rule is None:
        return False
    roles = effective_roles(ctx.roles)
    if rule is Rule.HOST_AGENT:  # no user, not even an admin, is a host
        return "host-agent" in ctx.roles and ctx.user_id.startswith("host:")
    if "admin" in roles or rule is Rule.PUBLIC:
        return True
    if rule is Rule.ANYONE_AUTHENTICATED:
        return True
    if rule is Rule.READER:
        return "reader" in roles
    if rule is Rule.MEMBER:
        return "member" in roles
    if rule is Rule.PROJECT_READER:
        return bool(ctx.project_id) and "reader" in roles
    if rule is Rule.PROJECT_MEMBER:
        return bool(ctx.project_id) and "member" in roles
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
