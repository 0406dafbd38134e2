"""`souverain host decommission`: a stopped cloud's kernel objects and run files go, found by
its prefix, and nothing of anyone else's.

A real `souverain serve` with its data plane makes its external network (bridge, address,
NAT table), a tenant network with a guest (bridge, tap, DHCP namespace, dnsmasq, firewall
tables) and a router (namespace, veths). The command refuses while the cloud runs; once it
is stopped, it removes exactly that: the link, namespace, nftables and process lists of the
host are what they were before the cloud started, and a second cloud's objects stay.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from souverain.server import host_network
from tests.e2e.conftest import (
    BASE_ENV,
    SOUVERAIN,
    Cloud,
    CloudFactory,
    ServerProcess,
    child_env,
    unique,
)
from tests.e2e.test_compute import create, wait_console, wait_status
from tests.host_cleanup import kill_guests, qemu_processes
from tests.public_net import public_network_env

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None,
    reason="bridges, taps, namespaces and nftables need root and the nft tool",
)


def _host(prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    """The host's links, namespaces, nftables tables and dnsmasq processes whose names
    carry one of `prefixes` (other tests' clouds come and go meanwhile)."""

    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    def ours(name: str) -> bool:
        return any(name.startswith((p, f"souverain-{p}")) for p in prefixes)

    links = {
        line.split(":")[1].strip().split("@")[0] for line in out("ip", "-o", "link").splitlines()
    }
    spaces = {line.split()[0] for line in out("ip", "netns", "list").splitlines() if line.split()}
    tables = {
        f"{t['table']['family']} {t['table']['name']}"
        for t in json.loads(out("nft", "-j", "list", "tables"))["nftables"]
        if "table" in t
    }
    dnsmasq = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            for p in prefixes:
                if Path(argv[0]).name == "dnsmasq" and any(f"{p}dhcp/" in a for a in argv):
                    dnsmasq.add(f"{p}:{entry.name}")
    return {
        "links": {n for n in links if ours(n)},
        "namespaces": {n for n in spaces if ours(n)},
        "tables": {t for t in tables if ours(t.split()[1])},
        "dnsmasq": dnsmasq,
    }


def _decommission(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SOUVERAIN, "host", "decommission", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def two_clouds(start_cloud: CloudFactory, tiny_image_file: Path) -> Iterator[tuple[Cloud, Cloud]]:
    first = start_cloud("decom", SOUVERAIN_IMAGE__TINY_IMAGE=str(tiny_image_file))
    other = start_cloud("decomother")
    try:
        yield first, other
    finally:
        for cloud in (first, other):
            kill_guests(cloud.server.data_dir)


def test_decommission_removes_this_cloud_and_nothing_else(two_clouds: tuple[Cloud, Cloud]) -> None:
    cloud, other = two_clouds
    mine = host_network(cloud.server.data_dir, make_run_dir=False)
    theirs = host_network(other.server.data_dir, make_run_dir=False)
    prefixes = (mine.dataplane.prefix, theirs.dataplane.prefix)
    tenant = cloud.make_tenant("decom")
    conn = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    net = conn.network.create_network(name=unique("decomnet"))
    subnet = conn.network.create_subnet(network_id=net.id, cidr="10.49.0.0/24", ip_version=4)
    router = conn.network.create_router(name=unique("edge"))
    public = conn.network.find_network("public", ignore_missing=False)
    conn.network.update_router(router, external_gateway_info={"network_id": public.id})
    conn.network.add_interface_to_router(router, subnet=subnet.id)
    server = create(conn, unique("decomvm"), networks=[{"uuid": net.id}])
    wait_status(conn, server.id, "ACTIVE")
    wait_console(conn, server.id, "souverain-guest: ready")

    made = _host(prefixes)
    for kind in ("links", "namespaces", "tables", "dnsmasq"):
        assert any(mine.dataplane.prefix in n for n in made[kind]), (kind, made[kind])
    assert mine.dataplane.run_dir.is_dir()
    theirs_before = {k: {n for n in v if theirs.dataplane.prefix in n} for k, v in made.items()}
    assert theirs_before["links"] and theirs_before["tables"], "the other cloud made its own"

    # while the cloud runs, the command refuses and removes nothing
    refused = _decommission(cloud.server.data_dir)
    assert refused.returncode == 1, refused
    assert "still runs here" in refused.stderr and "stop `souverain serve`" in refused.stderr
    assert _host(prefixes) == made

    # stopped (its guest too: guests outlive the server by design), then decommissioned
    assert cloud.server.stop() == 0
    for pid in qemu_processes(cloud.server.data_dir):
        os.kill(pid, signal.SIGKILL)
    done = _decommission(cloud.server.data_dir)
    assert done.returncode == 0, done
    assert f"prefix {mine.dataplane.prefix}" in done.stdout
    after = _host(prefixes)
    for kind, names in after.items():
        assert not {n for n in names if mine.dataplane.prefix in n}, (kind, names)
        assert {n for n in names if theirs.dataplane.prefix in n} == theirs_before[kind], kind
    assert not mine.dataplane.run_dir.exists()
    assert theirs.dataplane.run_dir.is_dir()
    # again: nothing to do, and still fine
    assert _decommission(cloud.server.data_dir).returncode == 0


def test_a_start_refuses_an_external_network_another_link_holds(tmp_path: Path) -> None:
    env = public_network_env()
    gateway = env["SOUVERAIN_NETWORK__PUBLIC_GATEWAY"]
    decoy = f"sdecoy{os.getpid() % 1000}"  # a bridge of no cloud
    subprocess.run(["ip", "link", "add", decoy, "type", "bridge"], check=True)
    data_dir = tmp_path / "refused" / "data"
    try:
        subprocess.run(["ip", "addr", "add", f"{gateway}/24", "dev", decoy], check=True)
        server = ServerProcess(tmp_path / "refused", child_env(**{**BASE_ENV, **env}))
        with pytest.raises(RuntimeError) as refused:
            server.start()
        said = str(refused.value)
        assert f"already on {decoy}" in said and "SOUVERAIN_NETWORK__PUBLIC_CIDR" in said, said
        assert "Traceback" not in said, "a refusal, not a crash"
        prefix = host_network(data_dir, make_run_dir=False).dataplane.prefix
        left = _host((prefix,))
        assert not left["links"] and not left["tables"], left  # refused before making any
    finally:
        subprocess.run(["ip", "link", "del", decoy], check=False)
        kill_guests(data_dir)
