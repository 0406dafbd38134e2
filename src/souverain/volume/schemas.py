"""Cinder request bodies read into typed requests, with Cinder's own error messages.

The API parses every body here before the service runs; the service takes the
typed request and trusts it. What needs the database or the settings (a type
that exists, a size under the configured maximum) the service still checks.
"""

from __future__ import annotations

import ast
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from souverain.common.errors import BadRequest
from souverain.volume.rules import AVAILABILITY_ZONE, MAX_FIELD, MAX_INT, MAX_METADATA
from souverain.volume.state import SNAPSHOT_STATUSES, VOLUME_STATUSES

SOURCES = ("snapshot_id", "source_volid", "imageRef")
# the quota keys a client may send; only the first five are limits we enforce
QUOTA_LIMITS = (
    "volumes",
    "gigabytes",
    "snapshots",
    "backups",
    "backup_gigabytes",
    "per_volume_gigabytes",
)
QUOTA_IGNORED = ("id", "groups")


# ---------------------------------------------------------------------- values


def text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise BadRequest(
            f"Invalid input for field/attribute {name}: a string of at most {MAX_FIELD} "
            "characters is expected."
        )
    return value


def size(name: str, value: Any) -> int:
    """A size in GiB: a positive integer (the service checks the configured maximum)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 1 or number > MAX_INT:
        raise BadRequest(
            f"Invalid input received: {name} '{str(value)[:32]}' must be an integer and "
            "greater than 0."
        )
    return number


def within_limit(name: str, number: int, maximum: int) -> int:
    if number > maximum:
        raise BadRequest(
            f"Invalid input received: {name} {number} GiB is larger than the largest volume "
            f"allowed ({maximum} GiB)."
        )
    return number


def flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise BadRequest(
        f"Invalid input for field/attribute {name}: {str(value)[:32]!r} is not a boolean."
    )


def metadata(value: Any, name: str = "metadata") -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadRequest(f"Invalid input for field/attribute {name}: must be an object.")
    if len(value) > MAX_METADATA:
        raise BadRequest(
            f"Invalid input for field/attribute {name}: more than {MAX_METADATA} items."
        )
    for key, item in value.items():
        if not (1 <= len(key) <= MAX_FIELD) or not isinstance(item, str) or len(item) > MAX_FIELD:
            raise BadRequest(
                f"Invalid input for field/attribute {name}: keys are 1-255 characters and "
                "values strings of at most 255 characters."
            )
    return dict(value)


def metadata_filter(raw: str) -> dict[str, str]:
    """`metadata={"k": "v"}` in a query string: JSON, or the Python literal cinderclient sends."""
    for parse in (json.loads, ast.literal_eval):
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = parse(raw[:4096])
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items()}
    raise BadRequest("Invalid metadata filter: a JSON object is expected.")


def meta_item(data: Mapping[str, Any], key: str) -> dict[str, str]:
    """The body of a PUT on one metadata key: `{"meta": {key: value}}`."""
    item = data.get("meta")
    if not isinstance(item, dict):
        raise BadRequest("Expecting to find meta in request body.")
    if list(item) != [key]:
        raise BadRequest("Request body and URI mismatch.")
    if not isinstance(item[key], str) or len(item[key]) > 255:
        raise BadRequest("Invalid input for field/attribute meta: a string of at most 255.")
    return {key: item[key]}


# ---------------------------------------------------------------------- requests


@dataclass(frozen=True)
class VolumeCreate:
    size: int | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    source: str | None = None  # one of SOURCES
    source_ref: str = ""
    bootable: bool | None = None  # None: as the source says
    volume_type: str | None = None  # None: the default type


def volume_create(body: Mapping[str, Any]) -> VolumeCreate:
    sources = [k for k in SOURCES if body.get(k)]
    if len(sources) > 1:
        raise BadRequest("Invalid input received: give one of snapshot_id, source_volid, imageRef.")
    zone = body.get("availability_zone")
    if zone not in (None, "", AVAILABILITY_ZONE):
        raise BadRequest(
            f"Invalid input received: Availability zone '{str(zone)[:64]}' is invalid."
        )
    name = text("name", body.get("name", body.get("display_name")))
    description = text("description", body.get("description", body.get("display_description")))
    meta = metadata(body.get("metadata") or {})
    source = sources[0] if sources else None
    ref = body[source] if source else ""
    if source is not None and not isinstance(ref, str):
        raise BadRequest(f"Invalid input for field/attribute {source}: a string is expected.")
    requested = body.get("size")
    if source is None and requested is None:
        raise BadRequest("Invalid input received: size is required to create a blank volume.")
    bootable = None
    if body.get("bootable") is not None:
        bootable = flag("bootable", body["bootable"])
    type_ref = body.get("volume_type") or None
    if type_ref is not None and not isinstance(type_ref, str):
        raise BadRequest("Invalid input for field/attribute volume_type: a string is expected.")
    return VolumeCreate(
        size=None if requested is None else size("size", requested),
        name=name,
        description=description,
        metadata=meta,
        source=source,
        source_ref=ref,
        bootable=bootable,
        volume_type=type_ref,
    )


@dataclass(frozen=True)
class Described:
    """A PUT on a volume or snapshot: new name and description, and metadata to replace."""

    fields: dict[str, str | None]  # attribute -> value, only those sent
    metadata: dict[str, str] | None = None


def described(body: Mapping[str, Any]) -> Described:
    fields: dict[str, str | None] = {}
    for key, attr in (
        ("name", "name"),
        ("display_name", "name"),
        ("description", "description"),
        ("display_description", "description"),
    ):
        if key in body:
            fields[attr] = text(key, body[key])
    meta = metadata(body["metadata"]) if "metadata" in body else None
    return Described(fields, meta)


@dataclass(frozen=True)
class SnapshotCreate:
    volume_id: str
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    force: bool = True  # false: the caller refused a snapshot of an attached (in-use) volume


SNAPSHOT_IN_USE = (3, 66)


def snapshot_create(body: Mapping[str, Any], version: tuple[int, int] = (3, 0)) -> SnapshotCreate:
    """From 3.66 an in-use volume needs no flag, a true `force` is ignored and a false one
    refused (Cinder's rule). Below 3.66 Cinder also refuses an in-use volume when `force` is
    left out; here only an explicit false is refused, because the `openstack` CLI drops
    `--force` when the cloud offers 3.66 yet openstacksdk sends the call at 3.65, so
    Cinder's rule would break the command a customer types. Our in-use snapshots are
    crash-consistent (the guest's writes are held), which is why Cinder dropped the flag."""
    if "volume_id" not in body:
        raise BadRequest("Invalid input for field/attribute snapshot: 'volume_id' is required.")
    volume_ref = body["volume_id"]
    if volume_ref is not None and not isinstance(volume_ref, str):
        raise BadRequest("Invalid input for field/attribute volume_id: a volume id is expected.")
    force = flag("force", body["force"]) if body.get("force") is not None else None
    if version >= SNAPSHOT_IN_USE and force is False:
        raise BadRequest(
            "Invalid input received: from microversion 3.66 a snapshot of an in-use volume "
            "needs no 'force' flag, and force=false is not accepted; leave 'force' out."
        )
    return SnapshotCreate(
        volume_id=str(volume_ref),  # None: no such volume ("Volume None could not be found")
        name=text("name", body.get("name", body.get("display_name"))),
        description=text("description", body.get("description", body.get("display_description"))),
        metadata=metadata(body.get("metadata") or {}),
        force=force is not False,
    )


@dataclass(frozen=True)
class TypeCreate:
    name: str
    description: str | None
    is_public: bool
    extra_specs: dict[str, str]


def type_create(body: Mapping[str, Any]) -> TypeCreate:
    name = text("name", body.get("name"))
    if not name or not name.strip():
        raise BadRequest("Invalid input for field/attribute name: a volume type needs a name.")
    return TypeCreate(
        name=name,
        description=text("description", body.get("description")),
        is_public=flag(
            "is_public", body.get("os-volume-type-access:is_public", body.get("is_public", True))
        ),
        extra_specs=metadata(body.get("extra_specs") or {}, "extra_specs"),
    )


@dataclass(frozen=True)
class TypeUpdate:
    name: str | None = None  # None: unchanged
    description: str | None = None
    description_sent: bool = False
    is_public: bool | None = None


def type_update(body: Mapping[str, Any]) -> TypeUpdate:
    name = None
    if "name" in body:
        name = text("name", body["name"])
        if not name:
            raise BadRequest("Invalid input for field/attribute name: must not be empty.")
    return TypeUpdate(
        name=name,
        description=text("description", body.get("description")),
        description_sent="description" in body,
        is_public=flag("is_public", body["is_public"]) if "is_public" in body else None,
    )


def quota_update(body: Mapping[str, Any]) -> dict[str, int]:
    """The limits a quota set changes; keys Cinder knows but we do not limit are ignored."""
    checked: dict[str, int] = {}
    for key, value in body.items():
        if key in QUOTA_LIMITS:
            if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= MAX_INT:
                raise BadRequest(f"Quota limit {key} must be an integer of at least -1.")
            checked[key] = value
        elif key not in QUOTA_IGNORED:
            raise BadRequest(f"Bad key(s) in quota set: {key[:64]}")
    return checked


@dataclass(frozen=True)
class StatusReset:
    status: str | None
    attach_status: str | None


def status_reset(body: Mapping[str, Any]) -> StatusReset:
    status = body.get("status")
    if status is not None and status not in VOLUME_STATUSES:
        raise BadRequest(
            f"Invalid input received: status {str(status)[:32]!r} is not a volume status."
        )
    attach_status = body.get("attach_status")
    if attach_status not in (None, "attached", "detached"):
        raise BadRequest("Invalid input received: attach_status must be attached or detached.")
    return StatusReset(status, attach_status)


def snapshot_status(value: Any) -> str:
    if value not in SNAPSHOT_STATUSES:
        raise BadRequest(
            f"Invalid input received: status {str(value)[:32]!r} is not a snapshot status."
        )
    return str(value)


@dataclass(frozen=True)
class SnapshotReport:
    """os-update_snapshot_status: the status a snapshot's maker reports, its progress."""

    status: str
    progress: str | None


def snapshot_report(body: Mapping[str, Any]) -> SnapshotReport:
    unknown = sorted(set(body) - {"status", "progress"})
    if unknown:
        raise BadRequest(
            f"Invalid input received: unexpected field {unknown[0][:64]!r}; send status and, "
            "optionally, progress."
        )
    status = body.get("status")
    if not isinstance(status, str):
        raise BadRequest("Invalid input for field/attribute status: a status is required.")
    progress = body.get("progress")
    if progress is not None and progress != "":
        digits = progress[:-1] if isinstance(progress, str) and progress.endswith("%") else ""
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 3 and int(digits) <= 100):
            raise BadRequest(
                "Invalid input for field/attribute progress: an integer percentage between "
                "0 and 100, such as '90%'."
            )
    return SnapshotReport(status, progress or None)


UPLOAD_FORMATS = ("raw", "qcow2")


@dataclass(frozen=True)
class UploadToImage:
    image_name: str
    disk_format: str = "qcow2"
    container_format: str = "bare"


def upload_to_image(body: Mapping[str, Any]) -> UploadToImage:
    name = text("image_name", body.get("image_name"))
    if not name:
        raise BadRequest("Invalid input received: image_name is required.")
    disk_format = body.get("disk_format", "raw") or "raw"
    if disk_format not in UPLOAD_FORMATS:
        raise BadRequest(
            f"Invalid input received: disk_format {str(disk_format)[:32]!r} is not supported; "
            f"use one of {', '.join(UPLOAD_FORMATS)}."
        )
    container_format = body.get("container_format", "bare") or "bare"
    if container_format != "bare":
        raise BadRequest("Invalid input received: only container_format bare is supported.")
    return UploadToImage(name, disk_format, container_format)


# ---------------------------------------------------------------------- encryption types

# Cinder's LUKS providers: its short name, and the class paths older clients send
LUKS_PROVIDERS = (
    "luks",
    "LuksEncryptor",
    "nova.volume.encryptors.luks.LuksEncryptor",
    "os_brick.encryptors.luks.LuksEncryptor",
)
LUKS_CIPHERS = ("aes-xts-plain64",)
LUKS_KEY_SIZES = (256, 512)
ENCRYPTION_FIELDS = ("provider", "cipher", "key_size", "control_location")


@dataclass(frozen=True)
class EncryptionSpec:
    """A volume type's encryption, as sent: None for a field a PUT leaves alone."""

    provider: str | None = None
    cipher: str | None = None
    key_size: int | None = None
    control_location: str | None = None


def encryption_spec(body: Mapping[str, Any], partial: bool = False) -> EncryptionSpec:
    """`{"encryption": {...}}` of a create (`partial` False: provider required) or update."""
    data = body.get("encryption")
    if not isinstance(data, Mapping) or not data:
        raise BadRequest("Invalid input received: the body needs a non-empty 'encryption'.")
    unknown = sorted(str(k)[:64] for k in data if k not in ENCRYPTION_FIELDS)
    if unknown:
        raise BadRequest(f"Invalid input received: unknown encryption field(s) {unknown}.")
    provider = data.get("provider")
    if (provider is not None or not partial) and provider not in LUKS_PROVIDERS:
        raise BadRequest(
            f"Invalid input received: provider {str(provider)[:64]!r} is not supported; "
            "volumes here are encrypted with 'luks' (QEMU's LUKS)."
        )
    cipher = data.get("cipher")
    if cipher is not None and cipher not in LUKS_CIPHERS:
        raise BadRequest(
            f"Invalid input received: cipher {str(cipher)[:64]!r} is not supported; "
            "use 'aes-xts-plain64'."
        )
    key_size = data.get("key_size")
    if key_size is not None and (
        not isinstance(key_size, int)
        or isinstance(key_size, bool)
        or key_size not in LUKS_KEY_SIZES
    ):
        raise BadRequest(
            f"Invalid input received: key_size {str(key_size)[:16]!r} is not supported; "
            "aes-xts-plain64 takes 256 or 512 bits."
        )
    location = data.get("control_location")
    if location is not None and location != "front-end":
        raise BadRequest(
            f"Invalid input received: control_location {str(location)[:64]!r} is not "
            "supported; volumes are decrypted by QEMU, 'front-end'."
        )
    return EncryptionSpec(
        provider="luks" if provider is not None else None,
        cipher=cipher,
        key_size=key_size,
        control_location=location,
    )
