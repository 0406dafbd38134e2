"""Nova's request bodies, checked and typed before the compute service sees them.

Each function takes the decoded JSON (and the microversion where the body depends
on it) and returns what the service takes, or raises a 400 with Nova's wording.
Nothing here reads a request or calls the service.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from souverain.common.errors import BadRequest
from souverain.compute.service import (
    QUOTA_RESOURCES,
    Backup,
    BootVolume,
    GroupRequest,
    ServerRequest,
)
from souverain.compute.views import Version

NAME_RE = re.compile(r"^(?![\s])[^\x00-\x1f\x7f]{1,255}(?<![\s])$")
KEYPAIR_NAME_RE = re.compile(r"^[A-Za-z0-9 _@.-]{1,255}$")
TAG_RE = re.compile(r"^[^,/]{1,60}$")
FLAVOR_ID_RE = re.compile(r"[A-Za-z0-9._ -]{1,255}")
MAX_SERVERS_PER_REQUEST = 50
MAX_ADMIN_PASS = 255


# -------------------------------------------------------------- fields


def str_map(value: Any, field: str, max_items: int = 128) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadRequest(f"Invalid input for field/attribute {field}: must be an object.")
    if len(value) > max_items:
        raise BadRequest(f"Invalid input for field/attribute {field}: more than {max_items} items.")
    for key, item in value.items():
        if not (1 <= len(key) <= 255) or not isinstance(item, str) or len(item) > 255:
            raise BadRequest(
                f"Invalid input for field/attribute {field}: keys are 1-255 characters and "
                "values strings of at most 255 characters."
            )
    return dict(value)


def name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise BadRequest(
            f"Invalid input for field/attribute {field}: 1-255 printable characters "
            "without leading or trailing whitespace."
        )
    return value


# Nova's boolean parameters take these spellings as well as JSON's true and false.
TRUE_WORDS = frozenset(["true", "1", "yes", "on", "y", "t"])
FALSE_WORDS = frozenset(["false", "0", "no", "off", "n", "f"])


def boolean(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, str | int) else None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BadRequest(f"Invalid input for field/attribute {field}: must be a boolean.")


def integer(value: Any, field: str, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise BadRequest(f"Invalid input for field/attribute {field}: must be an integer.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(
            f"Invalid input for field/attribute {field}: must be an integer."
        ) from None
    if isinstance(value, float) and value != number:
        raise BadRequest(f"Invalid input for field/attribute {field}: must be an integer.")
    if number < minimum or number > 2**31 - 1:
        raise BadRequest(f"Invalid input for field/attribute {field}: out of range.")
    return number


def ref(value: Any, field: str) -> str:
    """An id, or a URL whose last segment is the id (old clients send links)."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"Invalid input for field/attribute {field}: must be a non-empty string.")
    text = value.rstrip("/").rsplit("/", 1)[-1]
    if len(text) > 255:
        raise BadRequest(f"Invalid input for field/attribute {field}: too long.")
    return text


def description(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > 255):
        raise BadRequest("Invalid input for field/attribute description.")
    return value


def tags(value: Any, max_items: int | None = None) -> list[str]:
    if (
        not isinstance(value, list)
        or (max_items is not None and len(value) > max_items)
        or not all(isinstance(t, str) and TAG_RE.match(t) for t in value)
    ):
        raise BadRequest("Invalid input for field/attribute tags.")
    return value


def object_member(body: dict[str, Any], key: str) -> dict[str, Any]:
    """`body[key]` as an object, or Nova's 400 for a body that does not hold one."""
    data = body.get(key)
    if not isinstance(data, dict):
        raise BadRequest(f"Expecting to find {key} in request body.")
    return data


# -------------------------------------------------------------- servers


