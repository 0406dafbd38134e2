"""Nova's wire shapes: what the compute service's records look like at each microversion.

Pure functions from the service's dicts (and the public base URL) to response bodies,
so the shapes can be tested without HTTP. Nothing here reads a request or calls the
service.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from itertools import islice
from typing import Any

from souverain.common.clock import isotime
from souverain.common.jsoncodec import encode
from souverain.compute.service import QUOTA_RESOURCES

Version = tuple[int, int]  # a microversion, (2, 47)

MIN_VERSION: Version = (2, 1)
MAX_VERSION: Version = (2, 100)
# Server bodies encoded at a time in a list (see encode_items).
BODIES_PER_BATCH = 500


def version_text(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def legacy_version_doc(base: str) -> dict[str, Any]:
    """v2.0: the same API without microversions, listed first as Nova lists it."""
    return {
        "id": "v2.0",
        "status": "SUPPORTED",
        "version": "",
        "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base}/v2/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2"}
        ],
    }


def version_doc(base: str) -> dict[str, Any]:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": version_text(MAX_VERSION),
        "min_version": version_text(MIN_VERSION),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base}/v2.1/"}],
        "media-types": [
            {
                "base": "application/json",
                "type": "application/vnd.openstack.compute+json;version=2.1",
            }
        ],
    }


# -------------------------------------------------------------- flavors and keypairs


def flavor_links(base: str, flavor_id: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{base}/v2.1/flavors/{flavor_id}"},
        {"rel": "bookmark", "href": f"{base}/flavors/{flavor_id}"},
    ]


def flavor_body(base: str, f: dict[str, Any], v: Version, detail: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"id": f["id"], "name": f["name"], "links": flavor_links(base, f["id"])}
    if v >= (2, 55):
        body["description"] = f["description"]
    if not detail:
        return body
    body.update(
        {
            "ram": f["ram"],
            "disk": f["disk"],
            "vcpus": f["vcpus"],
            "swap": f["swap"] if (f["swap"] or v >= (2, 75)) else "",
            "OS-FLV-EXT-DATA:ephemeral": f["ephemeral"],
            "OS-FLV-DISABLED:disabled": f["disabled"],
            "rxtx_factor": f["rxtx_factor"],
            "os-flavor-access:is_public": f["is_public"],
        }
    )
    if v >= (2, 61):
        body["extra_specs"] = f["extra_specs"]
    return body


def keypair_body(
    k: dict[str, Any], v: Version, full: bool, created: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": k["name"],
        "public_key": k["public_key"],
        "fingerprint": k["fingerprint"],
    }
    if v >= (2, 2):
        body["type"] = k["type"]
    if full:
        body.update(
            {
                "user_id": k["user_id"],
                "id": k["id"],
                "created_at": isotime(k["created_at"], subsecond=True),
                "deleted": False,
                "deleted_at": None,
                "updated_at": None,
            }
        )
    if "private_key" in k:
        body["private_key"] = k["private_key"]
    if created:  # a create's answer names the owner, generated or imported
        body["user_id"] = k["user_id"]
    return body


# -------------------------------------------------------------- servers


def server_links(base: str, server_id: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{base}/v2.1/servers/{server_id}"},
        {"rel": "bookmark", "href": f"{base}/servers/{server_id}"},
    ]


def server_brief(base: str, server_id: str, name: str) -> dict[str, Any]:
    return {"id": server_id, "name": name, "links": server_links(base, server_id)}


def server_body(base: str, s: dict[str, Any], v: Version, is_admin: bool) -> dict[str, Any]:
    """A server as Nova shows it at `v`; admins see the host attributes too."""
    body = _server_core(base, s, v)
    if s["fault"]:
        fault = dict(s["fault"])
        if is_admin:
            fault.setdefault("details", "")
        body["fault"] = fault
    if is_admin:
        body.update(_server_admin_attributes(s, v))
    if v >= (2, 90) or (is_admin and v >= (2, 3)):
        body["OS-EXT-SRV-ATTR:hostname"] = s["hostname"]
    body.update(_server_later_attributes(s, v, is_admin))
    return body


# What a server's update and rebuild answers leave out before 2.75 (Nova's extensions).
NOT_IN_UPDATE_ANSWERS = (
    "security_groups",
    "OS-EXT-AZ:availability_zone",
    "config_drive",
    "key_name",
    "OS-SRV-USG:launched_at",
    "OS-SRV-USG:terminated_at",
    "OS-EXT-STS:task_state",
    "OS-EXT-STS:vm_state",
    "OS-EXT-STS:power_state",
    "os-extended-volumes:volumes_attached",
)


def updated_server_body(base: str, s: dict[str, Any], v: Version, is_admin: bool) -> dict[str, Any]:
    """A server as an update (PUT) or a rebuild answers it: from 2.75 as a GET shows it;
    before, without the extension attributes and with bare addresses."""
    if v >= (2, 75):
        return server_body(base, s, v, is_admin)
    core = _server_core(base, s, v)
    body = {key: value for key, value in core.items() if key not in NOT_IN_UPDATE_ANSWERS}
    body["addresses"] = {
        name: [{"addr": a["addr"], "version": a["version"]} for a in entries]
        for name, entries in s["addresses"].items()
    }
    if s["fault"]:
        body["fault"] = dict(s["fault"])
    body.update(_server_later_attributes(s, v, is_admin=False))
    return body


# Nova shows a server's progress only while it is in one of these statuses.
PROGRESS_STATUSES = frozenset(
    ["ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"]
)


def rebuilt_server_body(base: str, s: dict[str, Any], v: Version, is_admin: bool) -> dict[str, Any]:
    """A rebuild's answer: an update's shape, with the key pair from 2.54 and the user
    data (under its own name, never the admin attribute) from 2.57."""
    body = updated_server_body(base, s, v, is_admin)
    body.pop("OS-EXT-SRV-ATTR:user_data", None)
    if v >= (2, 54):
        body["key_name"] = s["key_name"]
    if v >= (2, 57):
        body["user_data"] = s["user_data"]
    return body


def _server_core(base: str, s: dict[str, Any], v: Version) -> dict[str, Any]:
    body = _server_fields(base, s, v)
    if s["status"] in PROGRESS_STATUSES:
        body["progress"] = 100 if s["status"] == "ACTIVE" else 0
    return body


def _server_fields(base: str, s: dict[str, Any], v: Version) -> dict[str, Any]:
    host_id = (
        hashlib.sha224((s["project_id"] + (s["host"] or "")).encode()).hexdigest()
        if s["host"]
        else ""
    )
    image = s["image_id"]
    return {
        "id": s["id"],
        "name": s["name"],
        "status": s["status"],
        "tenant_id": s["project_id"],
        "user_id": s["user_id"],
        "metadata": s["metadata"],
        "hostId": host_id,
        "image": (
            {"id": image, "links": [{"rel": "bookmark", "href": f"{base}/images/{image}"}]}
            if image
            else ""
        ),
        "flavor": _server_flavor(base, s["flavor"], v),
        "created": isotime(s["created_at"], subsecond=False),
        "updated": isotime(s["updated_at"], subsecond=False),
        "addresses": s["addresses"],
        "accessIPv4": s.get("access_ip_v4", ""),
        "accessIPv6": s.get("access_ip_v6", ""),
        "links": server_links(base, s["id"]),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": s["availability_zone"],
        "config_drive": "True" if s["config_drive"] else "",
        "key_name": s["key_name"],
        "OS-SRV-USG:launched_at": usage_time(s["launched_at"]),
        "OS-SRV-USG:terminated_at": usage_time(s["terminated_at"]),
        "OS-EXT-STS:task_state": s["task_state"],
        "OS-EXT-STS:vm_state": s["vm_state"],
        "OS-EXT-STS:power_state": s["power_state"],
        # Nova's: the groups of its ports, the key left out when there are none
        **(
            {"security_groups": [{"name": n} for n in s["security_groups"]]}
            if s.get("security_groups")
            else {}
        ),
        "os-extended-volumes:volumes_attached": [
            a if v >= (2, 3) else {"id": a["id"]} for a in s.get("volumes_attached", [])
        ],
    }


def _server_flavor(base: str, flavor: dict[str, Any], v: Version) -> dict[str, Any]:
    """The flavor embedded in a server from 2.47; a link to it before."""
    if v < (2, 47):
        return {"id": flavor["id"], "links": flavor_links(base, flavor["id"])}
    return {
        "vcpus": flavor["vcpus"],
        "ram": flavor["ram"],
        "disk": flavor["disk"],
        "ephemeral": flavor.get("ephemeral", 0),
        "swap": flavor.get("swap", 0),
        "original_name": flavor["name"],
        "extra_specs": flavor.get("extra_specs", {}),
    }


def _server_admin_attributes(s: dict[str, Any], v: Version) -> dict[str, Any]:
    body: dict[str, Any] = {
        "OS-EXT-SRV-ATTR:host": s["host"],
        "OS-EXT-SRV-ATTR:hypervisor_hostname": s["host"],
        "OS-EXT-SRV-ATTR:instance_name": f"instance-{s['id']}",
    }
    if v >= (2, 3):
        body["OS-EXT-SRV-ATTR:reservation_id"] = s["reservation_id"]
        body["OS-EXT-SRV-ATTR:launch_index"] = s["launch_index"]
        body["OS-EXT-SRV-ATTR:kernel_id"] = ""
        body["OS-EXT-SRV-ATTR:ramdisk_id"] = ""
        body["OS-EXT-SRV-ATTR:root_device_name"] = "/dev/vda"
        body["OS-EXT-SRV-ATTR:user_data"] = s["user_data"]
    return body


def _server_later_attributes(s: dict[str, Any], v: Version, is_admin: bool) -> dict[str, Any]:
    """What later microversions add, in the order Nova shows it."""
    body: dict[str, Any] = {}
    if v >= (2, 9):
        body["locked"] = s["locked"]
    if v >= (2, 16) and is_admin:
        body["host_status"] = s.get("host_status", "UP" if s["host"] else "")
    if v >= (2, 19):
        body["description"] = s["description"]
    if v >= (2, 26):
        body["tags"] = s["tags"]
    if v >= (2, 63):
        body["trusted_image_certificates"] = None
    if v >= (2, 71) and "server_groups" in s:  # a server's own document, not a list's
        body["server_groups"] = s["server_groups"]
    if v >= (2, 73):
        body["locked_reason"] = None
    if v >= (2, 96):
        body["pinned_availability_zone"] = None
    if v >= (2, 100):
        body["scheduler_hints"] = s.get("scheduler_hints", {})
    return body


def created_server(base: str, server_id: str, admin_pass: str | None) -> dict[str, Any]:
    """A create's answer: the only place the guest's administrator password is shown."""
    body: dict[str, Any] = {
        "id": server_id,
        "links": server_links(base, server_id),
        "OS-DCF:diskConfig": "MANUAL",
        "security_groups": [{"name": "default"}],
    }
    if admin_pass is not None:
        body["adminPass"] = admin_pass
    return body


def usage_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def encode_items(items: Iterable[dict[str, Any]]) -> bytes:
    """A JSON array of `items`, encoded a batch at a time (the same bytes as at once). A
    long list never holds all its bodies: the garbage collector walks every live object
    again and again while a list is built, so 5,000 bodies held at once made a list of
    5,000 cost 8 times one of 1,000."""
    parts = []
    pending = iter(items)
    while batch := list(islice(pending, BODIES_PER_BATCH)):
        parts.append(encode(batch)[1:-1])
    return b"[" + b",".join(parts) + b"]"


# -------------------------------------------------------------- a server's parts


def instance_action_body(
    a: dict[str, Any], v: Version, host: str | None, is_admin: bool = True
) -> dict[str, Any]:
    """An instance action; with its one event when `host` is given (the detail view):
    to admins always, to others from 2.51, as Nova's default policy shows them."""
    body: dict[str, Any] = {
        "action": a["action"],
        "instance_uuid": a["instance_uuid"],
        "request_id": a["request_id"],
        "user_id": a["user_id"],
        "project_id": a["project_id"],
        "start_time": isotime(a["start_time"]),
        "message": a["message"],
    }
    if v >= (2, 58):
        body["updated_at"] = isotime(a["updated_at"])
    if host is not None and (is_admin or v >= (2, 51)):
        body["events"] = [_action_event(a, v, host, is_admin)]
    return body


