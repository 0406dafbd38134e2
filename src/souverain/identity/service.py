"""Identity's face to the rest of the cloud: one object, built once by `server.py`.

IdentityService keeps the method names other services and the API call, and hands
each call to the part that owns the resource: `Authentication` (logins, tokens),
`Resources` (domains, projects, users, groups), `Roles` (roles, grants,
assignments), `Catalog` (regions, services, endpoints) and `Credentials`
(application credentials, credentials, EC2 keys). It holds no rule of its own.
"""

from __future__ import annotations

from typing import Any

from souverain.common.changes import ChangeCounter
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.db.engine import Database
from souverain.identity.authentication import Authentication
from souverain.identity.catalog import Catalog
from souverain.identity.core import (
    DEFAULT_DOMAIN_ID,
    CatalogEntry,
    Ec2Principal,
    IdentityCore,
    IdentityPolicySettings,
    TokenView,
    check_secret,
    hash_secret,
)
from souverain.identity.credentials import Credentials
from souverain.identity.domain_config import DomainConfigs
from souverain.identity.endpoint_filter import EndpointFilter
from souverain.identity.project_tags import ProjectTags
from souverain.identity.resources import Resources
from souverain.identity.roles import Roles
from souverain.identity.tokens import TokenFormatter
from souverain.identity.trusts import Trusts

__all__ = [
    "DEFAULT_DOMAIN_ID",
    "CatalogEntry",
    "Ec2Principal",
    "IdentityPolicySettings",
    "IdentityService",
    "TokenView",
    "check_secret",
    "hash_secret",
]


