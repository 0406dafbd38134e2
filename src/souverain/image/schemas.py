"""Glance request bodies and queries read into checked values, with Glance's own messages.

The API checks every attribute a client sends here (types, lengths, choices,
read-only and reserved names) before the service runs; the service keeps the
rules that need the caller or the image (who may publicize, which attributes
a saved image still takes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from souverain.common.errors import BadRequest, Forbidden

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("public", "private", "shared", "community")
MEMBER_STATUSES = ("pending", "accepted", "rejected")

# Attributes a client never sets; `id` may be given at creation only.
READ_ONLY = frozenset(
    {
        "status",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "size",
        "virtual_size",
        "created_at",
        "updated_at",
        "self",
        "file",
        "schema",
        "direct_url",
        "stores",
    }
)
RESERVED = frozenset({"location", "locations", "deleted", "deleted_at", "owner_id"})
# Core attributes a client may set; everything else is a custom (string) property.
CORE = frozenset(
    {
        "id",
        "name",
        "visibility",
        "protected",
        "os_hidden",
        "disk_format",
        "container_format",
        "min_disk",
        "min_ram",
        "tags",
        "owner",
    }
)
IMAGE_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
MAX_PROPERTY_LENGTH = 255
MAX_TAGS = 128
MAX_INT = 2**31 - 1
PATCH_OPS = ("add", "replace", "remove")


def string(name: str, value: Any, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Invalid value for '{name}': {value!r} is not a string.")
    if len(value) > MAX_PROPERTY_LENGTH:
        raise BadRequest(f"Invalid value for '{name}': longer than {MAX_PROPERTY_LENGTH}.")
    return value


def integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise BadRequest(f"Invalid value for '{name}': {value!r} is not a non-negative integer.")
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"Invalid value for '{name}': {value!r} is not a boolean.")
    return value


def choice(name: str, value: Any, choices: Iterable[str], nullable: bool = True) -> str | None:
    if value is None and nullable:
        return None
    if value not in choices:
        raise BadRequest(
            f"Invalid value for '{name}': {value!r} is not one of {', '.join(choices)}."
        )
    return str(value)


def tags(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest("Invalid value for 'tags': a list of strings is expected.")
    out: list[str] = []
    for tag in value:
        checked = string("tags", tag)
        if checked and checked not in out:
            out.append(checked)
    if len(out) > MAX_TAGS:
        raise BadRequest(f"Invalid value for 'tags': at most {MAX_TAGS} tags.")
    return out


def property_name(name: str) -> str:
    if not name or len(name) > MAX_PROPERTY_LENGTH:
        raise BadRequest(f"Invalid property name {name[:64]!r}.")
    if name in READ_ONLY:
        raise Forbidden(f"Attribute '{name}' is read-only.")
    if name in RESERVED:
        raise Forbidden(f"Attribute '{name}' is reserved.")
    return name


def attribute(key: str, value: Any) -> Any:
    """`value` checked for attribute `key`: a core attribute's type, or a custom string."""
    if key == "name":
        return string(key, value, nullable=True)
    if key == "visibility":
        return choice(key, value, VISIBILITIES, nullable=False)
    if key in ("protected", "os_hidden"):
        return boolean(key, value)
    if key in ("min_disk", "min_ram"):
        return integer(key, value)
    if key == "disk_format":
        return choice(key, value, DISK_FORMATS)
    if key == "container_format":
        return choice(key, value, CONTAINER_FORMATS)
    if key == "tags":
        return tags(value)
    if key == "owner":
        return string(key, value, nullable=True)
    if key == "id":
        raise Forbidden("Attribute 'id' is read-only.")
    return string(property_name(key), value)


@dataclass(frozen=True)
class ImageCreate:
    """A new image's id (None: ours) and its attributes, in the order the client sent."""

    image_id: str | None
    attributes: tuple[tuple[str, Any], ...]


def image_create(body: Mapping[str, Any]) -> ImageCreate:
    image_id = body.get("id")
    if image_id is not None and (not isinstance(image_id, str) or not IMAGE_ID.match(image_id)):
        raise BadRequest(f"Invalid value for 'id': {str(image_id)[:64]!r} is not a UUID.")
    attributes = tuple((k, attribute(k, v)) for k, v in body.items() if k != "id")
    return ImageCreate(image_id, attributes)


@dataclass(frozen=True)
class PatchOp:
    op: str  # add, replace or remove
    name: str  # a top-level attribute
    value: Any = None  # checked for add and replace


def patch(ops: Any, dialect: int = 10) -> list[PatchOp]:
    """A JSON patch as operations on top-level attributes only, as Glance takes them.

    Glance speaks two dialects, one per media type: its v2.1 type takes RFC 6902
    objects (`{"op": "replace", "path": "/name", "value": ...}`), its v2.0 type the
    older draft-4 form naming the operation as the key (`{"replace": "/name", ...}`).
    """
    if not isinstance(ops, list):
        raise BadRequest("A JSON patch is a list of operations.")
    read = _patch_op_d10 if dialect == 10 else _patch_op_d4
    out: list[PatchOp] = []
    for op in ops:
        if not isinstance(op, dict):
            raise BadRequest("Each operation of a JSON patch must be an object.")
        kind, path = read(op)
        if not isinstance(path, str) or not path.startswith("/") or path.count("/") != 1:
            raise BadRequest(f"Invalid JSON pointer {str(path)[:64]!r}: a top-level attribute.")
        name = path[1:].replace("~1", "/").replace("~0", "~")
        if kind != "remove" and "value" not in op:
            raise BadRequest(f"Operation {kind} on {path} needs a value.")
        out.append(PatchOp(kind, name, op.get("value")))
    return out


def _patch_op_d10(op: Mapping[str, Any]) -> tuple[str, Any]:
    if op.get("op") not in PATCH_OPS:
        raise BadRequest(
            "Each operation must have op add, replace or remove (this media type takes "
            'RFC 6902 operations: {"op": ..., "path": ...}).'
        )
    return str(op["op"]), op.get("path")


def _patch_op_d4(op: Mapping[str, Any]) -> tuple[str, Any]:
    kinds = [k for k in PATCH_OPS if k in op]
    if len(kinds) != 1:
        raise BadRequest(
            "Each operation must have exactly one member named add, replace or remove "
            '(this media type takes {"replace": "/name", "value": ...}).'
        )
    return kinds[0], op[kinds[0]]


def member(body: Mapping[str, Any]) -> str:
    """The project a member body (`{"member": ...}`) names."""
    member_id = string("member", body.get("member"))
    if not member_id:
        raise BadRequest("Invalid value for 'member': a project id is expected.")
    return member_id


def member_status(body: Mapping[str, Any]) -> str:
    return str(choice("status", body.get("status"), MEMBER_STATUSES, nullable=False))
