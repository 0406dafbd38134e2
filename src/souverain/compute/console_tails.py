"""The serial console of guests on agent hosts, as their agents send it.

An API node cannot read a host's disk, so each agent sends the newest part of a guest's
console log when it changed (at most every `agent.console_interval` seconds) and
os-getConsoleOutput answers from the last one sent: as fresh as that interval. Only the
host the server is assigned to may send it; it goes with the server.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from souverain.common.errors import BadRequest, NotFound
from souverain.compute.models import ConsoleTail, Server

# The most of a console an agent sends: the newest 64 KiB, as the all-in-one keeps more
# on disk but a console log is a courtesy, not a record.
MAX_CHARS = 65536


def store(s: Session, host: str, server_id: str, output: str, now: dt.datetime) -> None:
    """The console the agent of `host` sent for a server assigned to it."""
    if len(output) > MAX_CHARS:
        raise BadRequest(f"'output' is at most {MAX_CHARS} characters: send its newest part.")
    row = s.get(Server, server_id) if len(server_id) <= 36 else None
    if row is None or row.deleted or row.host != host:
        raise NotFound(f"Server {server_id[:64]} is not assigned to host {host}.")
    tail = s.get(ConsoleTail, server_id)
    if tail is None:
        s.add(ConsoleTail(server_id=server_id, host=host, output=output, updated_at=now))
    else:
        tail.host, tail.output, tail.updated_at = host, output, now


def read(s: Session, server_id: str, length: int | None) -> str:
    """The last `length` lines the server's host sent (all when None); empty when none."""
    output = s.scalar(select(ConsoleTail.output).where(ConsoleTail.server_id == server_id))
    if not output:
        return ""
    if length is None:
        return str(output)
    if length <= 0:
        return ""
    return "".join(str(output).splitlines(keepends=True)[-length:])


def forget(s: Session, server_id: str) -> None:
    s.execute(delete(ConsoleTail).where(ConsoleTail.server_id == server_id))