def server_request(data: dict[str, Any], v: Version, group: str | None = None) -> ServerRequest:
    """The `server` of a create: what to boot, where, and how many."""
    server_name = name(data.get("name"), "name")
    boot_volume = boot_volume_of(data.get("block_device_mapping_v2"), v)
    image_ref = _image_ref(data, boot_volume)
    if "flavorRef" not in data:
        raise BadRequest("Invalid input for field/attribute flavorRef: it is required.")
    flavor_ref = ref(data["flavorRef"], "flavorRef")
    key_name = data.get("key_name")
    if key_name is not None and (not isinstance(key_name, str) or not key_name):
        raise BadRequest("Invalid input for field/attribute key_name.")
    user_data = data.get("user_data")
    if user_data is not None and not isinstance(user_data, str):
        raise BadRequest("Invalid input for field/attribute user_data: must be base64 text.")
    metadata = str_map(data.get("metadata", {}), "metadata")
    networks = _networks(data, v)
    min_count, max_count = _counts(data)
    zone = data.get("availability_zone")
    if zone is not None and (not isinstance(zone, str) or not zone):
        raise BadRequest("Invalid input for field/attribute availability_zone.")
    about = description(data.get("description")) if v >= (2, 19) else None
    server_tags = tuple(tags(data["tags"], 50)) if v >= (2, 52) and "tags" in data else ()
    groups = _security_groups(data.get("security_groups", []))
    hostname = data.get("hostname") if v >= (2, 90) else None
    if "personality" in data and v >= (2, 57):
        raise BadRequest("Additional properties are not allowed ('personality' was unexpected)")
    return ServerRequest(
        group=group,
        admin_pass=admin_password(data.get("adminPass")),
        access_ip_v4=access_ip(data.get("accessIPv4"), "accessIPv4"),
        access_ip_v6=access_ip(data.get("accessIPv6"), "accessIPv6"),
        name=server_name,
        image_ref=image_ref,
        flavor_ref=flavor_ref,
        key_name=key_name,
        user_data=user_data,
        metadata=metadata,
        networks=networks,
        security_groups=groups,
        availability_zone=zone,
        min_count=min_count,
        max_count=max_count,
        description=about,
        hostname=hostname,
        tags=server_tags,
        boot_volume=boot_volume,
    )


ACCESS_IP_FIELDS = {"accessIPv4": "access_ip_v4", "accessIPv6": "access_ip_v6"}


def access_ip(value: Any, field: str) -> str | None:
    """An accessIPv4/accessIPv6 in its canonical text; None (or "") clears it."""
    if value is None or value == "":
        return None
    wanted = 4 if field == "accessIPv4" else 6
    try:
        address = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        address = None
    if address is None or address.version != wanted:
        raise BadRequest(f"Invalid input for field/attribute {field}: not an IPv{wanted} address.")
    return str(address)