def _action_event(a: dict[str, Any], v: Version, host: str, is_admin: bool) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": f"compute_{a['action'].lower()}",
        "start_time": isotime(a["start_time"]),
        "finish_time": isotime(a["finish_time"]) if a["finish_time"] else None,
        "result": a["result"],
    }
    if is_admin:
        event["traceback"] = None
    if v >= (2, 62):
        if is_admin:
            event["host"] = host
        event["hostId"] = hashlib.sha224((a["project_id"] + host).encode()).hexdigest()
    if v >= (2, 84):
        event["details"] = a["message"] if a["result"] == "Error" else None
    return event


def interface_body(port: dict[str, Any], v: Version) -> dict[str, Any]:
    body: dict[str, Any] = {
        "port_state": port["status"],
        "fixed_ips": [
            {"subnet_id": f["subnet_id"], "ip_address": f["ip_address"]} for f in port["fixed_ips"]
        ],
        "port_id": port["id"],
        "net_id": port["network_id"],
        "mac_addr": port["mac_address"],
    }
    if v >= (2, 70):
        body["tag"] = None
    return body


def attachment_body(a: dict[str, Any], v: Version) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": a["volume_id"],
        "serverId": a["server_id"],
        "volumeId": a["volume_id"],
        "device": a["device"],
    }
    if v >= (2, 70):
        body["tag"] = None
    if v >= (2, 79):
        body["delete_on_termination"] = bool(a.get("delete_on_termination"))
    if v >= (2, 89):
        del body["id"]
        body["attachment_id"] = a.get("attachment_id")
        body["bdm_uuid"] = a.get("attachment_id")
    return body


