"""Metering label and label rule bodies (Neutron's metering extension), checked into typed
values with Neutron's messages. Syntax only: overlaps and the label's existence are
`metering`'s rules."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from souverain.common.errors import BadRequest
from souverain.network.fields import flag_of, only_fields, text_of
from souverain.network.ipam import InvalidInput

LABEL_FIELDS = frozenset({"name", "description", "shared", "project_id", "tenant_id"})
RULE_FIELDS = frozenset(
    {
        "metering_label_id",
        "direction",
        "excluded",
        "remote_ip_prefix",
        "source_ip_prefix",
        "destination_ip_prefix",
        "project_id",
        "tenant_id",
    }
)
PREFIXES = ("remote_ip_prefix", "source_ip_prefix", "destination_ip_prefix")


@dataclass(frozen=True)
class LabelBody:
    owner: Any
    name: str
    description: str
    shared: bool


@dataclass(frozen=True)
class MeterRuleBody:
    metering_label_id: Any
    direction: str
    excluded: bool
    remote_ip_prefix: str | None
    source_ip_prefix: str | None
    destination_ip_prefix: str | None


def label_create(body: dict[str, Any]) -> LabelBody:
    only_fields(body, LABEL_FIELDS, "metering_label")
    return LabelBody(
        owner=body.get("project_id", body.get("tenant_id")),
        name=text_of(body, "name"),
        description=text_of(body, "description"),
        shared=flag_of(body, "shared", False),
    )


def _prefix(body: dict[str, Any], name: str) -> str | None:
    raw = body.get(name)
    if raw is None:
        return None
    try:
        net = ipaddress.ip_network(raw, strict=False) if isinstance(raw, str) else None
    except ValueError:
        net = None
    if net is None or len(raw) > 64 or net.version != 4:
        raise InvalidInput(
            f"Invalid input for {name}. Reason: '{str(raw)[:64]}' is not a valid IPv4 prefix."
        )
    return str(net)


def rule_create(body: dict[str, Any]) -> MeterRuleBody:
    only_fields(body, RULE_FIELDS, "metering_label_rule")
    if "metering_label_id" not in body:
        raise BadRequest(
            "Failed to parse request. Required attribute 'metering_label_id' not specified"
        )
    direction = body.get("direction", "ingress")
    if direction not in ("ingress", "egress"):
        raise InvalidInput(
            f"Invalid input for direction. Reason: '{str(direction)[:32]}' is not in "
            "['ingress', 'egress']."
        )
    remote, source, destination = (_prefix(body, name) for name in PREFIXES)
    if remote is not None and (source is not None or destination is not None):
        raise BadRequest(
            "Cannot use 'remote-ip-prefix' in conjunction with 'source-ip-prefix' or "
            "'destination-ip-prefix'."
        )
    if remote is None and source is None and destination is None:
        raise BadRequest(
            "You must define at least one of the following parameters 'remote_ip_prefix', or "
            "'source_ip_prefix' or 'destination_ip_prefix'."
        )
    return MeterRuleBody(
        metering_label_id=body["metering_label_id"],
        direction=direction,
        excluded=flag_of(body, "excluded", False),
        remote_ip_prefix=remote,
        source_ip_prefix=source,
        destination_ip_prefix=destination,
    )
