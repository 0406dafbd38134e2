"""The serial console's websocket (what nova-serialproxy is to Nova), in the API's own process.

`GET /compute/serial-console?token=...` upgraded to a websocket: the console token is the
only credential (no Keystone token, as with nova-serialproxy), checked before anything is
attached. Then bytes flow both ways between binary frames and the guest's serial socket
until either side closes, which closes the other. One client at a time per server: QEMU
serves one and would leave a second waiting unseen, so a second is refused (409) while the
first is attached. Buffers are bounded both ways; a client that stops taking output is
dropped after SEND_TIMEOUT rather than stall its guest's serial port for ever.

Part of compute's HTTP layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.websockets import WebSocket

from souverain.common.errors import ApiError
from souverain.compute.consoles import Consoles, SerialTarget
from souverain.compute.qemu import QemuDriver
from souverain.openstack.faults import HTTP_TITLES, render_named_fault

log = logging.getLogger("souverain.compute")

PATH = "/serial-console"
ACTION = "compute:serial_console:connect"  # public in the policy table: the token decides
SUBPROTOCOL = "binary"  # what nova-serialproxy's clients ask for
MAX_FRAME = 64 * 1024  # from the client: a serial port takes about 11 KiB a second
READ_CHUNK = 4096
SEND_TIMEOUT = 30.0
CLAIM_GRACE, CLAIM_ATTEMPTS = 1.0, 10  # seconds a leaving client has to let go of the port
# websocket close codes (RFC 6455)
NORMAL, GOING_AWAY, TOO_BIG, POLICY = 1000, 1001, 1009, 1008

Close = tuple[int, str] | None  # how a pump ended: a close to send, or None (client gone)


class SerialProxy:
    """The websocket endpoint; `consoles` checks tokens, `driver` owns the host's sockets."""

    def __init__(self, consoles: Consoles, driver: QemuDriver) -> None:
        self.consoles = consoles
        self.driver = driver

    async def serve(self, websocket: WebSocket) -> None:
        try:
            target = await run_in_threadpool(
                self.consoles.serial_target, websocket.query_params.get("token", "")
            )
        except ApiError as exc:
            await refuse(websocket, exc.status, exc.message)
            return
        claim = await self._claim(target.server_id)
        if claim is None:
            message = f"The serial console of server {target.server_id} is in use by another "
            await refuse(websocket, 409, message + "client: try again once it has left.")
            return
        try:
            close = await self._attach(websocket, target)
        finally:
            self.driver.release_serial(claim)
        # the port is free before the client hears the end: it may attach again at once
        if close is not None:
            with contextlib.suppress(Exception):  # the client may be gone already
                await websocket.close(code=close[0], reason=close[1])

    async def _claim(self, server_id: str) -> int | None:
        """The port's claim; a client that has just left gets CLAIM_GRACE to let go."""
        for _ in range(CLAIM_ATTEMPTS):
            claim = self.driver.claim_serial(server_id)
            if claim is not None:
                return claim
            await asyncio.sleep(CLAIM_GRACE / CLAIM_ATTEMPTS)
        return None

    async def _attach(self, websocket: WebSocket, target: SerialTarget) -> Close:
        try:
            reader, writer = await asyncio.open_unix_connection(str(target.socket))
        except OSError:
            message = f"The serial port of server {target.server_id} is not reachable: is it "
            await refuse(websocket, 409, message + "running?")
            return None
        try:
            offered = websocket.scope.get("subprotocols") or []
            await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
            log.info("serial console of server %s attached", target.server_id)
            return await bridge(websocket, reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            log.info("serial console of server %s detached", target.server_id)


async def refuse(websocket: WebSocket, status: int, message: str) -> None:
    """No websocket: an HTTP answer in Nova's fault body when the server can send one."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        title = HTTP_TITLES.get(status, "Error")
        body, media_type = render_named_fault("", status, title, message)
        await websocket.send_denial_response(
            Response(body, status_code=status, media_type=media_type)
        )
    else:
        await websocket.close(code=POLICY, reason=message[:120])


async def bridge(
    websocket: WebSocket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Close:
    """Pump both ways until one side ends, then stop the other; the close to send."""
    pumps = [
        asyncio.create_task(to_guest(websocket, writer)),
        asyncio.create_task(to_client(websocket, reader)),
    ]
    done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    try:
        return next(iter(done)).result()
    except Exception:  # the guest's side broke (QEMU gone mid-write)
        return (GOING_AWAY, "the console connection failed")


async def to_guest(websocket: WebSocket, writer: asyncio.StreamWriter) -> Close:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("bytes")
        if data is None:
            data = (message.get("text") or "").encode()
        if len(data) > MAX_FRAME:
            return (TOO_BIG, f"frames to a serial console are at most {MAX_FRAME} bytes")
        writer.write(data)
        await writer.drain()  # bounded: waits while the guest has not taken the last bytes


async def to_client(websocket: WebSocket, reader: asyncio.StreamReader) -> Close:
    while True:
        data = await reader.read(READ_CHUNK)
        if not data:
            return (NORMAL, "the server's serial port closed (the guest stopped)")
        try:
            await asyncio.wait_for(websocket.send_bytes(data), SEND_TIMEOUT)
        except TimeoutError:
            return (POLICY, "the client did not take the console's output in time")
        except (OSError, RuntimeError):
            return None  # the client is gone