def admin_password(value: Any) -> str | None:
    """The `adminPass` a create or rebuild asks for; None when the cloud is to choose one."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_ADMIN_PASS:
        raise BadRequest(
            f"Invalid input for field/attribute adminPass: a string of at most {MAX_ADMIN_PASS} "
            "characters."
        )
    return value


def _image_ref(data: dict[str, Any], boot_volume: BootVolume | None) -> str:
    mapping = data.get("block_device_mapping_v2")
    if boot_volume is not None:
        return ""
    if mapping and data.get("imageRef") in ("", None):
        return ref(mapping[0].get("uuid"), "block_device_mapping_v2.uuid")
    if "imageRef" not in data or data["imageRef"] in ("", None):
        raise BadRequest("Invalid input for field/attribute imageRef: it is required.")
    return ref(data["imageRef"], "imageRef")


def _networks(data: dict[str, Any], v: Version) -> Any:
    if "networks" not in data:
        if v >= (2, 37):
            raise BadRequest(
                "Invalid input for field/attribute networks: it is required from 2.37."
            )
        return "auto"
    networks = data["networks"]
    if isinstance(networks, str):
        if networks not in ("auto", "none"):
            raise BadRequest(
                "Invalid input for field/attribute networks: 'auto', 'none' or a list."
            )
    elif isinstance(networks, list):
        for item in networks:
            if not isinstance(item, dict):
                raise BadRequest("Invalid input for field/attribute networks.")
    else:
        raise BadRequest("Invalid input for field/attribute networks.")
    return networks


def _counts(data: dict[str, Any]) -> tuple[int, int]:
    min_count = integer(data.get("min_count", 1), "min_count", 1)
    max_count = integer(data.get("max_count", min_count), "max_count", 1)
    if min_count > max_count:
        raise BadRequest("min_count must be <= max_count")
    if max_count > MAX_SERVERS_PER_REQUEST:
        raise BadRequest("max_count must be at most 50 in one request.")
    return min_count, max_count


def _security_groups(groups: Any) -> tuple[str, ...]:
    if (
        not isinstance(groups, list)
        or len(groups) > 16
        or not all(
            isinstance(g, dict) and isinstance(g.get("name"), str) and 0 < len(g["name"]) <= 255
            for g in groups
        )
    ):
        raise BadRequest("Invalid input for field/attribute security_groups: [{name}].")
    return tuple(dict.fromkeys(g["name"] for g in groups))


def boot_volume_of(raw: Any, v: Version) -> BootVolume | None:
    """The boot device of a `block_device_mapping_v2`, as a `BootVolume`; None when absent."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise BadRequest("Invalid input for field/attribute block_device_mapping_v2.")
    boots = [b for b in raw if str(b.get("boot_index", "")) == "0"]
    if len(boots) != 1 or len(raw) != 1:
        raise BadRequest(
            "Block device mapping: give exactly one device, the boot device (boot_index 0); "
            "attach more volumes once the server runs."
        )
    (bdm,) = boots
    source, destination = bdm.get("source_type"), bdm.get("destination_type", "volume")
    if source == "image" and destination == "local":
        return None  # the image on the host's disk: the ordinary boot (`openstack` sends this)
    if destination != "volume" or source not in ("image", "volume"):
        raise BadRequest(
            "Block device mapping: the boot device must be a volume, from an image "
            "(source_type image) or an existing one (source_type volume)."
        )
    ident = bdm.get("uuid")
    if not isinstance(ident, str) or not ident:
        raise BadRequest("Invalid input for field/attribute block_device_mapping_v2.uuid.")
    size = 0
    if source == "image":
        size = integer(bdm.get("volume_size"), "volume_size", 1)
    delete = bdm.get("delete_on_termination", False)
    if isinstance(delete, str):
        delete = delete.lower() in ("true", "1", "yes")
    return BootVolume(source, ident, size, bool(delete), _bdm_volume_type(bdm, v, source))


def _bdm_volume_type(bdm: dict[str, Any], v: Version, source: str) -> str | None:
    """A block device's `volume_type` (2.67): the type of the volume Nova makes for it, so
    only with source_type image; before 2.67 the field is unknown, as Nova's schema says."""
    if "volume_type" not in bdm or bdm["volume_type"] is None:
        return None
    value = bdm["volume_type"]
    if v < (2, 67):
        raise BadRequest(
            "Invalid input for field/attribute block_device_mapping_v2: Additional properties "
            "are not allowed ('volume_type' was unexpected)."
        )
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        raise BadRequest("Invalid input for field/attribute block_device_mapping_v2.volume_type.")
    if source != "image":
        raise BadRequest(
            "Block device mapping: volume_type names the type of a new volume; an existing "
            "volume (source_type volume) keeps its own."
        )
    return value


def server_changes(body: dict[str, Any], v: Version) -> dict[str, Any]:
    """A server update's `server`: the fields to change (the access IPs are ignored)."""
    data = body.get("server")
    if not isinstance(data, dict):  # {} is a valid update that changes nothing, as in Nova
        raise BadRequest("Expecting to find server in request body.")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key == "name":
            changes["name"] = name(value)
        elif key == "description" and v >= (2, 19):
            changes["description"] = description(value)
        elif key == "hostname" and v >= (2, 90):
            changes["hostname"] = name(value, "hostname")
        elif key in ACCESS_IP_FIELDS:
            changes[ACCESS_IP_FIELDS[key]] = access_ip(value, key)
        elif key == "OS-DCF:diskConfig":
            continue
        else:
            raise BadRequest(f"Additional properties are not allowed ('{key}' was unexpected)")
    return changes


