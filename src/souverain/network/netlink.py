"""pyroute2, loaded on first use.

pyroute2 puts about 11 MiB of modules in every process that imports it. A serving
process that never touches a bridge, namespace or tap (one answering S3 or listing
servers) should not carry it, so the data plane reaches it through this module:
`netlink.IPRoute`, `netlink.NetNS`, `netlink.netns` and `netlink.NetlinkError` are
pyroute2's own, imported the first time one is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "IPRoute": "pyroute2",
    "NetNS": "pyroute2",
    "netns": "pyroute2",
    "NetlinkError": "pyroute2.netlink.exceptions",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later uses find it without coming here
    return value
