"""An account's audit trail: the audit records about the account's projects, for its owners.

A record is the account's when the caller acted from one of its projects, acted on a
resource of one (`target_project`), or acted on the account itself, so owners see what
administrators did to their resources. Only owners (and admins) read it; another account
looks absent. The audit log's index finds the records (only their lines are read); this
never writes the log; records hold ids and names only, never secrets.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from souverain.billing.accounts import MANAGES, Accounts
from souverain.common.audit_index import AuditIndex, project_key, target_key
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest

MAX_LIMIT = 1000
# what the audit index keys besides projects: the account a billing call acted on
INDEXED_TARGETS = frozenset({"account"})


class AuditTrail:
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.index: AuditIndex | None = None  # set by the server: the audit log's index

    def records(
        self,
        ctx: RequestContext,
        account_id: str,
        since: dt.datetime | None,
        after_seq: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of the account's records past `after_seq`; the next marker, if more."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}.")
        with self.accounts.db.session() as s:
            row = self.accounts.find(s, ctx, account_id, MANAGES)
            keys = [project_key(p) for p in self.accounts.projects_of(s, row.id)]
        keys.append(target_key("account", row.id))
        if self.index is None:
            return [], None
        found = self.index.find(keys, after_seq, since, limit + 1)
        more = len(found) > limit
        page = found[:limit]
        return page, (int(page[-1]["seq"]) if more else None)
