"""What the bench knows about each server it measures: where it listens, how to sign for it,
which processes are its own. Nothing here starts anything."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from processes import Server
from sigv4 import Credentials, Presigner

SOUVERAIN = "Souverain"
MOTO = "moto"
SWIFT = "Swift"
NGINX = "nginx"

S3_TARGETS = (SOUVERAIN, MOTO, SWIFT)
ALL_TARGETS = (*S3_TARGETS, NGINX)


class PeerUnavailable(RuntimeError):
    """A peer cannot run here; the bench goes on without it and prints why."""


@dataclass
class Target:
    """One server under test. `credentials` is None for nginx, which is not S3."""

    name: str
    host: str  # as the client sends it in Host: "127.0.0.1:PORT"
    servers: list[Server]
    credentials: Credentials | None = None
    setup: str = ""  # one line for the report: version, workers, storage
    observations: list[str] = field(default_factory=list)

    def presigner(self) -> Presigner:
        assert self.credentials is not None, f"{self.name} does not speak S3"
        return Presigner(self.credentials, self.host)

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    def raise_if_exited(self) -> None:
        for server in self.servers:
            server.raise_if_exited()

    def wait_idle(self, timeout_s: float = 120.0, interval_s: float = 0.25) -> None:
        """Until all its processes together burn (almost) no CPU: leftovers of the last
        cell are done and not charged to the next one."""
        deadline = time.monotonic() + timeout_s
        quiet = 0
        before = sum(server.cpu_seconds() for server in self.servers)
        while quiet < 2 and time.monotonic() < deadline:
            time.sleep(interval_s)
            self.raise_if_exited()
            now = sum(server.cpu_seconds() for server in self.servers)
            quiet = quiet + 1 if now - before < 0.05 * interval_s else 0
            before = now

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
