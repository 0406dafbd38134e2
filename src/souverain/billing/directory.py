"""What billing asks of identity, as a protocol: the server passes identity in.

Billing checks that users exist, creates the projects an account pays for (making
their creator a member; deleting one again that lost the race for the account's last
place), and names projects on invoices. It does so as the operator
(`SYSTEM`): the account roles were checked before it asks.
"""

from __future__ import annotations

from typing import Any, Protocol

from souverain.common.context import RequestContext

SYSTEM = RequestContext(user_id="souverain", user_domain_id="default", roles=frozenset({"admin"}))


class Directory(Protocol):
    """Users, projects and role grants; identity's service satisfies it."""

    def get_user(self, ctx: RequestContext, user_id: str) -> dict[str, Any]: ...

    def get_project(self, ctx: RequestContext, project_id: str) -> dict[str, Any]: ...

    def create_project(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]: ...

    def delete_project(self, ctx: RequestContext, project_id: str) -> None: ...

    def list_roles(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]: ...

    def create_grant(
        self,
        ctx: RequestContext,
        actor_type: str,
        actor_id: str,
        target_type: str,
        target_id: str,
        role_id: str,
    ) -> None: ...