# -------------------------------------------------------------- server actions


def reboot_is_hard(args: Any) -> bool:
    kind = (args or {}).get("type") if isinstance(args, dict) else None
    if not isinstance(kind, str) or kind.upper() not in ("SOFT", "HARD"):
        raise BadRequest("Invalid input for field/attribute type: SOFT or HARD.")
    return kind.upper() == "HARD"


def console_length(args: Any) -> int | None:
    """How many lines of console output to return; None for all of it."""
    raw = (args or {}).get("length") if isinstance(args, dict) else None
    if raw is None:
        return None
    try:
        length = int(raw)
    except (TypeError, ValueError):
        raise BadRequest("Invalid input for field/attribute length.") from None
    if length < -1:
        raise BadRequest("Invalid input for field/attribute length.")
    return None if length == -1 else length


@dataclass(frozen=True)
class ImageRequest:
    name: str
    metadata: dict[str, str]


def image_request(args: Any) -> ImageRequest:
    if not isinstance(args, dict):
        raise BadRequest("Invalid input for field/attribute createImage.")
    return ImageRequest(
        name(args.get("name"), "name"), str_map(args.get("metadata", {}), "metadata")
    )


def backup_request(args: Any) -> Backup:
    """createBackup's body: name, backup_type, rotation (a non-negative integer), metadata."""
    if not isinstance(args, dict):
        raise BadRequest("Invalid input for field/attribute createBackup.")
    _only(args, ("name", "backup_type", "rotation", "metadata"))
    for key in ("name", "backup_type", "rotation"):
        if key not in args:
            raise BadRequest(
                f"Invalid input for field/attribute createBackup: '{key}' is a required property."
            )
    backup_type = args["backup_type"]
    if not isinstance(backup_type, str) or len(backup_type) > 255:
        raise BadRequest("Invalid input for field/attribute backup_type: a string.")
    return Backup(
        name=name(args["name"], "name"),
        backup_type=backup_type,
        rotation=integer(args["rotation"], "rotation"),
        metadata=str_map(args.get("metadata", {}), "metadata"),
    )


def rebuild_request(args: Any, v: Version) -> tuple[str, dict[str, Any]]:
    """A rebuild's image and the other fields it changes."""
    if not isinstance(args, dict) or "imageRef" not in args:
        raise BadRequest("Invalid input for field/attribute imageRef: it is required.")
    changes: dict[str, Any] = {}
    if "name" in args:
        changes["name"] = name(args["name"])
    if "metadata" in args:
        changes["metadata"] = str_map(args["metadata"], "metadata")
    if "description" in args and v >= (2, 19):
        changes["description"] = args["description"]
    if "key_name" in args and v >= (2, 54):
        changes["key_name"] = args["key_name"]
    if "user_data" in args and v >= (2, 57):
        changes["user_data"] = args["user_data"]
    if "adminPass" in args:
        changes["admin_pass"] = admin_password(args["adminPass"])
    for field, column in ACCESS_IP_FIELDS.items():
        if field in args:
            changes[column] = access_ip(args[field], field)
    return ref(args["imageRef"], "imageRef"), changes


def rescue_request(args: Any) -> tuple[str | None, str | None]:
    """A rescue's image (None: the server's own) and password (None: a new one)."""
    if args is None:
        return None, None
    if not isinstance(args, dict) or set(args) - {"adminPass", "rescue_image_ref"}:
        raise BadRequest("Invalid input for field/attribute rescue: adminPass, rescue_image_ref.")
    image_ref = args.get("rescue_image_ref")
    if image_ref is not None:
        image_ref = ref(image_ref, "rescue_image_ref")
    return image_ref, admin_password(args.get("adminPass"))


