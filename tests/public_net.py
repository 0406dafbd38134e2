"""A distinct external network per test cloud: several clouds share one host in a test run,
and each puts its `public` gateway address on a bridge of its own."""

from __future__ import annotations

import itertools
import secrets

# 172.25.0.0/24 .. 172.30.255.0/24: clear of the default 172.24.4.0/24 and of guest CIDRs
_NEXT = itertools.count(secrets.randbelow(6 * 256))


def public_network_env() -> dict[str, str]:
    n = next(_NEXT) % (6 * 256)
    prefix = f"172.{25 + n // 256}.{n % 256}"
    return {
        "SOUVERAIN_NETWORK__PUBLIC_CIDR": f"{prefix}.0/24",
        "SOUVERAIN_NETWORK__PUBLIC_GATEWAY": f"{prefix}.1",
        "SOUVERAIN_NETWORK__PUBLIC_POOL_START": f"{prefix}.10",
        "SOUVERAIN_NETWORK__PUBLIC_POOL_END": f"{prefix}.250",
    }
