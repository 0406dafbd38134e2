"""A run of the suite leaves the host as it found it. The witness: the nftables tables
Souverain names (`souverain-<prefix>...`, three per cloud with a data plane, made beside
its bridge and namespaces) that exist after the last test existed before the first."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest


def souverain_tables() -> set[str]:
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return {line for line in listed.stdout.splitlines() if " souverain-" in line}


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found() -> Iterator[None]:
    if os.geteuid() != 0:  # without root no test touches the kernel
        yield
        return
    before = souverain_tables()
    yield
    left = sorted(souverain_tables() - before)
    assert not left, f"the tests left {len(left)} nftables table(s) behind: {left[:6]}"
