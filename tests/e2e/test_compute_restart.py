"""Guests outlive the control plane: kill -9 `souverain serve`, start it again, nothing lost."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Cloud, CloudFactory, unique
from tests.e2e.test_compute import create, wait_console, wait_status
from tests.host_cleanup import kill_guests, qemu_processes


def test_guests_survive_kill_9_and_are_adopted(
    start_cloud: CloudFactory, tiny_image_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = {
        "SOUVERAIN_IMAGE__TINY_IMAGE": str(tiny_image_file),
        "SOUVERAIN_COMPUTE__SYNC_INTERVAL": "1",
    }
    first = start_cloud("restart", **env)
    data_dir = first.server.data_dir
    try:
        tenant = first.make_tenant("restart")
        conn = first.connect(tenant.user_name, tenant.password, tenant.project_name)
        ticker = "#!/bin/sh\nwhile true; do echo tick-$(cat /proc/uptime | cut -d' ' -f1); sleep 1; done &\n"
        servers = [create(conn, unique(f"survivor{i}"), ticker) for i in range(2)]
        for server in servers:
            wait_status(conn, server.id, "ACTIVE")
            wait_console(conn, server.id, "tick-")
        pids = qemu_processes(data_dir)
        assert len(pids) == 2

        assert first.server.proc is not None
        first.server.proc.send_signal(signal.SIGKILL)
        first.server.proc.wait()
        time.sleep(1)
        assert qemu_processes(data_dir).keys() == pids.keys(), "a guest died with the API"

        second = Cloud.start(first.workdir, **env)
        conn = second.connect(tenant.user_name, tenant.password, tenant.project_name)
        for server in servers:
            again = wait_status(conn, server.id, "ACTIVE")
            assert again.power_state == 1
            before = wait_console(conn, server.id, "tick-").count("tick-")
            wait_console(conn, server.id, "tick-", count=before + 2, timeout=30)
        assert qemu_processes(data_dir).keys() == pids.keys(), "a guest was restarted"
        for server in servers:
            conn.compute.delete_server(server)
        for server in servers:
            conn.compute.wait_for_delete(server, wait=60)
        assert qemu_processes(data_dir) == {}
        second.stop_and_check()
    finally:
        kill_guests(data_dir)
