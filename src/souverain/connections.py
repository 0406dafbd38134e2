"""Connections held to time and size: the HTTP/1.1 protocol the listeners speak.

uvicorn's httptools protocol, with what it leaves out against slow or greedy clients:
a request's head (request line and headers) must arrive whole within `header_timeout`
(408, then closed: a slowloris client holds a connection no longer than that), must not
exceed `max_header_bytes` (431, then closed), and a body may not stall longer than
`body_idle_timeout` while the server waits for it (closed). A TLS handshake has as long
as a head (the event loop's own default is a minute). The keep-alive idle timeout is
uvicorn's own. This module must not read or keep what the requests carry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from souverain.config import LimitsSettings


class HeadTooLargeError(Exception):
    """Raised inside the parser's callback: the parser stops, the 431 goes out."""


def _reply(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


TIMED_OUT = _reply(b"408 Request Timeout", b"The request took too long to arrive.")
TLS_SHUTDOWN_TIMEOUT = 2.0
HEAD_TOO_LARGE = _reply(
    b"431 Request Header Fields Too Large", b"The request line and headers are too large."
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """One connection, with a deadline on its head and an idle limit on its body."""

    limits: LimitsSettings = LimitsSettings()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._head_too_large = False

    # the head: a deadline from its first byte (or the connection) to its last
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_timer is None:
            self._arm_head()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head()
        super().on_headers_complete()
        if self._has_body() and not self.transport.is_closing():
            self._arm_body()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.limits.max_header_bytes:
            self._head_too_large = True
            raise HeadTooLargeError

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        self._cancel_timers()
        self.transport.write(HEAD_TOO_LARGE)
        self.transport.close()

    def _arm_head(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _cancel_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._cancel_timers()
            self.transport.write(TIMED_OUT)
            self.transport.close()

    # the body: closed when it stalls while the server is ready to read it
    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return True
        return False

    def _arm_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.limits.body_idle_timeout, self._body_timed_out)

    def data_received(self, data: bytes) -> None:
        if self._body_timer is not None:
            self._arm_body()
        super().data_received(data)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # we stopped reading: the wait is ours, not the client's
            self._arm_body()
            return
        self._cancel_timers()
        self.transport.close()

    def _cancel_timers(self) -> None:
        self._cancel_head()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()  # a console's websocket lives on its own terms
        super().handle_websocket_upgrade()


def guarded_protocol(limits: LimitsSettings) -> type[GuardedHttpProtocol]:
    """The protocol class for one server's settings (uvicorn builds one per connection)."""
    return type("ServerHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})


def handshake_bounded_loop(timeout: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop, whose TLS servers give a client `timeout` seconds to finish its
    handshake (a client that connects and says nothing is let go as soon as a slow head),
    and a closing connection TLS_SHUTDOWN_TIMEOUT to answer the close (not the default 30 s,
    which an idle keep-alive client that never answers adds to a graceful stop)."""

    class HandshakeBoundedLoop(uvloop.Loop):
        async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.AbstractServer:  # type: ignore[override]
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", timeout)
                kwargs.setdefault("ssl_shutdown_timeout", TLS_SHUTDOWN_TIMEOUT)
            server: asyncio.AbstractServer = await super().create_server(*args, **kwargs)
            return server

    return HandshakeBoundedLoop
