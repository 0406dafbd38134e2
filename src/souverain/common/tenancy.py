"""Whose resource a caller may act on, the one tenancy rule every service's row loaders
apply; and, for the audit record, whose resource the call acted on. No HTTP, no tables.
"""

from __future__ import annotations

from souverain.common.audit import note_target_project
from souverain.common.context import RequestContext


def may_act_on(ctx: RequestContext, project_id: str | None) -> bool:
    """May the caller act on what `project_id` owns: its own project's, or any with admin
    rights? When it may, this call's audit record names that project (`target_project`),
    so an admin's action on a customer's resource is flagged for the customer's owners."""
    if ctx.is_admin or (project_id is not None and project_id == ctx.project_id):
        note_target_project(project_id)
        return True
    return False