def unshelve_zone(args: Any, v: Version) -> str | None:
    """The availability zone an unshelve asks for (from 2.77), if any."""
    if args is None:
        return None
    if not isinstance(args, dict) or v < (2, 77) or set(args) - {"availability_zone"}:
        raise BadRequest(
            "Invalid input for field/attribute unshelve: null, or from 2.77 {availability_zone}."
        )
    zone = args.get("availability_zone")
    if zone is not None and (not isinstance(zone, str) or not zone):
        raise BadRequest("Invalid input for field/attribute availability_zone.")
    return zone


def security_group_name(args: Any) -> str:
    """The group an add/removeSecurityGroup names."""
    value = args.get("name") if isinstance(args, dict) else None
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise BadRequest("Invalid input for field/attribute name: a security group's name.")
    return value.strip()


def resize_flavor(args: Any) -> str:
    if not isinstance(args, dict) or "flavorRef" not in args:
        raise BadRequest("Invalid input for field/attribute flavorRef: it is required.")
    return ref(args["flavorRef"], "flavorRef")


# -------------------------------------------------------------- a server's parts


@dataclass(frozen=True)
class InterfaceRequest:
    port_id: str | None
    net_id: str | None
    fixed_ip: str | None


def interface_request(body: dict[str, Any]) -> InterfaceRequest:
    data = body.get("interfaceAttachment", {})
    if not isinstance(data, dict) or not set(data) <= {"port_id", "net_id", "fixed_ips", "tag"}:
        raise BadRequest("Invalid input for field/attribute interfaceAttachment.")
    port_id, net_id = data.get("port_id"), data.get("net_id")
    fixed = data.get("fixed_ips")
    fixed_ip = None
    if fixed is not None:
        if (
            not isinstance(fixed, list)
            or len(fixed) != 1
            or not isinstance(fixed[0], dict)
            or not isinstance(fixed[0].get("ip_address"), str)
        ):
            raise BadRequest("Invalid input for field/attribute fixed_ips: one ip_address.")
        if net_id is None:
            raise BadRequest("fixed_ips needs net_id.")
        fixed_ip = fixed[0]["ip_address"]
    for field, value in (("port_id", port_id), ("net_id", net_id)):
        if value is not None and (not isinstance(value, str) or len(value) > 64):
            raise BadRequest(f"Invalid input for field/attribute {field}.")
    if port_id is not None and net_id is not None:
        raise BadRequest("Must not input both network_id and port_id")
    return InterfaceRequest(port_id, net_id, fixed_ip)


def volume_attachment_request(body: dict[str, Any], v: Version) -> tuple[str, bool]:
    """The volume to attach and whether deleting the server deletes it (from 2.79)."""
    data = body.get("volumeAttachment")
    if not isinstance(data, dict) or not isinstance(data.get("volumeId"), str):
        raise BadRequest("Invalid input for field/attribute volumeAttachment.volumeId.")
    delete = data.get("delete_on_termination", False) if v >= (2, 79) else False
    if not isinstance(delete, bool):
        raise BadRequest("Invalid input for field/attribute delete_on_termination.")
    return data["volumeId"], delete


def single_item(value: Any, field: str, key: str) -> dict[str, str]:
    """A one-item map whose key must be the one in the URI (metadata, extra specs)."""
    item = str_map(value, field, 1)
    if list(item) != [key]:
        raise BadRequest("Request body and URI mismatch")
    return item


# -------------------------------------------------------------- flavors, keypairs, quotas


def flavor_create(body: dict[str, Any], v: Version) -> dict[str, Any]:
    """A flavor create's `flavor` as the service's document."""
    data = object_member(body, "flavor")
    doc: dict[str, Any] = {
        "name": name(data.get("name"), "name"),
        "ram": integer(data.get("ram"), "ram", 1),
        "vcpus": integer(data.get("vcpus"), "vcpus", 1),
        "disk": integer(data.get("disk"), "disk", 0),
        "ephemeral": integer(data.get("OS-FLV-EXT-DATA:ephemeral", 0), "ephemeral"),
        "swap": integer(data.get("swap", 0) or 0, "swap"),
        "is_public": boolean(data.get("os-flavor-access:is_public", True), "is_public"),
    }
    if data.get("id") is not None:
        flavor_id = str(data["id"])
        if not FLAVOR_ID_RE.fullmatch(flavor_id):
            raise BadRequest("Invalid input for field/attribute id.")
        doc["id"] = flavor_id
    if "rxtx_factor" in data:
        doc["rxtx_factor"] = float(data["rxtx_factor"])
    if "description" in data and v >= (2, 55):
        doc["description"] = data["description"]
    return doc


