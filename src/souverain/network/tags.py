"""Tags on network resources (Neutron's standard-attr-tag): who may read and change a
resource's tags, and the changes. Rows only.

A resource's tags are a column of its own row, so they go with it however it is deleted.
Reading them is for whoever sees the resource; changing them is for its project (or an
admin), like any other change to it, and bumps its revision number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import NotFound
from souverain.common.tenancy import may_act_on
from souverain.network.core import Part
from souverain.network.errors import PolicyNotAuthorized
from souverain.network.ipam import InvalidInput

MAX_TAG_LEN = 255
MAX_TAGS = 64
# collection path -> its singular name in Neutron's messages
TAGGABLE = {
    "networks": "network",
    "subnets": "subnet",
    "subnetpools": "subnetpool",
    "ports": "port",
    "security-groups": "security_group",
    "routers": "router",
    "floatingips": "floatingip",
}


class TagNotFound(NotFound):
    title = "TagNotFound"


def check_tag(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TAG_LEN:
        raise InvalidInput(
            f"Invalid input for operation: '{str(value)[:64]}' is not a tag: a string of 1 to "
            f"{MAX_TAG_LEN} characters."
        )
    return value


def check_tags(value: Any) -> list[str]:
    """A whole set of tags (`{"tags": [...]}`); repeats count once."""
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise InvalidInput(
            f"Invalid input for operation: tags is a list of at most {MAX_TAGS} tags."
        )
    return sorted({check_tag(v) for v in value})


class Tags(Part):
    """Tags of the resources of every taggable collection."""

    def _lookup(self, path: str) -> Callable[[Session, RequestContext, Any], Any]:
        return {
            "networks": self.networks.network,
            "subnets": self.networks.subnet,
            "subnetpools": self.subnet_pools.pool,
            "ports": self.ports.port,
            "security-groups": self.groups._group,
            "routers": self.routers._router,
            "floatingips": self.floating_ips._floating,
        }[path]

    def _row(self, s: Session, ctx: RequestContext, path: str, resource_id: str) -> Any:
        return self._lookup(path)(s, ctx, resource_id)

    def tags_of(self, ctx: RequestContext, path: str, resource_id: str) -> list[str]:
        with self.db.session() as s:
            return sorted(self._row(s, ctx, path, resource_id).tags or [])

    def has_tag(self, ctx: RequestContext, path: str, resource_id: str, tag: str) -> None:
        with self.db.session() as s:
            row = self._row(s, ctx, path, resource_id)
            if tag not in (row.tags or []):
                raise TagNotFound(
                    f"Tag {tag[:64]} could not be found for {TAGGABLE[path]} {row.id}."
                )

    def change(
        self,
        ctx: RequestContext,
        path: str,
        resource_id: str,
        how: Callable[[list[str], str], list[str]],
    ) -> list[str]:
        """Apply `how(current tags, resource id)` to a resource the caller's project owns."""
        with self.db.session() as s:
            row = self._row(s, ctx, path, resource_id)
            if not may_act_on(ctx, row.project_id):
                raise PolicyNotAuthorized(
                    f"The request is disallowed by policy: the tags of {TAGGABLE[path]} "
                    f"{row.id} are its project's to change."
                )
            wanted = how(sorted(row.tags or []), row.id)
            if len(wanted) > MAX_TAGS:
                raise InvalidInput(
                    f"Invalid input for operation: at most {MAX_TAGS} tags per resource."
                )
            if wanted != sorted(row.tags or []):
                row.tags = wanted
                row.revision_number += 1
                row.updated_at = self._now()
            return wanted

    def replace(
        self, ctx: RequestContext, path: str, resource_id: str, tags: list[str]
    ) -> list[str]:
        return self.change(ctx, path, resource_id, lambda _old, _id: tags)

    def add(self, ctx: RequestContext, path: str, resource_id: str, tag: str) -> list[str]:
        return self.change(ctx, path, resource_id, lambda old, _id: sorted({*old, tag}))

    def remove(self, ctx: RequestContext, path: str, resource_id: str, tag: str) -> list[str]:
        def without(old: list[str], row_id: str) -> list[str]:
            if tag not in old:
                raise TagNotFound(
                    f"Tag {tag[:64]} could not be found for {TAGGABLE[path]} {row_id}."
                )
            return [t for t in old if t != tag]

        return self.change(ctx, path, resource_id, without)