# -------------------------------------------------------------- quotas, limits, the host

# Nova's quota keys this cloud does not enforce, with the values Nova shows for them;
# the network ones went with 2.36, the injected-file ones with 2.57.
_FIXED_QUOTAS_ALWAYS = {"server_groups": 10, "server_group_members": 10}
_FIXED_QUOTAS_BEFORE_2_57 = {
    "injected_files": 5,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
}
_FIXED_QUOTAS_BEFORE_2_36 = {
    "fixed_ips": -1,
    "floating_ips": 10,
    "security_groups": 10,
    "security_group_rules": 20,
}


def quota_values(limits: dict[str, int], v: Version) -> dict[str, int]:
    """Every key of Nova's quota set at version `v`: ours from `limits`, the rest fixed."""
    values = {key: limits[key] for key in QUOTA_RESOURCES}
    values.update(_FIXED_QUOTAS_ALWAYS)
    if v < (2, 57):
        values.update(_FIXED_QUOTAS_BEFORE_2_57)
    if v < (2, 36):
        values.update(_FIXED_QUOTAS_BEFORE_2_36)
    return values


def absolute_limits(quota: dict[str, int], used: dict[str, int], v: Version) -> dict[str, int]:
    absolute: dict[str, int] = {
        "maxTotalInstances": quota["instances"],
        "maxTotalCores": quota["cores"],
        "maxTotalRAMSize": quota["ram"],
        "maxServerMeta": quota["metadata_items"],
        "maxTotalKeypairs": quota["key_pairs"],
        "maxServerGroups": 10,
        "maxServerGroupMembers": 10,
        "totalInstancesUsed": used["instances"],
        "totalCoresUsed": used["cores"],
        "totalRAMUsed": used["ram"],
        "totalServerGroupsUsed": used["server_groups"],
    }
    if v < (2, 39):  # the image metadata proxy's limit, gone with the proxy
        absolute["maxImageMeta"] = quota["metadata_items"]
    if v < (2, 57):
        absolute.update({"maxPersonality": 5, "maxPersonalitySize": 10240})
    if v < (2, 36):
        absolute.update(
            {
                "maxSecurityGroups": 10,
                "maxSecurityGroupRules": 20,
                "maxTotalFloatingIps": 10,
                "totalSecurityGroupsUsed": 0,
                "totalFloatingIpsUsed": 0,
            }
        )
    return absolute


