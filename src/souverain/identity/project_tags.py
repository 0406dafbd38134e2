"""Project tags: short labels on a project, read by those who see it, set by admins.

Knows nothing of HTTP. A tag is 1 to 255 characters without '/' or ',' (they would
not survive a URL path or the comma-separated list filters); a project holds at
most 80, each once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.policy import enforce
from souverain.identity import models as m
from souverain.identity.core import IdentityCore

MAX_TAGS = 80
MAX_TAG_LENGTH = 255


def check_tag(tag: Any) -> str:
    if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG_LENGTH:
        raise BadRequest(f"Invalid tag {str(tag)[:64]!r}: 1 to {MAX_TAG_LENGTH} characters.")
    if "/" in tag or "," in tag:
        raise BadRequest(f"Invalid tag {tag[:64]!r}: tags cannot contain '/' or ','.")
    return tag


def check_tags(tags: Any) -> list[str]:
    if not isinstance(tags, list):
        raise BadRequest("'tags' must be a list of strings.")
    out = list(dict.fromkeys(check_tag(t) for t in tags))
    if len(out) > MAX_TAGS:
        raise BadRequest(f"A project holds at most {MAX_TAGS} tags.")
    return out


def matches(tags: list[str], filters: dict[str, Any]) -> bool:
    """Keystone's tag filters of a project listing: tags (all), tags-any, not-tags (not
    all), not-tags-any (none); each a comma-separated list."""
    have = set(tags)

    def wanted(key: str) -> set[str]:
        return {t for t in str(filters[key]).split(",") if t}

    if "tags" in filters and not wanted("tags") <= have:
        return False
    if "tags-any" in filters and not wanted("tags-any") & have:
        return False
    if "not-tags" in filters and wanted("not-tags") and wanted("not-tags") <= have:
        return False
    return not ("not-tags-any" in filters and wanted("not-tags-any") & have)


class ProjectTags:
    def __init__(self, core: IdentityCore) -> None:
        self.core = core

    def _project(self, s: Session, ctx: RequestContext, project_id: str) -> m.Project:
        p: m.Project = self.core.get(s, m.Project, project_id, "project")
        if not ctx.is_admin and p.id not in self.core.visible_project_ids(s, ctx):
            raise NotFound(f"Could not find project: {project_id}.")
        return p

    def list_tags(self, ctx: RequestContext, project_id: str) -> list[str]:
        enforce(ctx, "identity:list_project_tags")
        with self.core.db.session() as s:
            return list(self._project(s, ctx, project_id).tags or [])

    def check(self, ctx: RequestContext, project_id: str, tag: str) -> None:
        enforce(ctx, "identity:get_project_tag")
        with self.core.db.session() as s:
            if tag not in (self._project(s, ctx, project_id).tags or []):
                raise NotFound(f"Tag {tag[:64]!r} not found on project {project_id}.")

    def replace(self, ctx: RequestContext, project_id: str, tags: Any) -> list[str]:
        enforce(ctx, "identity:update_project_tags")
        checked = check_tags(tags)
        with self.core.db.session() as s:
            p = self._project(s, ctx, project_id)
            p.tags = checked
        self.core.changed()
        return checked

    def add(self, ctx: RequestContext, project_id: str, tag: str) -> None:
        enforce(ctx, "identity:create_project_tag")
        check_tag(tag)
        with self.core.db.session() as s:
            p = self._project(s, ctx, project_id)
            if tag not in (p.tags or []):
                p.tags = check_tags([*(p.tags or []), tag])
        self.core.changed()

    def remove(self, ctx: RequestContext, project_id: str, tag: str | None) -> None:
        """One tag, or all of them (`tag` None)."""
        enforce(ctx, "identity:delete_project_tag" if tag else "identity:delete_project_tags")
        with self.core.db.session() as s:
            p = self._project(s, ctx, project_id)
            if tag is not None and tag not in (p.tags or []):
                raise NotFound(f"Tag {tag[:64]!r} not found on project {project_id}.")
            p.tags = [t for t in (p.tags or []) if tag is not None and t != tag]
        self.core.changed()
