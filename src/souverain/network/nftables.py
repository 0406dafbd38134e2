"""nft, run: one JSON transaction in (a namespace of) the host, or a JSON listing out.

No rules here: the callers build the transactions. Calls block.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from souverain.network.dataplane import IP, DataplaneError

NFT = "nft"
NFT_TIMEOUT = 30.0


def run_nft(what: str, payload: dict[str, Any], namespace: str | None = None) -> None:
    """One atomic nft transaction, JSON on stdin; inside `namespace` when given."""
    argv = [NFT, "-j", "-f", "-"]
    if namespace is not None:
        argv = [IP, "netns", "exec", namespace, *argv]
    proc = subprocess.run(
        argv,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=NFT_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise DataplaneError(f"cannot {what}: {proc.stderr.strip() or proc.returncode}")


def nft_output(argv: list[str]) -> dict[str, Any]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=NFT_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise DataplaneError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    parsed: dict[str, Any] = json.loads(proc.stdout or "{}")
    return parsed
