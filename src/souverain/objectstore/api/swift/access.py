"""Who is calling a Swift URL and what the account's owner let them do.

The account in the path (`AUTH_<project>`) names the project. Its own readers and
members act as the policy table says; a `ResellerAdmin` (or a cloud admin) acts on
any account; anyone else, with a token or without, only as a container's ACLs or a
temporary URL allow, which the handlers check against the container they touch.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from souverain.common import policy
from souverain.common.audit import note_target_project
from souverain.common.context import RequestContext
from souverain.objectstore.api.swift.wire import SwiftError
from souverain.objectstore.policy import Principal
from souverain.objectstore.swift.acl import AclError, grants_user, parse_acl, referrer_allows
from souverain.objectstore.swift.metadata import ContainerMeta

RESELLER_ROLES = frozenset({"ResellerAdmin", "admin"})
ACCOUNT_PREFIX = "AUTH_"


@dataclass(frozen=True)
class Caller:
    """The caller of one request and the rights it holds on the account in the path."""

    project_id: str  # the account's project
    ctx: RequestContext | None
    owner: bool = False  # the account's own reader or member, as the policy allowed
    reseller: bool = False
    tempurl: bool = False
    referer: str = ""
    action: str = ""  # the policy action of the request, named in a refusal

    @property
    def manages(self) -> bool:
        """May act on the account and every container in it."""
        return self.owner or self.reseller or self.tempurl

    @property
    def principal(self) -> Principal:
        """The caller as the object store's rules see it."""
        if self.manages:
            user = self.ctx.user_id if self.ctx is not None else "temp-url"
            return Principal(user, self.project_id, frozenset({"member"}))
        if self.ctx is None:
            return Principal()
        return Principal(self.ctx.user_id, self.ctx.project_id, self.ctx.roles)

    def refuse(self) -> SwiftError:
        """401 for a caller without a token (a token may help), 403 for one with."""
        doing = f" ({self.action})" if self.action else ""
        if self.ctx is None:
            return SwiftError(401, f"This request{doing} needs a valid X-Auth-Token.")
        return SwiftError(
            403,
            f"Access was denied to this resource{doing}: it needs a role in the account's "
            "project or a grant in the container's ACL.",
        )


def account_project(account: str) -> str:
    if not account.startswith(ACCOUNT_PREFIX) or len(account) == len(ACCOUNT_PREFIX):
        raise SwiftError(404, f"No account {account!r}: accounts are AUTH_<project id>.")
    return account[len(ACCOUNT_PREFIX) :]


def identify(ctx: RequestContext | None, project_id: str, action: str, request: Request) -> Caller:
    return caller_for(ctx, project_id, action, request.headers.get("referer", ""))


def caller_for(
    ctx: RequestContext | None, project_id: str, action: str, referer: str = ""
) -> Caller:
    """The caller's rights on the account, decided as for a request (no Request needed:
    the image service's web-download reads objects as its caller would)."""
    note_target_project(project_id)  # the account's owners see what was done in it
    if ctx is None:
        return Caller(project_id, None, referer=referer, action=action)
    roles = policy.effective_roles(ctx.roles)
    if roles & RESELLER_ROLES:
        return Caller(project_id, ctx, reseller=True, referer=referer, action=action)
    if ctx.project_id == project_id:
        if not policy.allowed(ctx, action):
            raise SwiftError(403, f"Your roles do not allow {action} on this account.")
        return Caller(project_id, ctx, owner=True, referer=referer, action=action)
    return Caller(project_id, ctx, referer=referer, action=action)


def may_read(caller: Caller, container: ContainerMeta, listing: bool = False) -> bool:
    if caller.manages:
        return True
    try:
        grants = parse_acl(container.settings.get("read", ""))
    except AclError:
        return False
    if caller.ctx is not None and grants_user(grants, caller.ctx.project_id, caller.ctx.user_id):
        return "reader" in policy.effective_roles(caller.ctx.roles)
    if listing and not grants.listings:
        return False
    return referrer_allows(grants, caller.referer)


def may_write(caller: Caller, container: ContainerMeta) -> bool:
    if caller.manages:
        return caller.tempurl or caller.reseller or _member(caller)
    if caller.ctx is None or not _member(caller):
        return False
    try:
        grants = parse_acl(container.settings.get("write", ""), write=True)
    except AclError:
        return False
    return grants_user(grants, caller.ctx.project_id, caller.ctx.user_id)


def _member(caller: Caller) -> bool:
    return caller.ctx is not None and "member" in policy.effective_roles(caller.ctx.roles)


def check_read(caller: Caller, container: ContainerMeta, listing: bool = False) -> None:
    if not may_read(caller, container, listing):
        raise caller.refuse()


def check_write(caller: Caller, container: ContainerMeta) -> None:
    if not may_write(caller, container):
        raise caller.refuse()


def check_manage(caller: Caller, write: bool = True) -> None:
    """Account and container settings: the owner (members, for changes) or a reseller."""
    if caller.reseller or (caller.owner and (not write or _member(caller))):
        return
    raise caller.refuse()