def flavor_tenant(body: dict[str, Any]) -> tuple[str, bool] | None:
    """The project an addTenantAccess (True) or removeTenantAccess (False) names."""
    for action, add in (("addTenantAccess", True), ("removeTenantAccess", False)):
        if action in body:
            tenant = (body[action] or {}).get("tenant")
            if not isinstance(tenant, str) or not tenant:
                raise BadRequest(f"Missing tenant parameter in {action}.")
            return tenant, add
    return None


@dataclass(frozen=True)
class KeypairRequest:
    name: str
    public_key: str | None
    type: str
    user_id: str | None


def keypair_request(body: dict[str, Any], v: Version) -> KeypairRequest:
    data = object_member(body, "keypair")
    keypair_name = data.get("name")
    if not isinstance(keypair_name, str) or not KEYPAIR_NAME_RE.match(keypair_name):
        raise BadRequest(
            "Invalid input for field/attribute name: keypair names are 1-255 characters "
            "of letters, digits, spaces, '_', '-', '.' and '@'."
        )
    public_key = data.get("public_key")
    if public_key is not None and not isinstance(public_key, str):
        raise BadRequest("Invalid input for field/attribute public_key.")
    key_type = data.get("type", "ssh") if v >= (2, 2) else "ssh"
    if key_type not in ("ssh", "x509"):
        raise BadRequest("Invalid input for field/attribute type: ssh or x509.")
    owner = data.get("user_id") if v >= (2, 10) else None
    return KeypairRequest(keypair_name, public_key, key_type, owner)


def quota_changes(body: Any) -> tuple[dict[str, int], bool]:
    """A PUT's `{"quota_set": {...}}`: the limits to set (ints >= -1) and `force`."""
    data = body.get("quota_set") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not data:
        raise BadRequest("Invalid input for field/attribute quota_set.")
    force = data.get("force", False)
    if not isinstance(force, bool):
        if str(force).lower() not in ("true", "false"):
            raise BadRequest("Invalid input for field/attribute force: must be a boolean.")
        force = str(force).lower() == "true"
    changes: dict[str, int] = {}
    for key, value in data.items():
        if key == "force":
            continue
        if key not in QUOTA_RESOURCES:
            raise BadRequest(
                f"Invalid input for field/attribute quota_set. Additional properties are not "
                f"allowed ('{str(key)[:64]}' was unexpected)"
            )
        changes[key] = integer(value, key, minimum=-1)
    return changes, force


# -------------------------------------------------------------- server groups

GROUP_POLICIES_2_1 = ("affinity", "anti-affinity")
GROUP_POLICIES = (*GROUP_POLICIES_2_1, "soft-affinity", "soft-anti-affinity")


def server_group_request(body: dict[str, Any], v: Version) -> GroupRequest:
    """A server group create: `policies` (one of them) before 2.64, `policy` and `rules`
    from it."""
    data = object_member(body, "server_group")
    known = {"name", "policy", "rules"} if v >= (2, 64) else {"name", "policies"}
    unexpected = sorted(set(data) - known)
    if unexpected:
        raise BadRequest(
            f"Additional properties are not allowed ('{unexpected[0]}' was unexpected)"
        )
    allowed = GROUP_POLICIES if v >= (2, 15) else GROUP_POLICIES_2_1
    if v >= (2, 64):
        policy = data.get("policy")
    else:
        policies = data.get("policies")
        if not isinstance(policies, list) or len(policies) != 1:
            raise BadRequest("Invalid input for field/attribute policies: exactly one policy.")
        policy = policies[0]
    if policy not in allowed:
        raise BadRequest(f"Invalid input for field/attribute policy: one of {', '.join(allowed)}.")
    return GroupRequest(name(data.get("name")), str(policy), _group_rules(data, str(policy)))


