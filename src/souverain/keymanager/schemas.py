"""The key manager's requests as Barbican v1 takes them, checked at the edge: secret,
container, order, ACL and quota bodies, payloads decoded (base64 strictly) and their
content types normalized. A payload is never echoed in an error."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from souverain.common.errors import BadRequest, UnsupportedMediaType
from souverain.keymanager.secrets import SecretSpec
from souverain.openstack.body import parse_model

TEXT = "text/plain"
OCTETS = "application/octet-stream"
SecretType = Literal["symmetric", "passphrase", "certificate", "opaque", "private", "public"]


def _name() -> Any:
    return Field(default=None, max_length=255)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SecretCreate(_Body):
    name: str | None = _name()
    expiration: dt.datetime | None = None
    algorithm: str | None = _name()
    mode: str | None = _name()
    bit_length: StrictInt | None = Field(default=None, ge=1, le=2**31 - 1)
    payload: str | None = Field(default=None, repr=False)
    payload_content_type: str | None = _name()
    payload_content_encoding: str | None = _name()
    secret_type: SecretType = "opaque"  # noqa: S105 - a type name, not a secret


def content_type(raw: str, *, header: bool = False) -> str:
    """`text/plain` (UTF-8) or `application/octet-stream`; anything else refused (400 in a
    body, 415 as a PUT's Content-Type)."""
    base, *params = (p.strip().lower() for p in raw.split(";"))
    charset_ok = all(p in ("charset=utf-8", "charset=utf8") for p in params)
    if base == TEXT and charset_ok:
        return TEXT
    if base == OCTETS and not params:
        return OCTETS
    message = f"Content-Type '{raw[:64]}' is not supported: {TEXT} or {OCTETS}."
    if header:
        raise UnsupportedMediaType(message)
    raise BadRequest(message)


def decode_payload(payload: str | bytes, kind: str, encoding: str | None) -> bytes:
    """The payload's bytes: text as UTF-8, octets base64-decoded (strictly)."""
    if kind == TEXT:
        if encoding:
            raise BadRequest("payload_content_encoding is only valid for application/octet-stream.")
        return payload.encode() if isinstance(payload, str) else payload
    if (encoding or "").lower() != "base64":
        raise BadRequest(
            "payload_content_encoding must be 'base64' for application/octet-stream payloads."
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("The payload is not valid base64.") from None


def secret_spec(data: Any) -> SecretSpec:
    body = parse_model(SecretCreate, data, "secret")
    payload = None
    kind = None
    if body.payload is not None:
        if not body.payload_content_type:
            raise BadRequest("payload_content_type must be specified when a payload is given.")
        kind = content_type(body.payload_content_type)
        payload = decode_payload(body.payload, kind, body.payload_content_encoding)
        if not payload:
            raise BadRequest("If 'payload' is specified, it must be non-empty.")
    elif body.payload_content_type or body.payload_content_encoding:
        raise BadRequest("payload_content_type and encoding need a payload.")
    return SecretSpec(
        name=body.name,
        secret_type=body.secret_type,
        algorithm=body.algorithm,
        bit_length=body.bit_length,
        mode=body.mode,
        expiration=_aware(body.expiration),
        payload=payload,
        content_type=kind,
    )


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


class SecretRef(_Body):
    name: str | None = _name()
    secret_ref: str = Field(min_length=1, max_length=1024)


class ContainerCreate(_Body):
    name: str | None = _name()
    type: Literal["generic", "certificate", "rsa"]
    secret_refs: list[SecretRef] = Field(default_factory=list, max_length=64)


def container_request(data: Any) -> tuple[str, str | None, list[tuple[str | None, str]]]:
    body = parse_model(ContainerCreate, data, "container")
    refs = [(ref.name, ref_id(ref.secret_ref, "secrets")) for ref in body.secret_refs]
    return body.type, body.name, refs


def ref_id(href: str, collection: str) -> str:
    """The id at the end of a secret's href (full URL or bare id)."""
    tail = href.rstrip("/").rsplit("/", 2)
    if len(tail) == 3 and tail[1] != collection:
        raise BadRequest(f"Invalid reference '{href[:128]}': not one of {collection}.")
    return tail[-1][:64]


class OrderMeta(_Body):
    name: str | None = _name()
    algorithm: str | None = _name()
    bit_length: StrictInt | None = Field(default=None, ge=1, le=65536)
    mode: str | None = _name()
    expiration: dt.datetime | None = None
    payload_content_type: str | None = _name()


class OrderCreate(_Body):
    type: Literal["key", "asymmetric"]
    meta: OrderMeta


def order_request(data: Any) -> tuple[str, dict[str, Any]]:
    body = parse_model(OrderCreate, data, "order")
    if body.meta.payload_content_type not in (None, OCTETS):
        raise BadRequest(f"payload_content_type of an order must be {OCTETS}.")
    meta = body.meta.model_dump(exclude_none=True)
    if "expiration" in meta:
        meta["expiration"] = _aware(meta["expiration"])
    return body.type, meta


class AclRead(_Body):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    users: list[str] | None = Field(default=None, max_length=256)
    project_access: StrictBool | None = Field(default=None, alias="project-access")


class AclBody(_Body):
    model_config = ConfigDict(extra="forbid")
    read: AclRead = Field(default_factory=AclRead)


def acl_request(data: Any) -> tuple[bool | None, list[str] | None]:
    body = parse_model(AclBody, data, "acl")
    users = body.read.users
    if users is not None and any(not u or len(u) > 64 for u in users):
        raise BadRequest("Invalid input for field 'read.users': user ids of 1 to 64 characters.")
    return body.read.project_access, users


class SecretConsumerBody(_Body):
    service: str = Field(min_length=1, max_length=255)
    resource_type: str = Field(min_length=1, max_length=255)
    resource_id: str = Field(min_length=1, max_length=256)  # a UUID, or a bucket's name


class ContainerConsumerBody(_Body):
    name: str = Field(min_length=1, max_length=255)
    URL: str = Field(min_length=1, max_length=255)


def consumer_request(kind: str, data: Any) -> dict[str, str]:
    """A secret's consumer (service, resource_type, resource_id) or a container's (name,
    URL), as Barbican's validators take them."""
    model: type[BaseModel] = SecretConsumerBody if kind == "secret" else ContainerConsumerBody
    fields: dict[str, str] = parse_model(model, data, "consumer").model_dump()
    return fields


def force_flag(raw: str | None) -> bool:
    """Barbican's `force` query parameter (oslo's strict boolean)."""
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("1", "t", "true", "on", "y", "yes"):
        return True
    if value in ("0", "f", "false", "off", "n", "no"):
        return False
    raise BadRequest("URI provided invalid query string parameters: force must be true or false.")


class MetadatumBody(_Body):
    key: str = Field(min_length=1, max_length=255)
    value: str = Field(max_length=65535)


def metadata_key(key: str) -> str:
    """Barbican's metadata keys are lower-case."""
    if not key or len(key) > 255:
        raise BadRequest("Invalid metadata key: 1 to 255 characters.")
    return key.lower()


def metadata_request(data: Any) -> dict[str, str]:
    items = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(items, dict) or len(items) > 128:
        raise BadRequest("Expecting 'metadata': an object of at most 128 string values.")
    out: dict[str, str] = {}
    for key, value in items.items():
        if not isinstance(value, str) or len(value) > 65535:
            raise BadRequest(f"Invalid metadata value for key '{key[:64]}': a string.")
        out[metadata_key(key)] = value
    return out


def metadatum_request(data: Any) -> tuple[str, str]:
    body = parse_model(MetadatumBody, data, "metadata")
    return metadata_key(body.key), body.value
