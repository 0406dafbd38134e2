"""Console URLs: the tokens that open a server's serial console (os-console-auth-tokens).

A token is 256 random bits handed to the caller once; only its SHA-256 is stored, bound to
one server and one console type, until it expires (`console_token_ttl`) or the server is
deleted. Whoever holds a valid token may attach to that server's serial port, as with
nova-serialproxy. No HTTP and no sockets here: the API's websocket does the attaching.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound, Unauthorized
from souverain.compute.core import ComputeCore
from souverain.compute.models import ConsoleAuthToken, Server

SERIAL = "serial"
# the tasks during which Nova refuses a console: the guest is going away or moving
_REFUSING_TASKS = frozenset({"deleting", "migrating"})
# the port a serial console reports: ours is a unix socket on the host, not a TCP port
SERIAL_PORT = 0
# live tokens kept per server: asking for more URLs forgets the oldest, so a caller in a
# loop cannot grow the table without bound
MAX_TOKENS_PER_SERVER = 32


@dataclass(frozen=True)
class SerialTarget:
    """What a valid token opens: one server's serial socket on this host."""

    server_id: str
    socket: Path


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Consoles:
    def __init__(self, core: ComputeCore) -> None:
        self.core = core
        self.db = core.db
        self.driver = core.driver

    def check_console_type(self, protocol: str, console_type: str) -> None:
        """Only the serial console is enabled here: the others are Nova's "unavailable"."""
        if protocol != SERIAL:
            raise BadRequest(f"Unavailable console type {console_type}.")
        if console_type != SERIAL:
            raise BadRequest(f"Invalid console type {console_type}")

    def create_serial(self, ctx: RequestContext, server_id: str) -> str:
        """A new token for the server's serial console; the caller builds the URL."""
        token = secrets.token_urlsafe(32)
        now = self.core.now()
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            self._check_serial_ready(row)
            s.execute(delete(ConsoleAuthToken).where(ConsoleAuthToken.expires_at <= now))
            self._forget_beyond_limit(s, row.id)
            s.add(
                ConsoleAuthToken(
                    token_hash=token_hash(token),
                    server_id=row.id,
                    console_type=SERIAL,
                    host=self.core.host,
                    port=SERIAL_PORT,
                    created_at=now,
                    expires_at=now + dt.timedelta(seconds=self.core.settings.console_token_ttl),
                )
            )
        return token

    @staticmethod
    def _forget_beyond_limit(s: Session, server_id: str) -> None:
        """Room for one more token: the server's oldest beyond the limit are forgotten."""
        older = s.scalars(
            select(ConsoleAuthToken.token_hash)
            .where(ConsoleAuthToken.server_id == server_id)
            .order_by(ConsoleAuthToken.created_at.desc())
            .offset(MAX_TOKENS_PER_SERVER - 1)
        ).all()
        if older:
            s.execute(delete(ConsoleAuthToken).where(ConsoleAuthToken.token_hash.in_(older)))

    def _check_serial_ready(self, row: Server) -> None:
        if row.vm_state != "active" or row.task_state in _REFUSING_TASKS:
            state = f"task_state {row.task_state}" if row.vm_state == "active" else None
            raise Conflict(
                f"Instance {row.id} in {state or 'vm_state ' + row.vm_state}. Cannot "
                "get_serial_console while the instance is in this state."
            )
        if not self.driver.serial_socket(row.id).exists():
            raise Conflict(
                f"Instance {row.id} was started without an interactive serial port: "
                "stop and start it once to get one."
            )

    def show(self, ctx: RequestContext, token: str) -> dict[str, Any]:
        """An admin's look at a token (os-console-auth-tokens): where it connects."""
        if not token:
            raise BadRequest("token not provided")
        with self.db.session() as s:
            found = self._valid(s, token)
            if found is None:
                raise NotFound("Token not found")
            return {
                "instance_uuid": found.server_id,
                "host": found.host,
                "port": found.port,
                "internal_access_path": None,
            }

    def serial_target(self, token: str) -> SerialTarget:
        """The serial socket a token opens, or 401: unknown, expired, or its server is no
        longer running."""
        refused = Unauthorized("The console token is invalid or has expired: ask for a new URL.")
        with self.db.session() as s:
            found = self._valid(s, token)
            if found is None or found.console_type != SERIAL:
                raise refused
            server = s.get(Server, found.server_id)
            if server is None or server.deleted or server.vm_state != "active":
                raise refused
        return SerialTarget(found.server_id, self.driver.serial_socket(found.server_id))

    def _valid(self, s: Session, token: str) -> ConsoleAuthToken | None:
        if not token or len(token) > 255:
            return None
        found = s.execute(
            select(ConsoleAuthToken).where(ConsoleAuthToken.token_hash == token_hash(token))
        ).scalar_one_or_none()
        if found is None or found.expires_at <= self.core.now():
            return None
        return found


def revoke_tokens(s: Session, server_id: str) -> None:
    """A deleted server's console tokens die with it."""
    s.execute(delete(ConsoleAuthToken).where(ConsoleAuthToken.server_id == server_id))
