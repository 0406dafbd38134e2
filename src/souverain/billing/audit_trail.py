"""An account's audit trail: the audit records about the account's projects, for its owners.

A record is the account's when the caller acted from one of its projects or acted on
a resource of one (`target_project`), so owners see what administrators did to their
resources. Only owners (and admins) read it; another account looks absent. Reads the
audit log file, never writes it; records hold ids and names only, never secrets.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from souverain.billing.accounts import MANAGES, Accounts
from souverain.common.audit import read_records
from souverain.common.clock import parse_isotime
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest

MAX_LIMIT = 1000


class AuditTrail:
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.log_path: Path | None = None  # set by the server: where the audit log is

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
            projects = frozenset(self.accounts.projects_of(s, row.id))

        def keep(record: dict[str, Any]) -> bool:
            initiator = record.get("initiator")
            acting = initiator.get("project_id") if isinstance(initiator, dict) else None
            if acting not in projects and record.get("target_project") not in projects:
                return False
            return since is None or _when(record) >= since

        if self.log_path is None or not projects:
            return [], None
        found = list(read_records(self.log_path, keep, after_seq, limit + 1))
        more = len(found) > limit
        page = found[:limit]
        return page, (int(page[-1]["seq"]) if more else None)


def _when(record: dict[str, Any]) -> dt.datetime:
    try:
        return parse_isotime(str(record.get("time")))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
