"""Image members: the projects a `shared` image is offered to, and their answers. No HTTP.

The owner adds and removes members; a member accepts or rejects (only then
does the image show in its default listing). A member sees its own membership
only.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import Conflict, Forbidden, NotFound
from souverain.db.engine import Database
from souverain.image import models as m
from souverain.image.access import owns, visible


class ImageMembers:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    @staticmethod
    def _shared_owned(s: Session, ctx: RequestContext, image_id: str) -> m.Image:
        image = visible(s, ctx, image_id)
        if not owns(ctx, image):
            raise Forbidden(f"Only the owner of image {image_id} may manage its members.")
        if image.visibility != "shared":
            raise Forbidden(f"Only shared images have members; image {image_id} is not shared.")
        return image

    def list_members(self, ctx: RequestContext, image_id: str) -> list[m.ImageMember]:
        with self.db.session() as s:
            image = visible(s, ctx, image_id)
            if image.visibility != "shared":
                raise Forbidden(f"Only shared images have members; image {image_id} is not shared.")
            stmt = select(m.ImageMember).where(m.ImageMember.image_id == image.id)
            if not owns(ctx, image):  # a member sees its own membership only
                stmt = stmt.where(m.ImageMember.member_id == ctx.project_id)
            return list(s.scalars(stmt.order_by(m.ImageMember.created_at)))

    def get_member(self, ctx: RequestContext, image_id: str, member_id: str) -> m.ImageMember:
        with self.db.session() as s:
            image = visible(s, ctx, image_id)
            row = s.get(m.ImageMember, (image.id, member_id))
            if row is None or not (owns(ctx, image) or member_id == ctx.project_id):
                raise NotFound(f"Member {member_id} not found on image {image_id}.")
            return row

    def add_member(self, ctx: RequestContext, image_id: str, member: str) -> m.ImageMember:
        now = self.clock.now()
        try:
            with self.db.session() as s:
                image = self._shared_owned(s, ctx, image_id)
                row = m.ImageMember(
                    image_id=image.id,
                    member_id=member,
                    status="pending",
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
                s.flush()
                return row
        except IntegrityError:
            raise Conflict(f"Member {member} is already a member of image {image_id}.") from None

    def update_member(
        self, ctx: RequestContext, image_id: str, member_id: str, status: str
    ) -> m.ImageMember:
        with self.db.session() as s:
            image = visible(s, ctx, image_id)
            row = s.get(m.ImageMember, (image.id, member_id))
            if row is None:
                raise NotFound(f"Member {member_id} not found on image {image_id}.")
            if member_id != ctx.project_id:
                raise Forbidden("Only the member project may change its membership status.")
            row.status = status
            row.updated_at = self.clock.now()
            s.flush()
            return row

    def remove_member(self, ctx: RequestContext, image_id: str, member_id: str) -> None:
        with self.db.session() as s:
            image = self._shared_owned(s, ctx, image_id)
            row = s.get(m.ImageMember, (image.id, member_id))
            if row is None:
                raise NotFound(f"Member {member_id} not found on image {image_id}.")
            s.delete(row)
