"""`souverain agent`: run this machine as one hypervisor host of a cloud.

The agent holds no database credentials: it has its host's token (from `souverain host
enroll NAME` on a control-plane node) and the control plane's URL, watches what is
assigned to its host and makes the host match it (agent/runner.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from souverain.agent.client import InternalClient
from souverain.config import Settings
from souverain.tls import client_context

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"souverain agent: {message}", err=True)
    return typer.Exit(2)


def _driver(settings: Settings, client: InternalClient, name: str) -> Any:
    agent = settings.agent
    if agent.driver == "simulation":
        if not agent.allow_simulation:
            raise _fail(
                "agent.driver = 'simulation' runs no guest at all (it is for measuring the "
                "control plane); set agent.allow_simulation = true to run it anyway"
            )
        from souverain.agent.simulation import SimulationDriver

        return SimulationDriver(
            settings.data_dir / "agent",
            agent.simulated_vcpus,
            agent.simulated_memory_mib,
            agent.simulated_disk_gib,
        )
    from souverain.agent.qemu_host import QemuHostDriver
    from souverain.common.ceph import connection_from

    accelerator = settings.compute.accelerator
    return QemuHostDriver(
        settings.data_dir / "agent",
        client,
        name,
        settings.compute,
        accelerator=None if accelerator == "auto" else accelerator,
        network=_network(settings),
        ceph=connection_from(settings),  # root disks on RBD: the agent's own [ceph]
    )


def _network(settings: Settings) -> Any:
    """The host's data plane (bridges, taps, VXLAN, nftables): needs root; used only when
    the control plane sends a `network` plan (a cloud with the VXLAN overlay)."""
    if os.geteuid() != 0:
        return None
    from souverain.agent.network import AgentNetwork
    from souverain.network.host import host_network

    # the run dir is made on first use: a host of a cloud without the overlay gets none
    host = host_network(settings.data_dir, make_run_dir=False)
    return AgentNetwork(host, settings.agent.address or None)


def run_agent(settings: Settings) -> None:
    from souverain.agent.runner import Agent

    agent = settings.agent
    if not agent.api_url:
        raise _fail("agent.api_url is empty: set it to the control plane's URL")
    if agent.token_file is None:
        raise _fail("agent.token_file is empty: `souverain host enroll NAME` prints a token")
    try:
        token = agent.token_file.read_text().strip()
    except OSError as exc:
        raise _fail(f"cannot read the host token in {agent.token_file}: {exc.strerror}") from None
    name = agent.name or socket.gethostname()
    client = InternalClient(agent.api_url, name, token, context=client_context(agent.ca_file))
    driver = _driver(settings, client, name)
    moves = None
    if agent.driver == "qemu":
        from souverain.agent.migration import MigrationHalves

        moves = MigrationHalves(driver, client, agent.address or None)
    runner = Agent(
        client,
        driver,
        address=agent.address or None,
        roles=agent.roles,
        heartbeat_interval=agent.heartbeat_interval,
        wait=agent.watch_wait,
        console_interval=agent.console_interval,
        moves=moves,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("souverain.agent").info(
        "host %s (%s driver) watching %s", name, driver.kind, agent.api_url
    )
    runner.run(stop)
