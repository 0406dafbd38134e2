"""A serving process imports what serving needs: what only set-up or host work needs
(migrations, netlink, ISO building) is imported where it is used, so that every
forked worker does not carry its memory (bench/s3 holds the RSS of the whole server)."""

from __future__ import annotations

import subprocess
import sys

SET_UP_ONLY = ("alembic", "pyroute2", "pycdlib")


def test_the_serving_modules_leave_set_up_and_host_libraries_unimported() -> None:
    probe = (
        "import sys, souverain.serving, souverain.server, souverain.app; "
        f"print(','.join(m for m in {SET_UP_ONLY!r} if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "", f"imported by the serving modules: {found.stdout}"


def test_the_lazy_netlink_names_are_pyroute2s_own() -> None:
    from pyroute2 import IPRoute  # type: ignore[import-untyped]
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    from souverain.network import netlink

    assert netlink.IPRoute is IPRoute
    assert netlink.NetlinkError is NetlinkError