def hypervisor_body(h: dict[str, Any], v: Version, detail: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": h["id"] if v >= (2, 53) else h["index"],
        "hypervisor_hostname": h["hypervisor_hostname"],
        "state": h["state"],
        "status": h["status"],
    }
    if not detail:
        return body
    body.update(
        {
            "hypervisor_type": h["hypervisor_type"],
            "hypervisor_version": h["hypervisor_version"],
            "host_ip": h["host_ip"],
            "service": {
                "host": h["host"],
                "id": h["service_uuid"] if v >= (2, 53) else h["service_id"],
                "disabled_reason": h["disabled_reason"],
            },
        }
    )
    if v < (2, 88):
        cpu_info = h["cpu_info"]
        body.update(
            {
                "vcpus": h["vcpus"],
                "memory_mb": h["memory_mb"],
                "local_gb": h["local_gb"],
                "vcpus_used": h["vcpus_used"],
                "memory_mb_used": h["memory_mb_used"],
                "local_gb_used": h["local_gb_used"],
                "free_ram_mb": h["memory_mb"] - h["memory_mb_used"],
                "free_disk_gb": h["local_gb"] - h["local_gb_used"],
                "current_workload": 0,
                "running_vms": h["running_vms"],
                "disk_available_least": h["local_gb"] - h["local_gb_used"],
                # a JSON string before 2.28, an object from it
                "cpu_info": cpu_info if v >= (2, 28) else json.dumps(cpu_info),
            }
        )
    return body


