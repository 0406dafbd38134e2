#!/usr/bin/env python3
"""A small closed-loop HTTP/1.1 load client on raw asyncio sockets, for what wrk cannot send.

wrk 4.1 reads a HEAD answer's Content-Length as a body still to come and
waits for it forever, so HEAD cells use this instead. Each connection sends
the next prepared request as soon as the previous answer is complete;
requests are prepared before the clock starts (one per line of the paths
file, cycled), so the loop only writes bytes and reads status lines. Uses
uvloop when the interpreter has it. Prints one JSON document.

    http_load.py --host 127.0.0.1:8080 --method HEAD --paths FILE -c 16 -d 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path

_HEADER_END = b"\r\n\r\n"


@dataclass
class Tally:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)


class ClosedLoop(asyncio.Protocol):
    """One connection: send, read the whole answer, send the next, until the deadline.

    A server that answers `Connection: close` (moto's werkzeug does) gets a new
    connection for the next request, as wrk would open; a connection lost
    with a request in flight counts as a read error.
    """

    def __init__(
        self, requests: list[bytes], start: int, head: bool, tally: Tally, deadline: float
    ) -> None:
        self.requests, self.index, self.head = requests, start, head
        self.tally, self.deadline = tally, deadline
        self.buffer = b""
        self.sent_at = 0.0
        self.in_flight = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport: no isinstance here.
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        request = self.requests[self.index]
        self.index = (self.index + 1) % len(self.requests)
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(_HEADER_END)
        if end < 0:
            return
        head = self.buffer[:end]
        length, close = _framing(head)
        if self.head:
            length = 0
        if len(self.buffer) < end + 4 + length:
            return
        self.in_flight = False
        status = int(head[9:12])
        tally = self.tally
        tally.requests += 1
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        tally.latencies_s.append(time.perf_counter() - self.sent_at)
        if not 200 <= status <= 299 and not tally.first_errors:
            tally.first_errors.append(self.buffer[: min(len(self.buffer), 300)].decode("latin-1"))
        self.buffer = self.buffer[end + 4 + length :]
        if close or time.monotonic() >= self.deadline:
            self.transport.close()
        else:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight and time.monotonic() < self.deadline:
            self.tally.errors["read"] = self.tally.errors.get("read", 0) + 1
        if not self.closed.done():
            self.closed.set_result(None)


def _framing(head: bytes) -> tuple[int, bool]:
    """Content-Length of the answer, and whether the server will close the connection."""
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    return length, close


async def _run(host: str, port: int, requests: list[bytes], head: bool, connections: int,
               offset: int, duration_s: float) -> Tally:  # fmt: skip
    tally = Tally()
    deadline = time.monotonic() + duration_s
    loop = asyncio.get_running_loop()
    step = max(1, len(requests) // max(1, connections))

    async def slot(start: int) -> None:
        index = start
        while time.monotonic() < deadline:
            try:
                _, protocol = await loop.create_connection(
                    lambda i=index: ClosedLoop(requests, i, head, tally, deadline), host, port
                )
            except OSError:
                tally.errors["connect"] = tally.errors.get("connect", 0) + 1
                await asyncio.sleep(0.01)
                continue
            await protocol.closed
            index = protocol.index

    await asyncio.gather(*(slot((offset + n * step) % len(requests)) for n in range(connections)))
    return tally


def _worker(args: argparse.Namespace, connections: int, offset: int) -> dict:
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    host, port = args.host.rsplit(":", 1)
    requests = [
        f"{args.method} {path} HTTP/1.1\r\nHost: {args.host}\r\n\r\n".encode()
        for path in Path(args.paths).read_text().split()
    ]
    tally = asyncio.run(
        _run(host, int(port), requests, args.method == "HEAD", connections, offset,
             args.duration)
    )  # fmt: skip
    return tally.__dict__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="127.0.0.1:PORT, also sent as Host")
    parser.add_argument("--method", default="HEAD", choices=("HEAD", "GET"))
    parser.add_argument("--paths", required=True, help="file of request paths, one per line")
    parser.add_argument("-c", "--connections", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=8.0)
    parser.add_argument("-p", "--processes", type=int, default=1)
    args = parser.parse_args()

    processes = max(1, min(args.processes, args.connections))
    shares = [args.connections // processes + (i < args.connections % processes)
              for i in range(processes)]  # fmt: skip
    began = time.monotonic()
    if processes == 1:
        results = [_worker(args, shares[0], 0)]
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            results = pool.starmap(
                _worker, [(args, share, i * 7919) for i, share in enumerate(shares)]
            )
    elapsed = time.monotonic() - began

    latencies = sorted(x for r in results for x in r["latencies_s"])
    total = Tally()
    for result in results:
        total.requests += result["requests"]
        for code, n in result["statuses"].items():
            total.statuses[code] = total.statuses.get(code, 0) + n
        for kind, n in result["errors"].items():
            total.errors[kind] = total.errors.get(kind, 0) + n
        total.first_errors += result["first_errors"]
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
    print(json.dumps({
        "requests": total.requests,
        "requests_per_s": total.requests / min(elapsed, args.duration) if elapsed else 0.0,
        "p99_ms": p99 * 1000 if p99 is not None else None,
        "statuses": total.statuses,
        "errors": total.errors,
        "first_errors": total.first_errors[:3],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