def _group_rules(data: dict[str, Any], policy: str) -> dict[str, Any]:
    rules = data.get("rules", {})
    if not isinstance(rules, dict) or set(rules) - {"max_server_per_host"}:
        raise BadRequest("Invalid input for field/attribute rules: only max_server_per_host.")
    if rules and policy != "anti-affinity":
        raise BadRequest("Only the anti-affinity policy takes rules (max_server_per_host).")
    if "max_server_per_host" in rules:
        limit = integer(rules["max_server_per_host"], "max_server_per_host", 1)
        return {"max_server_per_host": limit}
    return {}


def scheduler_group(body: dict[str, Any]) -> str | None:
    """The server group a create's scheduler hints name (`group`), if any."""
    hints = body.get("os:scheduler_hints", body.get("OS-SCH-HNT:scheduler_hints"))
    if hints is None:
        return None
    if not isinstance(hints, dict):
        raise BadRequest("Invalid input for field/attribute os:scheduler_hints.")
    group = hints.get("group")
    if group is None:
        return None
    if not isinstance(group, str) or not group:
        raise BadRequest("Invalid input for field/attribute group: a server group's id.")
    return group


# -------------------------------------------------------------- remote consoles

# Nova's enums for a remote console, each value by the microversion that added it
_CONSOLE_PROTOCOLS = (((2, 6), ("vnc", "spice", "serial", "rdp")), ((2, 8), ("mks",)))
_CONSOLE_TYPES = (
    ((2, 6), ("novnc", "xvpvnc", "spice-html5", "serial", "rdp-html5")),
    ((2, 8), ("webmks",)),
    ((2, 99), ("spice-direct",)),
)
# the legacy actions (to 2.5): the console types each accepts
LEGACY_CONSOLE_TYPES = {
    "os-getVNCConsole": ("novnc", "xvpvnc"),
    "os-getSPICEConsole": ("spice-html5",),
    "os-getRDPConsole": ("rdp-html5",),
    "os-getSerialConsole": ("serial",),
}


def _one_of(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        shown = repr(value)[:64]
        raise BadRequest(
            f"Invalid input for field/attribute {field}. Value: {shown}. "
            f"It is not one of {', '.join(allowed)}."
        )
    return value


def _only(data: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in data:
        if key not in keys:
            raise BadRequest(f"Additional properties are not allowed ('{key[:64]}' was unexpected)")


def remote_console_request(body: dict[str, Any], v: Version) -> tuple[str, str]:
    """(protocol, type) of `POST /servers/{id}/remote-consoles`, as Nova's schema checks it."""
    _only(body, ("remote_console",))
    console = object_member(body, "remote_console")
    _only(console, ("protocol", "type"))
    for field in ("protocol", "type"):
        if field not in console:
            raise BadRequest(
                f"Invalid input for field/attribute remote_console: '{field}' is a "
                "required property."
            )
    protocols = tuple(p for since, names in _CONSOLE_PROTOCOLS if v >= since for p in names)
    types = tuple(t for since, names in _CONSOLE_TYPES if v >= since for t in names)
    return _one_of(console["protocol"], "protocol", protocols), _one_of(
        console["type"], "type", types
    )


def legacy_console_type(body: dict[str, Any], action: str) -> str:
    """The `type` of a legacy console action (`{"os-getSerialConsole": {"type": ...}}`)."""
    _only(body, (action,))
    args = object_member(body, action)
    _only(args, ("type",))
    if "type" not in args:
        raise BadRequest(
            f"Invalid input for field/attribute {action}: 'type' is a required property."
        )
    return _one_of(args["type"], "type", LEGACY_CONSOLE_TYPES[action])
