"""A port's extra DHCP options (Neutron's extra_dhcp_opt): which options a tenant may set,
what their values may be, how an update merges, and the lines dnsmasq reads.

Pure logic. Every name and value ends up in dnsmasq's options file, which dnsmasq of a
(possibly shared) network re-reads on SIGHUP: so only options dnsmasq knows, with values
of the option's own type in a narrow character set, ever get there. An option dnsmasq
would refuse could stop DHCP for every port of the network.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from souverain.network.ipam import InvalidInput

MAX_OPTIONS = 16
MAX_VALUE = 255
TEXT_RE = re.compile(r"^[A-Za-z0-9._:/@+=-]{1,255}$")
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
DOMAIN_RE = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*$")
# dnsmasq's name -> (DHCPv4 option code, kind of value)
OPTIONS: dict[str, tuple[int, str]] = {
    "router": (3, "addresses"),
    "dns-server": (6, "addresses"),
    "log-server": (7, "addresses"),
    "domain-name": (15, "domain"),
    "root-path": (17, "text"),
    "mtu": (26, "mtu"),
    "ntp-server": (42, "addresses"),
    "smtp-server": (69, "addresses"),
    "tftp-server": (66, "text"),
    "bootfile-name": (67, "text"),
    "tzdb-timezone": (101, "text"),
    "domain-search": (119, "domains"),
    "tftp-server-address": (150, "addresses"),
    "server-ip-address": (255, "address"),
}
BY_CODE = {str(code): name for name, (code, _) in OPTIONS.items()}


def _invalid(reason: str) -> InvalidInput:
    return InvalidInput(f"Invalid input for extra_dhcp_opts. Reason: {reason}")


def option_name(raw: Any) -> str:
    """dnsmasq's name for an option given by name or by its number."""
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise _invalid("opt_name is a string.")
    name = BY_CODE.get(str(raw), str(raw).lower())
    if name not in OPTIONS:
        raise _invalid(
            f"'{str(raw)[:32]}' is not an option offered here; offered: "
            f"{', '.join(sorted(OPTIONS))}."
        )
    return name


def check_value(name: str, raw: Any) -> str:
    """The value as dnsmasq reads it, of the option's own kind, else refused."""
    if not isinstance(raw, str | int) or isinstance(raw, bool) or len(str(raw)) > MAX_VALUE:
        raise _invalid(f"opt_value of {name} is a string of at most {MAX_VALUE} characters.")
    value, kind = str(raw).strip(), OPTIONS[name][1]
    parts = [p.strip() for p in value.split(",")]
    if kind in ("address", "addresses"):
        try:
            if kind == "address" and len(parts) != 1:
                raise ValueError(value)
            return ",".join(str(ipaddress.IPv4Address(p)) for p in parts)
        except ValueError:
            raise _invalid(f"opt_value of {name} must be IPv4 addresses: '{value[:64]}'.") from None
    if kind == "mtu" and value.isdigit() and 68 <= int(value) <= 65535:
        return str(int(value))
    if kind == "domain" and DOMAIN_RE.match(value):
        return value
    if kind == "domains" and parts and all(DOMAIN_RE.match(p) for p in parts):
        return ",".join(parts)
    if kind == "text" and TEXT_RE.match(value):
        return value
    raise _invalid(f"opt_value '{value[:64]}' is not a valid {name}.")


def check_options(value: Any) -> list[dict[str, Any]]:
    """A body's `extra_dhcp_opts`: each {opt_name, opt_value, ip_version (4 or 6)};
    `opt_value` null means: remove the option (on an update)."""
    if not isinstance(value, list) or len(value) > MAX_OPTIONS:
        raise _invalid(f"a list of at most {MAX_OPTIONS} options is expected.")
    out: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, dict) or "opt_name" not in item:
            raise _invalid("each option is {opt_name, opt_value, ip_version}.")
        if not set(item) <= {"opt_name", "opt_value", "ip_version"}:
            raise _invalid("each option is {opt_name, opt_value, ip_version}.")
        version = item.get("ip_version", 4)
        if str(version) not in ("4", "6"):
            raise _invalid(f"ip_version '{str(version)[:8]}' is not 4 or 6.")
        name = option_name(item["opt_name"])
        raw = item.get("opt_value")
        opt_value = None if raw is None else check_value(name, raw)
        key = (str(item["opt_name"]), int(version))  # shown as given, as Neutron does
        if any((o["opt_name"], o["ip_version"]) == key for o in out):
            raise _invalid(f"option {name} is given twice.")
        out.append({"opt_name": key[0], "opt_value": opt_value, "ip_version": key[1]})
    return out


def merged(
    current: Sequence[dict[str, Any]], changes: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Neutron's update: an option named again is replaced, or removed by a null value;
    options not named stay."""
    out = [dict(o) for o in current]
    for change in changes:
        key = (change["opt_name"], change["ip_version"])
        out = [o for o in out if (o["opt_name"], o["ip_version"]) != key]
        if change["opt_value"] is not None:
            out.append(dict(change))
    if len(out) > MAX_OPTIONS:
        raise _invalid(f"a port holds at most {MAX_OPTIONS} options.")
    return out


def dnsmasq_lines(tag: str, options: Sequence[tuple[str, str]]) -> str:
    """The options file lines giving `options` (name, value) to hosts tagged `tag`;
    checked again here, as the last door before dnsmasq."""
    lines = []
    for name, value in options:
        known = option_name(name)
        lines.append(f"tag:{tag},option:{known},{check_value(known, value)}\n")
    return "".join(lines)