class IdentityService:
    """The identity service: its parts share one IdentityCore (caches, revocations)."""

    def __init__(
        self,
        db: Database,
        tokens: TokenFormatter,
        credential_key: bytes,
        settings: IdentityPolicySettings,
        clock: Clock | None = None,
        changes: ChangeCounter | None = None,
    ) -> None:
        self.core = IdentityCore(db, tokens, credential_key, settings, clock, changes)
        self.db = db
        self.tokens = tokens
        self.settings = settings
        self.clock = self.core.clock
        self.changes = changes
        self.trusts = Trusts(self.core)
        self.project_tags = ProjectTags(self.core)
        self.endpoint_filter = EndpointFilter(self.core)
        self.authentication = Authentication(self.core, self.trusts)
        self.resources = Resources(self.core)
        self.roles = Roles(self.core)
        self.service_catalog = Catalog(self.core)
        self.credentials = Credentials(self.core)
        self.access_rules = self.credentials.access_rules
        self.domain_configs = DomainConfigs(self.core)

    def sync_from_store(self) -> bool:
        """Pick up changes other processes made (revocations, roles, users)."""
        return self.core.sync_from_store()

    def follow_changes(self) -> None:
        self.core.follow_changes()

    def load_revocations(self) -> None:
        self.core.load_revocations()

    def catalog(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """The service catalog; a project's, narrowed by its endpoint filters, if given."""
        if project_id is None:
            return self.service_catalog.catalog()
        narrowing = self.endpoint_filter.endpoint_ids_for
        return self.service_catalog.project_catalog(project_id, narrowing)

    def authenticate(self, auth: dict[str, Any], receipt: str | None = None) -> TokenView:
        return self.authentication.authenticate(auth, receipt)

    def validate(self, token: str) -> TokenView | None:
        return self.authentication.validate(token)

    def revoke_token(self, ctx: RequestContext, token: str) -> None:
        self.authentication.revoke_token(ctx, token)

    def list_domains(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self.resources.list_domains(ctx, filters)

    def get_domain(self, ctx: RequestContext, domain_id: str) -> dict[str, Any]:
        return self.resources.get_domain(ctx, domain_id)

    def create_domain(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        return self.resources.create_domain(ctx, data)

    def update_domain(
        self, ctx: RequestContext, domain_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.resources.update_domain(ctx, domain_id, data)

    def delete_domain(self, ctx: RequestContext, domain_id: str) -> None:
        self.resources.delete_domain(ctx, domain_id)

    def list_projects(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self.resources.list_projects(ctx, filters)

    def get_project(self, ctx: RequestContext, project_id: str) -> dict[str, Any]:
        return self.resources.get_project(ctx, project_id)

    def create_project(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        return self.resources.create_project(ctx, data)

    def update_project(
        self, ctx: RequestContext, project_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.resources.update_project(ctx, project_id, data)

    def delete_project(self, ctx: RequestContext, project_id: str) -> None:
        self.resources.delete_project(ctx, project_id)

    def list_user_projects(self, ctx: RequestContext, user_id: str) -> list[dict[str, Any]]:
        return self.resources.list_user_projects(ctx, user_id)

    def auth_projects(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return self.resources.auth_projects(ctx)

    def auth_domains(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return self.resources.auth_domains(ctx)

    def auth_system(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return self.resources.auth_system(ctx)

    def list_users(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self.resources.list_users(ctx, filters)

    def get_user(self, ctx: RequestContext, user_id: str) -> dict[str, Any]:
        return self.resources.get_user(ctx, user_id)

    def create_user(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        return self.resources.create_user(ctx, data)

    def update_user(
        self, ctx: RequestContext, user_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.resources.update_user(ctx, user_id, data)

    def change_password(
        self, ctx: RequestContext | None, user_id: str, original: str, new: str
    ) -> None:
        self.resources.change_password(ctx, user_id, original, new)

    def delete_user(self, ctx: RequestContext, user_id: str) -> None:
        self.resources.delete_user(ctx, user_id)

    def list_groups(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self.resources.list_groups(ctx, filters)

    def get_group(self, ctx: RequestContext, group_id: str) -> dict[str, Any]:
        return self.resources.get_group(ctx, group_id)

    def create_group(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        return self.resources.create_group(ctx, data)

    def update_group(
        self, ctx: RequestContext, group_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.resources.update_group(ctx, group_id, data)

    def delete_group(self, ctx: RequestContext, group_id: str) -> None:
        self.resources.delete_group(ctx, group_id)

    def list_group_users(
        self, ctx: RequestContext, group_id: str, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return self.resources.list_group_users(ctx, group_id, filters)

    def list_user_groups(self, ctx: RequestContext, user_id: str) -> list[dict[str, Any]]:
        return self.resources.list_user_groups(ctx, user_id)

    def add_user_to_group(self, ctx: RequestContext, group_id: str, user_id: str) -> None:
        self.resources.add_user_to_group(ctx, group_id, user_id)

    def check_user_in_group(self, ctx: RequestContext, group_id: str, user_id: str) -> None:
        self.resources.check_user_in_group(ctx, group_id, user_id)

    def remove_user_from_group(self, ctx: RequestContext, group_id: str, user_id: str) -> None:
        self.resources.remove_user_from_group(ctx, group_id, user_id)

    def list_roles(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self.roles.list_roles(ctx, filters)

    def get_role(self, ctx: RequestContext, role_id: str) -> dict[str, Any]:
        return self.roles.get_role(ctx, role_id)

    def create_role(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        return self.roles.create_role(ctx, data)

    def update_role(
        self, ctx: RequestContext, role_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.roles.update_role(ctx, role_id, data)

    def delete_role(self, ctx: RequestContext, role_id: str) -> None:
        self.roles.delete_role(ctx, role_id)

    def create_grant(
        self,
        ctx: RequestContext,
        actor_type: str,
        actor_id: str,
        target_type: str,
        target_id: str,
        role_id: str,
    ) -> None:
        self.roles.create_grant(ctx, actor_type, actor_id, target_type, target_id, role_id)

    def check_grant(
        self,
        ctx: RequestContext,
        actor_type: str,
        actor_id: str,
        target_type: str,
        target_id: str,
        role_id: str,
    ) -> None:
        self.roles.check_grant(ctx, actor_type, actor_id, target_type, target_id, role_id)

    def revoke_grant(
        self,
        ctx: RequestContext,
        actor_type: str,
        actor_id: str,
        target_type: str,
        target_id: str,
        role_id: str,
    ) -> None:
        self.roles.revoke_grant(ctx, actor_type, actor_id, target_type, target_id, role_id)

    def list_grants(
        self, ctx: RequestContext, actor_type: str, actor_id: str, target_type: str, target_id: str
    ) -> list[dict[str, Any]]:
        return self.roles.list_grants(ctx, actor_type, actor_id, target_type, target_id)

    def list_role_assignments(
        self,
        ctx: RequestContext,
        filters: dict[str, Any],
        effective: bool,
        include_names: bool,
        include_implied: bool = False,
    ) -> list[dict[str, Any]]:
        return self.roles.list_role_assignments(
            ctx, filters, effective, include_names, include_implied
        )

    def list_regions(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self.service_catalog.list_regions(ctx, filters)

    def get_region(self, ctx: RequestContext, region_id: str) -> dict[str, Any]:
        return self.service_catalog.get_region(ctx, region_id)

    def create_region(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        return self.service_catalog.create_region(ctx, data)

    def update_region(
        self, ctx: RequestContext, region_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.service_catalog.update_region(ctx, region_id, data)

    def delete_region(self, ctx: RequestContext, region_id: str) -> None:
        self.service_catalog.delete_region(ctx, region_id)

    def list_services(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self.service_catalog.list_services(ctx, filters)

    def get_service(self, ctx: RequestContext, service_id: str) -> dict[str, Any]:
        return self.service_catalog.get_service(ctx, service_id)

    def create_service(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        return self.service_catalog.create_service(ctx, data)

    def update_service(
        self, ctx: RequestContext, service_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.service_catalog.update_service(ctx, service_id, data)

    def delete_service(self, ctx: RequestContext, service_id: str) -> None:
        self.service_catalog.delete_service(ctx, service_id)

    def list_endpoints(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self.service_catalog.list_endpoints(ctx, filters)

    def get_endpoint(self, ctx: RequestContext, endpoint_id: str) -> dict[str, Any]:
        return self.service_catalog.get_endpoint(ctx, endpoint_id)

    def create_endpoint(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        return self.service_catalog.create_endpoint(ctx, data)

    def update_endpoint(
        self, ctx: RequestContext, endpoint_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.service_catalog.update_endpoint(ctx, endpoint_id, data)

    def delete_endpoint(self, ctx: RequestContext, endpoint_id: str) -> None:
        self.service_catalog.delete_endpoint(ctx, endpoint_id)

    def list_app_creds(
        self, ctx: RequestContext, user_id: str, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return self.credentials.list_app_creds(ctx, user_id, filters)

    def get_app_cred(self, ctx: RequestContext, user_id: str, cred_id: str) -> dict[str, Any]:
        return self.credentials.get_app_cred(ctx, user_id, cred_id)

    def create_app_cred(
        self, ctx: RequestContext, user_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.credentials.create_app_cred(ctx, user_id, data)

    def delete_app_cred(self, ctx: RequestContext, user_id: str, cred_id: str) -> None:
        self.credentials.delete_app_cred(ctx, user_id, cred_id)

    def list_credentials(
        self, ctx: RequestContext, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return self.credentials.list_credentials(ctx, filters)

    def get_credential(self, ctx: RequestContext, cred_id: str) -> dict[str, Any]:
        return self.credentials.get_credential(ctx, cred_id)

    def create_credential(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        return self.credentials.create_credential(ctx, data)

    def update_credential(
        self, ctx: RequestContext, cred_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.credentials.update_credential(ctx, cred_id, data)

    def delete_credential(self, ctx: RequestContext, cred_id: str) -> None:
        self.credentials.delete_credential(ctx, cred_id)

    def ec2_create(
        self, ctx: RequestContext, user_id: str, project_id: str, base_url: str
    ) -> dict[str, Any]:
        return self.credentials.ec2_create(ctx, user_id, project_id, base_url)

    def ec2_list(self, ctx: RequestContext, user_id: str, base_url: str) -> list[dict[str, Any]]:
        return self.credentials.ec2_list(ctx, user_id, base_url)

    def ec2_get(
        self, ctx: RequestContext, user_id: str, access: str, base_url: str
    ) -> dict[str, Any]:
        return self.credentials.ec2_get(ctx, user_id, access, base_url)

    def ec2_delete(self, ctx: RequestContext, user_id: str, access: str) -> None:
        self.credentials.ec2_delete(ctx, user_id, access)

    def ec2_principal(self, access: str) -> Ec2Principal | None:
        return self.credentials.ec2_principal(access)
