"""Customer accounts, the projects they pay for, and the account roles on them.

Account roles (`owner`, `billing`, `viewer`) are the billing service's own, apart from
project roles: viewers see consumption; billing also sees invoices and sets the budget;
owners also create projects and grant account roles. Admins do all. An account a caller
holds no role on is reported as not found.

A VAT number earns reverse charge only once the operator has checked it (VIES) and set
`vat_verified`: an owner can type any well-formed number, so a change of country or
number puts the account back to unverified (unless an admin verifies it in the same
call), and the caller is told. The project limit is checked again in the transaction
that attaches a project, the account held, so concurrent creates cannot pass it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.billing import models as m
from souverain.billing.catalog import ISO_COUNTRIES
from souverain.billing.directory import SYSTEM, Directory
from souverain.billing.periods import now_of
from souverain.billing.views import account_view
from souverain.common.audit import note_admin_over_customer
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound
from souverain.common.ids import new_id
from souverain.db.batching import id_batches
from souverain.db.engine import Database

ROLES = ("owner", "billing", "viewer")
SEES_CONSUMPTION = frozenset(ROLES)
SEES_INVOICES = frozenset({"owner", "billing"})
MANAGES = frozenset({"owner"})
VAT_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{2,14}$")


class Accounts:
    def __init__(
        self, db: Database, clock: Clock, identity: Directory | None, project_limit: int
    ) -> None:
        self.db = db
        self.clock = clock
        self.identity = identity
        self.project_limit = project_limit

    # ------------------------------------------------------------------ who sees what

    def _granted_roles(self, s: Session, ctx: RequestContext, account_id: str) -> set[str]:
        """The roles the caller was granted on the account (an admin's rights aside)."""
        return set(
            s.scalars(
                select(m.AccountRole.role).where(
                    m.AccountRole.account_id == account_id, m.AccountRole.user_id == ctx.user_id
                )
            ).all()
        )

    def is_owner(self, user_id: str) -> bool:
        """Whether the user owns any account: identity asks, for privileged-user MFA."""
        with self.db.session() as s:
            return (
                s.scalar(
                    select(m.AccountRole.user_id)
                    .where(m.AccountRole.user_id == user_id, m.AccountRole.role == "owner")
                    .limit(1)
                )
                is not None
            )

    def find(
        self, s: Session, ctx: RequestContext, account_id: Any, need: frozenset[str]
    ) -> m.Account:
        """The account if the caller holds one of `need` on it; 404 if they hold no role."""
        row = s.get(m.Account, account_id) if isinstance(account_id, str) else None
        granted = self._granted_roles(s, ctx, row.id) if row is not None else set()
        roles = set(ROLES) if ctx.is_admin and row is not None else granted
        if row is None or not roles:
            raise NotFound(f"Could not find account: {str(account_id)[:64]}.")
        if not roles & need:
            raise Forbidden(
                f"Your account roles ({', '.join(sorted(roles))}) do not allow this; "
                f"it needs one of: {', '.join(sorted(need))}."
            )
        if ctx.is_admin and not granted:
            note_admin_over_customer()  # an operator's change to a customer's account
        return row

    def projects_of(self, s: Session, account_id: str) -> list[str]:
        return list(
            s.scalars(
                select(m.AccountProject.project_id).where(m.AccountProject.account_id == account_id)
            ).all()
        )

    def view(self, s: Session, row: m.Account) -> dict[str, Any]:
        return self.views(s, [row])[0]

    def views(self, s: Session, rows: list[m.Account]) -> list[dict[str, Any]]:
        """Views of accounts with their projects and roles: two queries for the whole list."""
        ids = [row.id for row in rows]
        projects: dict[str, list[str]] = defaultdict(list)
        roles: dict[str, list[dict[str, str]]] = defaultdict(list)
        for batch in id_batches(ids):
            for account_id, project_id in s.execute(
                select(m.AccountProject.account_id, m.AccountProject.project_id)
                .where(m.AccountProject.account_id.in_(batch))
                .order_by(m.AccountProject.created_at)
            ):
                projects[account_id].append(project_id)
            for account_id, user_id, role in s.execute(
                select(m.AccountRole.account_id, m.AccountRole.user_id, m.AccountRole.role)
                .where(m.AccountRole.account_id.in_(batch))
                .order_by(m.AccountRole.user_id, m.AccountRole.role)
            ):
                roles[account_id].append({"user_id": user_id, "role": role})
        return [account_view(row, projects[row.id], roles[row.id]) for row in rows]

    # ------------------------------------------------------------------ accounts

    def create_account(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        if not ctx.is_admin:
            raise Forbidden("Only the operator creates customer accounts.")
        fields = account_fields(body, creating=True)
        owner = body.get("owner_user_id")
        if owner is not None:
            self.check_user(owner)
        now = now_of(self.clock)
        with self.db.session() as s:
            row = m.Account(
                id=new_id(),
                currency="EUR",
                billing_contact="",
                vat_number=None,
                vat_verified=False,
                project_limit=self.project_limit,
                created_at=now,
                updated_at=now,
            )
            for key, value in fields.items():
                setattr(row, key, value)
            check_verifiable(row)
            s.add(row)
            s.flush()
            if owner is not None:
                s.add(m.AccountRole(account_id=row.id, user_id=owner, role="owner"))
                s.flush()
            return self.view(s, row)

    def check_user(self, user_id: Any) -> None:
        if not isinstance(user_id, str) or self.identity is None:
            raise BadRequest("Invalid user id.")
        try:
            self.identity.get_user(SYSTEM, user_id)
        except NotFound:
            raise BadRequest(f"Could not find user: {user_id[:64]}.") from None

    def list_accounts(self, ctx: RequestContext) -> list[dict[str, Any]]:
        with self.db.session() as s:
            stmt = select(m.Account).order_by(m.Account.created_at, m.Account.id)
            if not ctx.is_admin:
                mine = select(m.AccountRole.account_id).where(m.AccountRole.user_id == ctx.user_id)
                stmt = stmt.where(m.Account.id.in_(mine))
            return self.views(s, list(s.scalars(stmt).all()))

    def get_account(self, ctx: RequestContext, account_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.view(s, self.find(s, ctx, account_id, SEES_CONSUMPTION))

    def update_account(
        self, ctx: RequestContext, account_id: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """The account as updated, and whether its VAT number just lost its verification."""
        with self.db.session() as s:
            row = self.find(s, ctx, account_id, MANAGES)
            fields = account_fields(body, creating=False)
            if "project_limit" in fields and not ctx.is_admin:
                raise Forbidden("Only the operator changes an account's project limit.")
            if "vat_verified" in fields and not ctx.is_admin:
                raise Forbidden("Only the operator verifies an account's VAT number.")
            was_verified = row.vat_verified
            moved = any(
                key in fields and fields[key] != getattr(row, key)
                for key in ("country", "vat_number")
            )
            for key, value in fields.items():
                setattr(row, key, value)
            if moved and "vat_verified" not in fields:
                row.vat_verified = False  # a number nobody checked earns no reverse charge
            check_verifiable(row)
            row.updated_at = now_of(self.clock)
            s.flush()
            return self.view(s, row), was_verified and not row.vat_verified

    def delete_account(self, ctx: RequestContext, account_id: str) -> None:
        if not ctx.is_admin:
            raise Forbidden("Only the operator deletes customer accounts.")
        with self.db.session() as s:
            row = self.find(s, ctx, account_id, MANAGES)
            has = s.scalar(
                select(func.count()).select_from(m.Invoice).where(m.Invoice.account_id == row.id)
            ) or s.scalar(
                select(func.count())
                .select_from(m.AccountProject)
                .where(m.AccountProject.account_id == row.id)
            )
            if has:
                raise Conflict(
                    f"Account {row.id} still has projects or invoices: detach its projects "
                    "first; invoiced accounts are kept."
                )
            s.execute(delete(m.AccountRole).where(m.AccountRole.account_id == row.id))
            s.delete(row)

    # ------------------------------------------------------------------ account roles

    def grant(self, ctx: RequestContext, account_id: str, user_id: str, role: str) -> None:
        if role not in ROLES:
            raise BadRequest(f"Invalid account role {role[:16]!r}: one of {', '.join(ROLES)}.")
        self.check_user(user_id)
        with self.db.session() as s:
            row = self.find(s, ctx, account_id, MANAGES)
            if s.get(m.AccountRole, (row.id, user_id, role)) is None:
                s.add(m.AccountRole(account_id=row.id, user_id=user_id, role=role))

    def revoke(self, ctx: RequestContext, account_id: str, user_id: str, role: str) -> None:
        with self.db.session() as s:
            row = self.find(s, ctx, account_id, MANAGES)
            found = s.get(m.AccountRole, (row.id, user_id, role))
            if found is None:
                raise NotFound(f"User {user_id[:64]} has no role {role[:16]} on this account.")
            owners = s.scalar(
                select(func.count())
                .select_from(m.AccountRole)
                .where(m.AccountRole.account_id == row.id, m.AccountRole.role == "owner")
            )
            if role == "owner" and owners == 1 and not ctx.is_admin:
                raise Conflict("An account keeps at least one owner.")
            s.delete(found)

    # ------------------------------------------------------------------ projects

    def add_project(
        self, ctx: RequestContext, account_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """An owner creates a project in the account (within its project limit); an admin
        may also attach an existing project by id."""
        if self.identity is None:
            raise Conflict("This cloud runs no identity service for billing.")
        with self.db.session() as s:  # refuse early, before identity makes anything
            account = self.find(s, ctx, account_id, MANAGES)
            _check_room(s, account)
            account_id = account.id
        if "project_id" in body:
            if not ctx.is_admin:
                raise Forbidden("Only the operator attaches an existing project.")
            project = self.identity.get_project(SYSTEM, str(body["project_id"]))
            self._attach(account_id, project["id"])
            return project
        project = self._new_project(self.identity, ctx, body)
        try:
            self._attach(account_id, project["id"])
        except Forbidden:
            # a concurrent create took the last place meanwhile: undo ours
            self.identity.delete_project(SYSTEM, project["id"])
            raise
        return project

    def _attach(self, account_id: str, project_id: str) -> None:
        """Attach a project if the account is under its limit, in one transaction that
        holds the account: SQLite's write lock taken at BEGIN, or PostgreSQL's row lock,
        so two attaches check and insert one after the other."""
        try:
            with self.db.session() as s:
                begin_write(s)
                account = s.scalar(
                    select(m.Account).where(m.Account.id == account_id).with_for_update()
                )
                if account is None:
                    raise NotFound(f"Could not find account: {account_id[:64]}.")
                _check_room(s, account)
                s.add(
                    m.AccountProject(
                        project_id=project_id, account_id=account.id, created_at=now_of(self.clock)
                    )
                )
                s.flush()
        except IntegrityError:
            raise Conflict(f"Project {project_id} already belongs to an account.") from None

    @staticmethod
    def _new_project(
        identity: Directory, ctx: RequestContext, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A project created in identity, its creator made a member of it."""
        name = body.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            raise BadRequest("Invalid name: a project name of 1 to 64 characters.")
        project = identity.create_project(
            SYSTEM,
            {"name": name, "description": str(body.get("description", ""))[:255]},
        )
        member = identity.list_roles(SYSTEM, {"name": "member"})
        if member and not ctx.is_admin:
            identity.create_grant(
                SYSTEM, "user", ctx.user_id, "project", project["id"], member[0]["id"]
            )
        return project

    def account_of(self, project_id: str) -> str | None:
        with self.db.session() as s:
            row = s.get(m.AccountProject, project_id)
            return row.account_id if row is not None else None


def begin_write(s: Session) -> None:
    """Take SQLite's write lock at BEGIN: a read that later writes cannot be refused
    for a stale snapshot, and writers queue on the busy timeout instead."""
    if s.get_bind().dialect.name == "sqlite":
        s.connection().exec_driver_sql("BEGIN IMMEDIATE")


def _check_room(s: Session, account: m.Account) -> None:
    """Refuse (403) a project past the account's limit."""
    count = s.scalar(
        select(func.count())
        .select_from(m.AccountProject)
        .where(m.AccountProject.account_id == account.id)
    )
    if (count or 0) >= account.project_limit:
        raise Forbidden(
            f"Quota exceeded for projects: the account has {count} of "
            f"{account.project_limit}. Ask the operator for a higher limit."
        )


def check_verifiable(row: m.Account) -> None:
    """A verified VAT number needs a number to have been verified."""
    if row.vat_verified and not row.vat_number:
        raise BadRequest("Invalid vat_verified: the account has no VAT number to verify.")


def account_fields(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    """The account fields of a create or update body, each checked; 400 names the first bad."""
    allowed = {"name", "billing_contact", "country", "vat_number", "vat_verified", "project_limit"}
    unknown = set(body) - allowed - ({"owner_user_id"} if creating else set())
    if unknown:
        raise BadRequest(f"Unknown account field(s): {', '.join(sorted(unknown))[:128]}.")
    out: dict[str, Any] = {}
    for name in ("name", "billing_contact"):
        if name in body or (creating and name == "name"):
            value = body.get(name)
            if not isinstance(value, str) or len(value) > 255 or (name == "name" and not value):
                raise BadRequest(f"Invalid {name}: a string of 1 to 255 characters.")
            out[name] = value
    if "country" in body or creating:
        country = body.get("country")
        if not isinstance(country, str) or country not in ISO_COUNTRIES:
            raise BadRequest(f"Invalid country {str(country)[:8]!r}: an ISO 3166 code such as FR.")
        out["country"] = country
    if "vat_number" in body:
        vat = body["vat_number"]
        if vat is not None and (not isinstance(vat, str) or not VAT_RE.match(vat)):
            raise BadRequest(
                f"Invalid vat_number {str(vat)[:20]!r}: a country prefix and 2 to 14 "
                "letters or digits, e.g. DE123456789."
            )
        out["vat_number"] = vat
    if "vat_verified" in body:
        if not isinstance(body["vat_verified"], bool):
            raise BadRequest("Invalid vat_verified: true or false.")
        out["vat_verified"] = body["vat_verified"]
    if "project_limit" in body:
        limit = body["project_limit"]
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 10000:
            raise BadRequest("Invalid project_limit: an integer from 0 to 10000.")
        out["project_limit"] = limit
    return out
