"""The agent's loop: watch what is assigned to this host, make the host match, report.

Level-triggered: each answer of the watch is the host's whole assignment, so a lost
wake-up, a restart of the agent or of any API node costs at most one watch period
(`wait`); guests found on the host that nothing assigns are removed, and a guest the
agent finds already as wanted is reported as such (that ends a task a restart cut short).
The heartbeat runs on its own thread: a slow reconcile never makes the host look down.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol, cast

from souverain.agent.client import ControlPlaneError, InternalClient
from souverain.agent.console import Consoles, ConsoleSender

log = logging.getLogger("souverain.agent")


class HostDriver(Protocol):
    kind: str

    def guests(self) -> dict[str, str]: ...

    def converge(self, server: dict[str, Any]) -> str: ...

    def remove(self, server_id: str) -> None: ...

    def apply_network(self, assignment: dict[str, Any]) -> None:
        """The host's data plane as the assignment's `network` says (before any guest)."""
        ...

    def report(self) -> dict[str, Any]: ...


class MoveHalves(Protocol):
    def handle(self, server: dict[str, Any]) -> bool: ...


class DriverFailure(Exception):
    """The host could not make a guest what was asked; reported as the server's error."""


class Agent:
    def __init__(
        self,
        client: InternalClient,
        driver: HostDriver,
        *,
        address: str | None,
        roles: str = "compute",
        heartbeat_interval: float = 10.0,
        wait: int = 30,
        console_interval: float = 5.0,
        moves: MoveHalves | None = None,
    ) -> None:
        self.client = client
        self.driver = driver
        self.address = address
        self.roles = roles
        self.heartbeat_interval = heartbeat_interval
        self.wait = wait
        self.console_interval = console_interval
        self.revision = -1
        # this host's part in moves between hosts (agent/migration.py); None: it takes none
        self.moves = moves
        self._reported: dict[str, str] = {}

    def run(self, stop: threading.Event) -> None:
        beat = threading.Thread(target=self._beat, args=(stop,), name="heartbeat", daemon=True)
        beat.start()
        if hasattr(self.driver, "console_stamp"):  # a driver whose guests have consoles
            consoles = ConsoleSender(self.client, cast(Consoles, self.driver))
            threading.Thread(
                target=consoles.run,
                args=(stop, self.console_interval),
                name="consoles",
                daemon=True,
            ).start()
        backoff = 1.0
        while not stop.is_set():
            try:
                self.step()
                backoff = 1.0
            except ControlPlaneError as exc:
                log.warning("the control plane did not answer (%s); again in %.0f s", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        beat.join(timeout=self.heartbeat_interval + 5)

    def step(self) -> None:
        """One watch: wait for a change (or the period), then reconcile the whole host."""
        doc = self.client.assignments(self.revision, self.wait if self.revision >= 0 else 0)
        self.driver.apply_network(doc)
        self.reconcile(doc["servers"])
        self.revision = int(doc["revision"])

    def heartbeat(self) -> None:
        self.client.heartbeat(
            {**self.driver.report(), "address": self.address, "roles": self.roles}
        )

    def _beat(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.heartbeat()
            except ControlPlaneError as exc:
                log.warning("heartbeat not taken: %s", exc)
            stop.wait(self.heartbeat_interval)

    def reconcile(self, servers: list[dict[str, Any]]) -> None:
        wanted = {s["id"]: s for s in servers}
        for server_id in set(self.driver.guests()) - set(wanted):
            log.info("removing guest %s: nothing assigns it to this host", server_id)
            self.driver.remove(server_id)
            self._reported.pop(server_id, None)
        for server in servers:
            self._converge(server)

    def _converge(self, server: dict[str, Any]) -> None:
        server_id = server["id"]
        if self.moves is not None and self.moves.handle(server):
            return  # a move under way decides what becomes of the guest here
        try:
            actual = self.driver.converge(server)
        except DriverFailure as exc:
            log.warning("server %s: %s", server_id, exc)
            self.client.report(server_id, "error", str(exc)[:255])
            return
        if server.get("task") or self._reported.get(server_id) != actual:
            self.client.report(server_id, actual, action=server.get("action"))
            self._reported[server_id] = actual
