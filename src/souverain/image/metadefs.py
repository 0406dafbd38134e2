"""Metadata definitions (Glance metadefs): namespaces of property, object and tag definitions
that tell clients which image, flavor or volume properties mean something. No HTTP.

A namespace is read by everyone when public and by its owner's project when private;
only a cloud administrator creates, replaces or deletes one, and a protected
namespace is refused deletion until unprotected. Its definitions travel with it (one
row, JSON columns): they are small, read whole and written by administrators only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound
from souverain.db.engine import Database
from souverain.image import models as m

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,79}$")
# objects and tags are named for people ("CPU Limits"): any printable text but '/'
LABEL = re.compile(r"^[^/\x00-\x1f\x7f]{1,80}$")
PROPERTY_TYPES = ("string", "integer", "number", "boolean", "array", "object")
MAX_TEXT = 2048
MAX_ITEMS = 256


@dataclass(frozen=True)
class NamespaceBody:
    """A namespace as an administrator sends it, checked."""

    namespace: str
    display_name: str | None
    description: str | None
    visibility: str
    protected: bool
    properties: dict[str, Any]
    objects: list[dict[str, Any]]
    tags: list[str]
    resource_types: list[dict[str, Any]]


def _name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise BadRequest(
            f"Invalid {kind} name {str(value)[:64]!r}: 1 to 80 letters, digits, ':', '.', "
            "'_' or '-', starting with a letter or digit."
        )
    return value


def _label(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or not LABEL.match(value):
        raise BadRequest(
            f"Invalid {kind} name {str(value)[:64]!r}: 1 to 80 printable characters, no '/'."
        )
    return value


def _text(field: str, value: Any, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"Invalid value for '{field}': a string of at most {limit} characters.")
    return value


def _property(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"Property definition {name!r} must be an object.")
    if not isinstance(value.get("title"), str) or value.get("type") not in PROPERTY_TYPES:
        raise BadRequest(
            f"Property definition {name!r} needs a 'title' (string) and a 'type' "
            f"({', '.join(PROPERTY_TYPES)})."
        )
    if len(repr(value)) > 16 * MAX_TEXT:
        raise BadRequest(f"Property definition {name!r} is too large.")
    return dict(value)


def _properties(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ITEMS:
        raise BadRequest(f"'properties' must be an object of at most {MAX_ITEMS} definitions.")
    return {_name("property", k): _property(k, v) for k, v in value.items()}


def _list(field: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise BadRequest(f"'{field}' must be a list of at most {MAX_ITEMS} items.")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("Each object definition must be an object with a 'name'.")
    required = _list("required", value.get("required"))
    return {
        "name": _label("object", value.get("name")),
        "description": _text("description", value.get("description")),
        "required": [_name("property", r) for r in required],
        "properties": _properties(value.get("properties")),
    }


def _association(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("Each resource type association must be an object with a 'name'.")
    return {
        "name": _name("resource type", value.get("name")),
        "prefix": _text("prefix", value.get("prefix"), 80),
        "properties_target": _text("properties_target", value.get("properties_target"), 80),
    }


def namespace_body(body: Mapping[str, Any]) -> NamespaceBody:
    visibility = body.get("visibility", "private")
    if visibility not in ("public", "private"):
        raise BadRequest("Invalid value for 'visibility': public or private.")
    protected = body.get("protected", False)
    if not isinstance(protected, bool):
        raise BadRequest("Invalid value for 'protected': a boolean.")
    tags = []
    for tag in _list("tags", body.get("tags")):
        tags.append(_label("tag", tag.get("name") if isinstance(tag, dict) else None))
    return NamespaceBody(
        namespace=_name("namespace", body.get("namespace")),
        display_name=_text("display_name", body.get("display_name"), 80),
        description=_text("description", body.get("description")),
        visibility=str(visibility),
        protected=protected,
        properties=_properties(body.get("properties")),
        objects=[_object(o) for o in _list("objects", body.get("objects"))],
        tags=tags,
        resource_types=[
            _association(a)
            for a in _list("resource_type_associations", body.get("resource_type_associations"))
        ],
    )


class Metadefs:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    @staticmethod
    def _may_see(ctx: RequestContext, row: m.MetadefNamespace) -> bool:
        return ctx.is_admin or row.visibility == "public" or row.owner == ctx.project_id

    def list_namespaces(
        self, ctx: RequestContext, visibility: str | None, resource_type: str | None
    ) -> list[m.MetadefNamespace]:
        with self.db.session() as s:
            rows = list(
                s.scalars(select(m.MetadefNamespace).order_by(m.MetadefNamespace.namespace))
            )
        return [
            r
            for r in rows
            if self._may_see(ctx, r)
            and (visibility is None or r.visibility == visibility)
            and (resource_type is None or resource_type in (r.resource_types or {}))
        ]

    def get(self, ctx: RequestContext, namespace: str) -> m.MetadefNamespace:
        with self.db.session() as s:
            row = s.get(m.MetadefNamespace, namespace)
            if row is None or not self._may_see(ctx, row):
                raise NotFound(f"Metadata definition namespace={namespace[:80]} was not found.")
            return row

    def create(self, ctx: RequestContext, body: NamespaceBody) -> m.MetadefNamespace:
        self._admin_only(ctx)
        now = self.clock.now()
        row = m.MetadefNamespace(namespace=body.namespace, owner=ctx.project_id, created_at=now)
        self._fill(row, body, now)
        try:
            with self.db.session() as s:
                s.add(row)
                s.flush()
                return row
        except IntegrityError:
            raise Conflict(f"Namespace {body.namespace} already exists.") from None

    def replace(
        self, ctx: RequestContext, namespace: str, body: NamespaceBody
    ) -> m.MetadefNamespace:
        """PUT: the namespace's attributes as sent; its definitions if sent, else kept."""
        self._admin_only(ctx)
        if body.namespace != namespace:
            raise BadRequest("A namespace cannot be renamed: create a new one instead.")
        with self.db.session() as s:
            row = s.get(m.MetadefNamespace, namespace)
            if row is None:
                raise NotFound(f"Metadata definition namespace={namespace[:80]} was not found.")
            keep = (
                dict(row.properties),
                dict(row.objects),
                dict(row.tags),
                dict(row.resource_types),
            )
            self._fill(row, body, self.clock.now())
            props, objects, tags, types = keep
            row.properties = row.properties or props
            row.objects = row.objects or objects
            row.tags = row.tags or tags
            row.resource_types = row.resource_types or types
            s.flush()
            return row

    def delete(self, ctx: RequestContext, namespace: str) -> None:
        self._admin_only(ctx)
        with self.db.session() as s:
            row = s.get(m.MetadefNamespace, namespace)
            if row is None:
                raise NotFound(f"Metadata definition namespace={namespace[:80]} was not found.")
            if row.protected:
                raise Forbidden(
                    f"Namespace {namespace} is protected: set protected to false first."
                )
            s.delete(row)

    @staticmethod
    def _admin_only(ctx: RequestContext) -> None:
        if not ctx.is_admin:
            raise Forbidden("Only cloud administrators change metadata definitions.")

    @staticmethod
    def _fill(row: m.MetadefNamespace, body: NamespaceBody, now: Any) -> None:
        stamp = now.isoformat()
        row.display_name = body.display_name
        row.description = body.description
        row.visibility = body.visibility
        row.protected = body.protected
        row.properties = body.properties
        row.objects = {
            o["name"]: {**o, "created_at": stamp, "updated_at": stamp} for o in body.objects
        }
        row.tags = {t: {"created_at": stamp, "updated_at": stamp} for t in body.tags}
        row.resource_types = {
            a["name"]: {**a, "created_at": stamp, "updated_at": stamp} for a in body.resource_types
        }
        row.updated_at = now

    def resource_types(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """The resource types of this cloud's services, and any other a visible namespace
        is associated with."""
        seen: dict[str, dict[str, Any]] = {
            name: {"name": name, "created_at": KNOWN_SINCE, "updated_at": KNOWN_SINCE}
            for name in KNOWN_RESOURCE_TYPES
        }
        for row in self.list_namespaces(ctx, None, None):
            for name, assoc in (row.resource_types or {}).items():
                seen.setdefault(name, assoc)
        return [seen[k] for k in sorted(seen)]

    # ------------------------------------------------------------------ definitions

    def put_definition(
        self, ctx: RequestContext, namespace: str, kind: str, old: str | None, body: Any
    ) -> dict[str, Any]:
        """Create (`old` None) or replace (and maybe rename) one object, property, tag or
        resource type association of a namespace; the stored entry, with its name."""
        self._admin_only(ctx)
        name, entry = _definition(kind, body)
        with self.db.session() as s:
            row = self._row(s, namespace)
            held: dict[str, Any] = dict(getattr(row, kind) or {})
            if old is not None and old not in held:
                raise NotFound(f"Metadata definition {_KINDS[kind]}={old[:80]} not found.")
            if name in held and name != old:
                raise Conflict(f"A {_KINDS[kind]} named {name} already exists in {namespace}.")
            stamp = self.clock.now().isoformat()
            previous = held.pop(old) if old is not None else {}
            created = previous.get("created_at", stamp)
            if kind != "properties":
                entry = {**entry, "created_at": created, "updated_at": stamp}
            held[name] = entry
            setattr(row, kind, held)
            row.updated_at = self.clock.now()
        return {"name": name, **entry}

    def replace_tags(self, ctx: RequestContext, namespace: str, body: Any) -> list[str]:
        """POST .../tags: the namespace's tags become these."""
        self._admin_only(ctx)
        tags = []
        for tag in _list("tags", body.get("tags") if isinstance(body, dict) else None):
            tags.append(_label("tag", tag.get("name") if isinstance(tag, dict) else None))
        with self.db.session() as s:
            row = self._row(s, namespace)
            stamp = self.clock.now().isoformat()
            row.tags = {t: {"created_at": stamp, "updated_at": stamp} for t in tags}
            row.updated_at = self.clock.now()
        return tags

    def remove_definition(
        self, ctx: RequestContext, namespace: str, kind: str, name: str | None
    ) -> None:
        """One definition, or (`name` None) all of this kind."""
        self._admin_only(ctx)
        with self.db.session() as s:
            row = self._row(s, namespace)
            held = dict(getattr(row, kind) or {})
            if name is not None and held.pop(name, None) is None:
                raise NotFound(f"Metadata definition {_KINDS[kind]}={name[:80]} not found.")
            setattr(row, kind, held if name is not None else {})
            row.updated_at = self.clock.now()

    def _row(self, s: Any, namespace: str) -> m.MetadefNamespace:
        row = s.get(m.MetadefNamespace, namespace)
        if row is None:
            raise NotFound(f"Metadata definition namespace={namespace[:80]} was not found.")
        assert isinstance(row, m.MetadefNamespace)
        return row


_KINDS = {
    "objects": "object",
    "properties": "property",
    "tags": "tag",
    "resource_types": "resource type",
}
KNOWN_RESOURCE_TYPES = (
    "OS::Cinder::Volume",
    "OS::Glance::Image",
    "OS::Nova::Aggregate",
    "OS::Nova::Flavor",
    "OS::Nova::Server",
)
KNOWN_SINCE = "2026-01-01T00:00:00"  # when this cloud's list of resource types was fixed


def _definition(kind: str, body: Any) -> tuple[str, dict[str, Any]]:
    """(name, stored entry) of a definition body of this kind, checked."""
    if not isinstance(body, dict):
        raise BadRequest(f"A {_KINDS[kind]} definition is a JSON object.")
    if kind == "objects":
        checked = _object(body)
        return checked["name"], checked
    if kind == "properties":
        name = _name("property", body.get("name"))
        return name, _property(name, {k: v for k, v in body.items() if k != "name"})
    if kind == "tags":
        return _label("tag", body.get("name")), {}
    checked = _association(body)
    return checked["name"], checked
