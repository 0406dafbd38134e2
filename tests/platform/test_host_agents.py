"""A cloud of agent hosts, with real processes: an API node that runs no guest itself and
two `souverain agent` processes (simulation driver: they run no QEMU, so the control plane
is what is tried here), driven by openstacksdk as a customer and an admin would.

Servers land on the agents' hosts, anti-affinity keeps a group's servers apart and refuses
a third on two hosts, stop/start/delete end with the agents' reports; a killed agent's
servers show host_status UNKNOWN, a delete there ends at once, and the agent, back,
adopts what is still assigned to it and removes what is not."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openstack
import openstack.connection
import openstack.exceptions
import pytest

from tests.host_cleanup import kill_guests
from tests.platform.conftest import ADMIN_PASSWORD, SOUVERAIN, Server, ServerFactory, server_env
from tests.vm.guest_support import TINY_IMAGE, build_tiny_image, missing_requirements

pytestmark = pytest.mark.e2e
OPENSTACK = str(Path(SOUVERAIN).with_name("openstack"))
DOWN_AFTER = 3


class AgentProcess:
    def __init__(self, name: str, root: Path, api: Server, driver: str = "simulation") -> None:
        self.name = name
        self.root = root
        self.token_file = root / "token"
        root.mkdir(parents=True, exist_ok=True)
        enrolled = subprocess.run(
            [
                *(SOUVERAIN, "host", "enroll", name),
                *("--data-dir", str(api.data_dir), "--token-file", str(self.token_file)),
            ],
            env=api.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert enrolled.returncode == 0, enrolled.stderr
        assert oct(self.token_file.stat().st_mode & 0o777) == "0o600"
        self.env = server_env(
            SOUVERAIN_AGENT__API_URL=api.base,
            SOUVERAIN_AGENT__NAME=name,
            SOUVERAIN_AGENT__TOKEN_FILE=str(self.token_file),
            SOUVERAIN_AGENT__DRIVER=driver,
            SOUVERAIN_AGENT__ALLOW_SIMULATION="true",
            SOUVERAIN_AGENT__HEARTBEAT_INTERVAL="0.5",
            SOUVERAIN_AGENT__WATCH_WAIT="5",
            SOUVERAIN_AGENT__CONSOLE_INTERVAL="0.5",
            SOUVERAIN_AGENT__SIMULATED_VCPUS="8",
            SOUVERAIN_AGENT__SIMULATED_MEMORY_MIB="8192",
            SOUVERAIN_AGENT__SIMULATED_DISK_GIB="100",
        )
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with (self.root / "agent.log").open("a") as log:  # read when a test fails
            self.proc = subprocess.Popen(
                [SOUVERAIN, "agent", "--data-dir", str(self.root / "data")],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def instance(self, server_id: str) -> Path:
        return self.root / "data" / "agent" / "compute" / "instances" / server_id

    def guests(self) -> dict[str, str]:
        path = self.root / "data" / "agent" / "simulated-guests.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}


@pytest.fixture
def api(make_server: ServerFactory) -> Server:
    return make_server(
        SOUVERAIN_COMPUTE__LOCAL_HOST="false",
        SOUVERAIN_COMPUTE__SERVICE_DOWN_TIME=str(DOWN_AFTER),
        SOUVERAIN_COMPUTE__HOST_DEAD_AFTER="600",
        SOUVERAIN_NETWORK__DATAPLANE="false",
    ).start()


@contextlib.contextmanager
def qemu_hosts(
    api: Server, root: Path, env: dict[str, str] | None = None
) -> Iterator[dict[str, AgentProcess]]:
    """Agent hosts hva and hvb running real QEMU guests, their underlay address loopback,
    with `env` added to each; killed with their guests afterwards."""
    missing = missing_requirements()
    if missing:
        pytest.fail(missing)
    build_tiny_image()
    made: dict[str, AgentProcess] = {}
    try:
        for name in ("hva", "hvb"):
            agent = AgentProcess(name, root / name, api, driver="qemu")
            agent.env["SOUVERAIN_AGENT__ADDRESS"] = "127.0.0.1"
            agent.env.update(env or {})
            made[name] = agent
            agent.start()
        yield made
    finally:
        for agent in made.values():
            agent.kill()
            kill_guests(agent.root / "data" / "agent")


@pytest.fixture
def agents(api: Server, tmp_path: Path) -> Iterator[dict[str, AgentProcess]]:
    made = {name: AgentProcess(name, tmp_path / name, api) for name in ("hv1", "hv2")}
    for agent in made.values():
        agent.start()
    yield made
    for agent in made.values():
        agent.kill()


def _admin(api: Server) -> openstack.connection.Connection:
    return openstack.connect(
        auth_url=api.auth_url,
        username="admin",
        password=ADMIN_PASSWORD,
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
        load_yaml_config=False,
        load_envvars=False,
        compute_api_version="2.90",
    )


def _until(check: Callable[[], Any], within: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {within} s: {what}")


def _up(conn: openstack.connection.Connection) -> set[str]:
    """The hosts whose agents have reported lately (os-hypervisors' state)."""
    return {h.name for h in conn.compute.hypervisors(details=True) if h.state == "up"}


def _server(conn: openstack.connection.Connection, server_id: str) -> Any:
    return conn.compute.get_server(server_id)


def _status(conn: openstack.connection.Connection, server_id: str, want: str) -> Any:
    seen: list[Any] = []

    def reached() -> Any:
        seen[:] = [_server(conn, server_id)]
        return seen[0].status == want and seen[0]

    try:
        return _until(reached, what=f"server {server_id} {want}")
    except AssertionError as exc:
        last = seen[0] if seen else None
        detail = f"{last.status} {last.task_state} {last.fault}" if last else "never read"
        raise AssertionError(f"{exc} (last: {detail})") from None


def test_servers_run_on_agent_hosts_and_follow_their_agents(
    api: Server, agents: dict[str, AgentProcess]
) -> None:
    conn = _admin(api)
    _until(lambda: _up(conn) >= {"hv1", "hv2"}, what="both agents reported")
    image = conn.image.create_image(
        name="sim", data=b"\0" * 65536, disk_format="raw", container_format="bare", wait=True
    )
    flavor = conn.compute.create_flavor(name="sim.small", ram=512, vcpus=1, disk=1)
    group = conn.compute.create_server_group(name="apart", policy="anti-affinity")

    def boot(name: str) -> Any:
        return conn.compute.create_server(
            name=name,
            image_id=image.id,
            flavor_id=flavor.id,
            networks="none",
            scheduler_hints={"group": group.id},
        )

    first, second = boot("web-1"), boot("web-2")
    first, second = _status(conn, first.id, "ACTIVE"), _status(conn, second.id, "ACTIVE")
    assert {first.compute_host, second.compute_host} == {"hv1", "hv2"}
    assert first.host_status == "UP"
    on = {first.compute_host: first, second.compute_host: second}
    assert agents["hv1"].guests() == {on["hv1"].id: "running"}
    third = _status(conn, boot("web-3").id, "ERROR")
    assert "No valid host was found" in third.fault["message"]

    solo = conn.compute.create_server(
        name="solo",
        image_id=image.id,
        flavor_id=flavor.id,
        networks="none",
        availability_zone="nova:hv1",  # an admin's forced host
    )
    solo = _status(conn, solo.id, "ACTIVE")
    assert solo.compute_host == "hv1"

    conn.compute.stop_server(on["hv2"].id)
    _status(conn, on["hv2"].id, "SHUTOFF")
    assert agents["hv2"].guests() == {on["hv2"].id: "stopped"}
    conn.compute.start_server(on["hv2"].id)
    _status(conn, on["hv2"].id, "ACTIVE")
    conn.compute.reboot_server(on["hv2"].id, "SOFT")
    _status(conn, on["hv2"].id, "ACTIVE")
    actions = [a.action for a in conn.compute.server_actions(on["hv2"].id)]
    assert actions[0] == "reboot"

    # an agent dies: its guest keeps its state, the API says it does not know
    agents["hv1"].kill()
    _until(
        lambda: _server(conn, on["hv1"].id).host_status == "UNKNOWN",
        within=DOWN_AFTER + 10,
        what="host_status UNKNOWN",
    )
    assert _server(conn, on["hv2"].id).host_status == "UP"
    extra = conn.compute.create_server(
        name="web-4", image_id=image.id, flavor_id=flavor.id, networks="none"
    )
    extra = _status(conn, extra.id, "ACTIVE")
    assert extra.compute_host == "hv2"  # a host not heard from takes nothing new
    # hv1 is gone for good: its servers are evacuated, rebuilt on hv2 from their image,
    # except the group's member, whose anti-affinity hv2 would break
    with pytest.raises(openstack.exceptions.BadRequestException, match="No valid host"):
        conn.compute.evacuate_server(on["hv1"].id)
    assert _server(conn, on["hv1"].id).compute_host == "hv1"
    evacuated = subprocess.run(  # as an operator types it
        [
            *(OPENSTACK, "--os-cloud", "souverain", "--os-compute-api-version", "2.90"),
            *("server", "evacuate", solo.id),
        ],
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(api.data_dir / "clouds.yaml")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert evacuated.returncode == 0, evacuated.stderr
    solo = _status(conn, solo.id, "ACTIVE")
    assert solo.compute_host == "hv2" and solo.host_status == "UP"
    assert agents["hv2"].guests()[solo.id] == "running"
    conn.compute.delete_server(on["hv1"].id)  # ends at once: nobody is there to do it
    _until(lambda: conn.compute.find_server(on["hv1"].id) is None, what="local delete")

    # back: it reports in and removes the guest nothing assigns to it any more
    agents["hv1"].start()
    _until(lambda: agents["hv1"].guests() == {}, what="hv1 removed its deleted and moved guests")
    assert agents["hv2"].guests()[solo.id] == "running"
    for server_id in (on["hv2"].id, extra.id, third.id, solo.id):
        conn.compute.delete_server(server_id)
    _until(lambda: agents["hv2"].guests() == {}, what="hv2 removed its guests")
    _until(lambda: not list(conn.compute.servers()), what="every server gone")
    assert os.environ.get("SOUVERAIN_AGENT__DRIVER") is None  # the test's env stayed its own


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.one_backend(
    "postgresql"
)  # a guest's life on its host: the database is not its subject
def test_a_real_guest_on_an_agent_host_outlives_its_agent(api: Server, tmp_path: Path) -> None:
    missing = missing_requirements()
    if missing:
        pytest.skip(missing)
    build_tiny_image()
    agent = AgentProcess("hvq", tmp_path / "hvq", api, driver="qemu")
    agent.start()
    try:
        _one_guest_through_its_agents_life(api, agent)
    finally:
        agent.kill()
        kill_guests(agent.root / "data" / "agent")


def _one_guest_through_its_agents_life(api: Server, agent: AgentProcess) -> None:
    conn = _admin(api)
    _until(lambda: "hvq" in _up(conn), what="the agent reported")
    image = conn.image.create_image(
        name="tiny",
        data=TINY_IMAGE.read_bytes(),
        disk_format="qcow2",
        container_format="bare",
        wait=True,
    )
    flavor = conn.compute.create_flavor(name="tiny.agent", ram=128, vcpus=1, disk=1)
    marker = f"agent-guest-{secrets.token_hex(4)}"
    script = f"#!/bin/sh\necho souverain-guest: {marker}\n"
    server = conn.compute.create_server(
        name="on-agent",
        image_id=image.id,
        flavor_id=flavor.id,
        networks="none",
        user_data=base64.b64encode(script.encode()).decode(),
    )
    server = _status(conn, server.id, "ACTIVE")
    assert server.compute_host == "hvq"
    console = agent.instance(server.id) / "console.log"
    _until(
        lambda: console.exists() and marker in console.read_text(errors="replace"),
        within=120,
        what="the guest ran its user data",
    )
    pid = int((agent.instance(server.id) / "qemu.pid").read_text())
    # its console, as the agent sends it: what `openstack console log show` reads
    _until(
        lambda: marker in conn.compute.get_server_console_output(server.id)["output"],
        what="the guest's console through the API",
    )
    last = conn.compute.get_server_console_output(server.id, length=1)["output"]
    assert last.count("\n") <= 1

    agent.kill()  # the guest does not notice
    _until(
        lambda: _server(conn, server.id).host_status == "UNKNOWN",
        within=DOWN_AFTER + 10,
        what="host_status UNKNOWN",
    )
    assert _alive(pid)
    agent.start()  # adopts the guest: the same QEMU, not a new one
    _until(lambda: _server(conn, server.id).host_status == "UP", what="host_status UP")
    time.sleep(2)
    assert _alive(pid) and int((agent.instance(server.id) / "qemu.pid").read_text()) == pid

    conn.compute.reboot_server(server.id, "HARD")  # a new QEMU, the same disk
    _status(conn, server.id, "ACTIVE")
    old, pid = pid, int((agent.instance(server.id) / "qemu.pid").read_text())
    assert pid != old
    _until(lambda: not _alive(old), what="the old QEMU gone")
    assert _alive(pid)

    conn.compute.rebuild_server(server.id, image=image.id, name="rebuilt")  # a new disk
    _status(conn, server.id, "ACTIVE")
    old, pid = pid, int((agent.instance(server.id) / "qemu.pid").read_text())
    assert pid != old and _server(conn, server.id).name == "rebuilt"
    _until(lambda: not _alive(old), what="the old QEMU gone")

    conn.compute.pause_server(server.id)  # QEMU stopped in place, then going on
    _status(conn, server.id, "PAUSED")
    conn.compute.unpause_server(server.id)
    _status(conn, server.id, "ACTIVE")
    assert _alive(pid) and int((agent.instance(server.id) / "qemu.pid").read_text()) == pid
    conn.compute.suspend_server(server.id)  # its memory saved on the host, QEMU gone
    _status(conn, server.id, "SUSPENDED")
    _until(lambda: not _alive(pid), what="QEMU gone once suspended")
    assert (agent.instance(server.id) / "suspended.state").exists()
    conn.compute.resume_server(server.id)
    _status(conn, server.id, "ACTIVE")
    pid = int((agent.instance(server.id) / "qemu.pid").read_text())
    assert not (agent.instance(server.id) / "suspended.state").exists()

    conn.compute.stop_server(server.id)
    _status(conn, server.id, "SHUTOFF")
    _until(lambda: not _alive(pid), what="QEMU stopped")
    conn.compute.start_server(server.id)
    _status(conn, server.id, "ACTIVE")
    conn.compute.delete_server(server.id)
    _until(lambda: conn.compute.find_server(server.id) is None, what="server deleted")
    _until(lambda: not agent.instance(server.id).exists(), what="its files removed")
