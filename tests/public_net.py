"""A distinct external network per test cloud: several clouds share one host in a test run,
and each puts its `public` gateway address on a bridge of its own (a start refuses a range
another link already holds)."""

from __future__ import annotations

import itertools
import secrets
import subprocess

# 172.25.0.0/24 .. 172.30.255.0/24: clear of the default 172.24.4.0/24 and of guest CIDRs
_NEXT = itertools.count(secrets.randbelow(6 * 256))


def _held_ranges() -> set[str]:
    """The "a.b.c" of every IPv4 address on a link of this host now."""
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False)
    held = set()
    for line in out.stdout.splitlines():
        words = line.split()
        if "inet" in words:
            address = words[words.index("inet") + 1].split("/")[0]
            held.add(address.rsplit(".", 1)[0])
    return held


def public_network_env() -> dict[str, str]:
    held = _held_ranges()
    for _ in range(6 * 256):
        n = next(_NEXT) % (6 * 256)
        prefix = f"172.{25 + n // 256}.{n % 256}"
        if prefix not in held:
            break
    return {
        "SOUVERAIN_NETWORK__PUBLIC_CIDR": f"{prefix}.0/24",
        "SOUVERAIN_NETWORK__PUBLIC_GATEWAY": f"{prefix}.1",
        "SOUVERAIN_NETWORK__PUBLIC_POOL_START": f"{prefix}.10",
        "SOUVERAIN_NETWORK__PUBLIC_POOL_END": f"{prefix}.250",
    }
