"""Guests' serial consoles sent to the control plane, which cannot read this host's disk:
the newest part of each console log that changed since it was last sent, every
`agent.console_interval` seconds, on a thread of its own (a slow upload delays neither the
watch nor the heartbeat)."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from souverain.agent.client import ControlPlaneError, InternalClient

log = logging.getLogger("souverain.agent")

MAX_CHARS = 65536  # what the control plane keeps of a console (compute/console_tails.py)


class Consoles(Protocol):
    def guests(self) -> dict[str, str]: ...

    def console_stamp(self, server_id: str) -> tuple[int, int] | None:
        """What changes when the console does (its size and mtime); None: no console."""
        ...

    def console_output(self, server_id: str) -> str: ...


class ConsoleSender:
    def __init__(self, client: InternalClient, driver: Consoles) -> None:
        self.client = client
        self.driver = driver
        self._sent: dict[str, tuple[int, int]] = {}

    def send_changed(self) -> int:
        """Send every console that changed; how many were sent."""
        sent = 0
        guests = set(self.driver.guests())
        for server_id in set(self._sent) - guests:
            del self._sent[server_id]
        for server_id in sorted(guests):
            stamp = self.driver.console_stamp(server_id)
            if stamp is None or self._sent.get(server_id) == stamp:
                continue
            output = self.driver.console_output(server_id)[-MAX_CHARS:]
            try:
                self.client.console(server_id, output)
            except ControlPlaneError as exc:  # not assigned here any more, or the API away
                log.info("console of %s not sent: %s", server_id, exc)
                continue
            self._sent[server_id] = stamp
            sent += 1
        return sent

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            try:
                self.send_changed()
            except OSError as exc:
                log.warning("consoles not sent: %s", exc)
