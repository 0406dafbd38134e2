"""Who sees and who changes an image: the tenancy rules every image part applies. No HTTP.

An image is seen by admins, by everyone when public or community, by its
owner, and by the projects it is shared with; an image a caller may not see
is a 404, never a hint it exists. Only its owner (or an admin) changes it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import Forbidden, NotFound
from souverain.common.tenancy import may_act_on
from souverain.image import models as m
from souverain.image.schemas import IMAGE_ID


def can_see(ctx: RequestContext, image: m.Image, membership: m.ImageMember | None) -> bool:
    if ctx.is_admin or image.visibility in ("public", "community"):
        return True
    if image.owner is not None and image.owner == ctx.project_id:
        return True
    return image.visibility == "shared" and membership is not None


def owns(ctx: RequestContext, image: m.Image) -> bool:
    return may_act_on(ctx, image.owner)


def visible(s: Session, ctx: RequestContext, image_id: str) -> m.Image:
    """The image if the caller may see it; 404 otherwise."""
    image = s.get(m.Image, image_id.lower()) if IMAGE_ID.match(image_id) else None
    if image is not None:
        membership = s.get(m.ImageMember, (image.id, ctx.project_id)) if ctx.project_id else None
        if can_see(ctx, image, membership):
            return image
    raise NotFound(f"No image found with ID {image_id}")


def owned(s: Session, ctx: RequestContext, image_id: str, action: str) -> m.Image:
    """The image if the caller owns it; 404 if it may not see it, 403 if it only sees it."""
    image = visible(s, ctx, image_id)
    if not owns(ctx, image):
        raise Forbidden(f"You are not permitted to {action} image {image_id}.")
    return image
