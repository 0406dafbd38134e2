"""Who is calling: the request context the auth layer builds and every service receives."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    """The authenticated caller. Services decide with this, never with HTTP headers."""

    user_id: str
    user_domain_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    project_id: str | None = None
    project_domain_id: str | None = None
    domain_id: str | None = None
    system_scope: bool = False
    application_credential_id: str | None = None
    request_id: str = ""

    @property
    def is_admin(self) -> bool:
        """`admin` on any scope is a cloud administrator, as in Keystone's default policy."""
        return "admin" in self.roles

    @property
    def scope_label(self) -> str:
        if self.system_scope:
            return "system"
        if self.domain_id:
            return f"domain:{self.domain_id}"
        if self.project_id:
            return f"project:{self.project_id}"
        return "unscoped"
