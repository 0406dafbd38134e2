"""The serial console end to end: the real `openstack` CLI asks for the URL, a real
websocket client (the `websockets` package) attaches to a real tiny guest through
`souverain serve`, types a command on its shell and reads the answer back.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import Cloud, CloudFactory, Tenant, unique

TOKEN_TTL = 20  # seconds: long enough for the CLI and one session, short enough to outwait
READY = "souverain-guest: ready"
BOOT_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def console_cloud(start_cloud: CloudFactory, tiny_image_file: object) -> Iterator[Cloud]:
    cloud = start_cloud(
        "console",
        SOUVERAIN_IMAGE__TINY_IMAGE=str(tiny_image_file),
        SOUVERAIN_COMPUTE__SHUTDOWN_TIMEOUT="5",
        SOUVERAIN_COMPUTE__CONSOLE_TOKEN_TTL=str(TOKEN_TTL),
    )
    yield cloud
    cloud.stop_and_check()


@pytest.fixture(scope="module")
def tenant(console_cloud: Cloud) -> Tenant:
    return console_cloud.make_tenant("console")


@pytest.fixture(scope="module")
def server_name(console_cloud: Cloud, tenant: Tenant) -> Iterator[str]:
    name = unique("serial")
    console_cloud.cli_ok(
        "server", "create", "--image", "tiny", "--flavor", "t1.nano", "--nic", "none",
        "--wait", name, cloud=tenant.cloud_name,
    )  # fmt: skip
    deadline = time.monotonic() + BOOT_TIMEOUT
    while READY not in console_cloud.cli_ok(
        "console", "log", "show", name, cloud=tenant.cloud_name
    ):
        assert time.monotonic() < deadline, f"{name} never printed {READY!r}"
        time.sleep(1)
    yield name
    console_cloud.cli_ok("server", "delete", "--wait", name, cloud=tenant.cloud_name)


def console_url(cloud: Cloud, tenant: Tenant, name: str) -> str:
    shown = cloud.cli_json("console", "url", "show", "--serial", name, cloud=tenant.cloud_name)
    assert shown["protocol"] == "serial" and shown["type"] == "serial", shown
    url: str = shown["url"]
    cloud.secrets.add(url.split("?token=")[1])  # no log may hold it: stop_and_check looks
    return url


async def type_and_read(url: str, command: str, expected: str, timeout: float = 60.0) -> str:
    """Attach, type `command`, read until `expected` comes back; all the guest said."""
    seen = b""
    async with connect(url, subprotocols=["binary"], open_timeout=10) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "binary"
        await ws.send((command + "\n").encode())
        async with asyncio.timeout(timeout):
            while expected.encode() not in seen:
                frame = await ws.recv()
                seen += frame if isinstance(frame, bytes) else frame.encode()
    return seen.decode("utf-8", "replace")


def test_the_cli_gives_a_url_that_types_on_the_guests_shell(
    console_cloud: Cloud, tenant: Tenant, server_name: str
) -> None:
    url = console_url(console_cloud, tenant, server_name)
    assert url.startswith("ws://") and "/compute/serial-console?token=" in url, url
    number = random.randrange(10**6, 10**7)
    # the shell computes the answer: an echo of what was typed alone would not prove it ran
    said = asyncio.run(type_and_read(url, f"echo marker-$(({number} + 1))", f"marker-{number + 1}"))
    assert f"marker-{number + 1}" in said
    log = console_cloud.cli_ok("console", "log", "show", server_name, cloud=tenant.cloud_name)
    assert f"marker-{number + 1}" in log  # what the session did is in the console log too


def test_a_second_client_is_refused_while_one_is_attached(
    console_cloud: Cloud, tenant: Tenant, server_name: str
) -> None:
    url = console_url(console_cloud, tenant, server_name)

    async def both() -> int:
        async with connect(url, subprotocols=["binary"], open_timeout=10):  # type: ignore[list-item]
            with pytest.raises(InvalidStatus) as refused:
                await connect(url, open_timeout=10)
            return refused.value.response.status_code

    assert asyncio.run(both()) == 409
    # and once the first has left, the next one gets in
    said = asyncio.run(type_and_read(url, "echo again-$((1 + 1))", "again-2"))
    assert "again-2" in said


def test_garbage_and_expired_tokens_are_refused_before_attaching(
    console_cloud: Cloud, tenant: Tenant, server_name: str
) -> None:
    url = console_url(console_cloud, tenant, server_name)
    garbage = url.split("?token=")[0] + "?token=not-a-token"
    for refused_url in (garbage, url.split("?token=")[0]):
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(type_and_read(refused_url, "echo no", "never"))
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["unauthorized"]["code"] == 401
    time.sleep(TOKEN_TTL + 1)
    with pytest.raises(InvalidStatus) as expired:
        asyncio.run(type_and_read(url, "echo no", "never"))
    assert expired.value.response.status_code == 401


def test_a_huge_frame_closes_the_session_and_the_console_still_works(
    console_cloud: Cloud, tenant: Tenant, server_name: str
) -> None:
    url = console_url(console_cloud, tenant, server_name)

    async def huge() -> int | None:
        async with connect(url, subprotocols=["binary"], max_size=None) as ws:  # type: ignore[list-item]
            await ws.send(b"x" * (1024 * 1024))
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(30):
                    while True:
                        await ws.recv()
            return ws.close_code

    assert asyncio.run(huge()) == 1009
    said = asyncio.run(type_and_read(url, "\x03echo still-$((2 + 2))", "still-4"))
    assert "still-4" in said


# ---------------------------------------------------------------------- createBackup, by the CLI


def test_the_cli_backs_up_a_server_and_rotates_old_backups_out(
    console_cloud: Cloud, tenant: Tenant, server_name: str
) -> None:
    cloud = tenant.cloud_name
    made = []
    for n in range(2):
        shown = console_cloud.cli_json(
            "server", "backup", "create", "--name", f"{server_name}-b{n}", "--type", "daily",
            "--rotate", "1", "--wait", server_name, cloud=cloud,
        )  # fmt: skip
        made.append(shown["id"])
        image = console_cloud.cli_json("image", "show", shown["id"], cloud=cloud)
        assert image["status"] == "active", image  # --wait waited for the snapshot
        time.sleep(1.1)  # the next backup is newer by the second Glance records
    listed = console_cloud.cli_json(
        "image", "list", "--property", "backup_type=daily", "--long", cloud=cloud
    )
    assert [i["ID"] for i in listed] == [made[1]]