HYPERVISOR_STATISTICS = (
    "vcpus",
    "memory_mb",
    "local_gb",
    "vcpus_used",
    "memory_mb_used",
    "local_gb_used",
    "free_ram_mb",
    "free_disk_gb",
    "current_workload",
    "running_vms",
    "disk_available_least",
)


def hypervisor_statistics(hosts: list[dict[str, Any]]) -> dict[str, Any]:
    """The sums over every hypervisor (Nova's, down ones included)."""
    bodies = [hypervisor_body(h, (2, 1), True) for h in hosts]
    return {"count": len(bodies), **{k: sum(b[k] for b in bodies) for k in HYPERVISOR_STATISTICS}}


def service_body(svc: dict[str, Any], v: Version) -> dict[str, Any]:
    """One of the cloud's services (a HostService as a dict) as os-services shows it."""
    seen = svc["updated_at"]
    body: dict[str, Any] = {
        "id": svc["index"] if v < (2, 53) else svc["uuid"],
        "binary": svc["binary"],
        "host": svc["host"],
        "zone": svc["zone"],
        "status": "disabled" if svc["disabled"] else "enabled",
        "state": "up" if svc["up"] else "down",
        "updated_at": isotime(seen),
        "disabled_reason": svc["disabled_reason"],
    }
    if v >= (2, 11):
        body["forced_down"] = svc["forced_down"]
    return body


def zones_detail(services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each zone with its hosts and their services (HostServices as dicts), the zones of
    compute hosts first, then `internal`; a zone is available while one of its services
    is enabled and up."""
    zones: dict[str, dict[str, dict[str, Any]]] = {}
    for svc in services:
        seen = svc["updated_at"]
        state = {
            "available": not svc["disabled"],
            "active": bool(svc["up"]),
            "updated_at": isotime(seen),
        }
        zones.setdefault(svc["zone"], {}).setdefault(svc["host"], {})[svc["binary"]] = state
    order = sorted(zones, key=lambda z: (z == "internal", z))
    return [
        {
            "zoneName": zone,
            "zoneState": {
                "available": any(
                    st["available"] and st["active"]
                    for host in zones[zone].values()
                    for st in host.values()
                )
            },
            "hosts": zones[zone],
        }
        for zone in order
    ]


def zones_summary(services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The zones users may name (those of compute hosts), without their hosts."""
    return [
        {**zone, "hosts": None} for zone in zones_detail(services) if zone["zoneName"] != "internal"
    ]


def diagnostics_body(d: dict[str, Any], v: Version) -> dict[str, Any]:
    """A Diagnosis (as a dict): Nova's common shape from 2.48, a libvirt-style flat
    document before."""
    disks, macs = d["disks"], d["macs"]
    if v < (2, 48):
        flat: dict[str, Any] = {"memory": d["memory_mib"] * 1024}
        for index, disk in enumerate(disks):
            name = "vd" + chr(ord("a") + index)
            flat[f"{name}_read"] = disk["read_bytes"]
            flat[f"{name}_read_req"] = disk["read_requests"]
            flat[f"{name}_write"] = disk["write_bytes"]
            flat[f"{name}_write_req"] = disk["write_requests"]
            flat[f"{name}_errors"] = disk["errors_count"]
        return flat
    return {
        "state": d["state"],
        "driver": "libvirt",  # the QEMU/KVM driver family, the closest name Nova knows
        "hypervisor": d["hypervisor"],
        "hypervisor_os": "linux",
        "uptime": d["uptime"],
        "config_drive": d["config_drive"],
        "num_cpus": d["vcpus"],
        "num_nics": len(macs),
        "num_disks": len(disks),
        "memory_details": {"maximum": d["memory_mib"], "used": None},
        "cpu_details": [{"id": i, "time": None, "utilisation": None} for i in range(d["vcpus"])],
        "nic_details": [_nic_stats(mac) for mac in macs],
        "disk_details": disks,
    }


def _nic_stats(mac: str) -> dict[str, Any]:
    counters = [
        f"{way}_{what}"
        for way in ("rx", "tx")
        for what in ("octets", "errors", "drop", "packets", "rate")
    ]
    return {"mac_address": mac, **dict.fromkeys(counters)}
