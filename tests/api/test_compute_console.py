"""Remote consoles in-process, against real QEMU guests: console URLs (remote-consoles and
the legacy action), os-console-auth-tokens, and the serial console's websocket typing on
the tiny guest's shell. Who may get a URL, and where a token leads, is proved here too.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from sqlalchemy import func, select
from starlette.testclient import WebSocketDenialResponse, WebSocketTestSession

from souverain import server
from souverain.common import policy
from souverain.common.clock import Clock
from souverain.compute import api as compute_api
from souverain.compute.api_serial import ACTION as SERIAL_ACTION
from souverain.compute.consoles import MAX_TOKENS_PER_SERVER
from souverain.compute.models import ConsoleAuthToken
from tests.host_cleanup import kill_guests
from tests.vm.guest_support import build_tiny_image, missing_requirements

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, Cloud, Member, SteppingClock, TestClient, settings_for
from .test_compute_api import BASE, Nova, fault, wait_for, wait_status
from .test_identity_trusts import _app_cred_token as app_cred_token

READY = "souverain-guest: ready"
TTL = 600  # Nova's default token lifetime, and ours
SERIAL = {"remote_console": {"protocol": "serial", "type": "serial"}}


@dataclass
class World:
    cloud: Cloud
    clock: SteppingClock
    alice: Member  # project A: owns both servers
    a: Nova
    reader: Nova  # a reader of project A
    restricted: Nova  # alice's application credential holding only the reader role
    b: Nova  # project B's member
    admin: Nova
    first: str
    second: str


def _boot(nova: Nova, image_id: str, name: str) -> str:
    body = {"name": name, "imageRef": image_id, "flavorRef": "1", "networks": "none"}
    server_id: str = nova.ok("POST", "/servers", {"server": body}, status=202)["server"]["id"]
    return server_id


def _ready(nova: Nova, server_id: str) -> None:
    wait_status(nova, server_id, "ACTIVE")

    def printed() -> bool:
        body = nova.ok("POST", f"/servers/{server_id}/action", {"os-getConsoleOutput": {}})
        return READY in body["output"]

    wait_for(printed, f"{server_id} to print {READY!r}", timeout=240)


def _populate(cloud: Cloud, clock: SteppingClock) -> World:
    alice = cloud.member()
    reader = cloud.member("reader", project_id=alice.project_id)
    bob = cloud.member()
    a = Nova(cloud.client, alice.token)
    images = cloud.client.get("/image/v2/images?name=tiny", headers=alice.headers).json()
    image_id = images["images"][0]["id"]
    first, second = _boot(a, image_id, "first"), _boot(a, image_id, "second")
    _ready(a, first)
    _ready(a, second)
    return World(
        cloud=cloud,
        clock=clock,
        alice=alice,
        a=a,
        reader=Nova(cloud.client, reader.token),
        restricted=Nova(cloud.client, app_cred_token(cloud, alice, ["reader"])),
        b=Nova(cloud.client, bob.token),
        admin=Nova(cloud.client, cloud.admin_token),
        first=first,
        second=second,
    )


@pytest.fixture(scope="module")
def world(database_backend: str) -> Iterator[World]:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"console tests need real guests: {reason}")
    root = Path(tempfile.mkdtemp(prefix="souverain-console-", dir=_fast_tmp_root()))
    data_dir = root / "data"
    settings = settings_for(data_dir)
    settings.image.tiny_image = build_tiny_image()
    settings.compute.shutdown_timeout = 5
    clock = SteppingClock()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings, clock=Clock(clock.now))
        try:
            with TestClient(built.app, base_url=BASE) as client:
                yield _populate(Cloud(client, built), clock)
        finally:
            built.close()
    finally:
        kill_guests(data_dir)
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------- helpers


def serial_url(nova: Nova, server_id: str) -> str:
    body = nova.ok("POST", f"/servers/{server_id}/remote-consoles", SERIAL, version="2.6")
    assert set(body) == {"remote_console"}
    console = body["remote_console"]
    assert console["protocol"] == "serial" and console["type"] == "serial"
    url: str = console["url"]
    return url


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def ws_path(url: str) -> str:
    parts = urlsplit(url)
    assert parts.scheme == "ws" and parts.netloc == "testserver", url
    return f"{parts.path}?{parts.query}"


def receive_within(ws: WebSocketTestSession, seconds: float) -> dict[str, Any]:
    """The next message the server sends, or a timeout: TestClient's own receive waits for ever."""

    async def next_message() -> dict[str, Any]:
        with anyio.fail_after(seconds):
            message: dict[str, Any] = await ws._send_rx.receive()
            return message

    return ws.portal.call(next_message)


def read_until(ws: WebSocketTestSession, expected: str, timeout: float = 60.0) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while expected.encode() not in seen:
        message = receive_within(ws, max(0.1, deadline - time.monotonic()))
        assert message["type"] == "websocket.send", message
        seen += message.get("bytes") or message.get("text", "").encode()
    return seen.decode("utf-8", "replace")


def run_on(world: World, url: str, command: str, expected: str) -> str:
    with world.cloud.client.websocket_connect(ws_path(url), subprotocols=["binary"]) as ws:
        assert ws.accepted_subprotocol == "binary"
        ws.send_bytes(command.encode() + b"\n")
        return read_until(ws, expected)


def denied(world: World, path: str) -> Any:
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        world.cloud.client.websocket_connect(path),
    ):
        pass
    return refused.value


# ---------------------------------------------------------------------- console URLs


def test_remote_console_gives_a_websocket_url_with_a_fresh_token(world: World) -> None:
    one, two = serial_url(world.a, world.first), serial_url(world.a, world.first)
    assert one.startswith("ws://testserver/compute/serial-console?token=")
    assert token_of(one) != token_of(two)
    assert len(token_of(one)) >= 43  # 256 random bits


def test_the_token_is_stored_hashed(world: World) -> None:
    token = token_of(serial_url(world.a, world.first))
    database = Path(world.cloud.platform.settings.data_dir)
    for path in database.rglob("*.db*"):
        assert token.encode() not in path.read_bytes(), path


def test_an_https_edge_gives_a_wss_url(world: World) -> None:
    response = world.a.post(
        f"https://testserver/compute/v2.1/servers/{world.first}/remote-consoles",
        SERIAL,
        version="2.6",
    )
    assert response.status_code == 200, response.text
    assert response.json()["remote_console"]["url"].startswith("wss://testserver/compute/")


def test_the_legacy_action_gives_a_url_below_2_6_only(world: World) -> None:
    path = f"/servers/{world.first}/action"
    body = world.a.ok("POST", path, {"os-getSerialConsole": {"type": "serial"}})
    assert set(body["console"]) == {"type", "url"}
    assert body["console"]["type"] == "serial"
    assert body["console"]["url"].startswith("ws://testserver/compute/serial-console?token=")
    response = world.a.post(path, {"os-getSerialConsole": {"type": "serial"}}, version="2.6")
    fault(response, 404, "itemNotFound")
    response = world.a.post(path, {"os-getSerialConsole": {"type": "novnc"}})
    fault(response, 400, "badRequest")


def test_remote_consoles_does_not_exist_before_2_6(world: World) -> None:
    response = world.a.post(f"/servers/{world.first}/remote-consoles", SERIAL, version="2.5")
    fault(response, 404, "itemNotFound")


@pytest.mark.parametrize(
    ("protocol", "kind", "version", "message"),
    [
        ("vnc", "novnc", "2.6", "Unavailable console type novnc."),
        ("spice", "spice-html5", "2.6", "Unavailable console type spice-html5."),
        ("rdp", "rdp-html5", "2.6", "Unavailable console type rdp-html5."),
        ("mks", "webmks", "2.8", "Unavailable console type webmks."),
        ("serial", "novnc", "2.6", "Invalid console type novnc"),
        ("mks", "webmks", "2.6", "protocol"),  # mks only from 2.8
        ("telnet", "serial", "2.6", "protocol"),
        ("serial", "x" * 10_000, "2.6", "type"),
        ("serial", 7, "2.6", "type"),
    ],
)
def test_other_consoles_are_refused_as_nova_refuses_them(
    world: World, protocol: str, kind: Any, version: str, message: str
) -> None:
    body = {"remote_console": {"protocol": protocol, "type": kind}}
    response = world.a.post(f"/servers/{world.first}/remote-consoles", body, version=version)
    said = fault(response, 400, "badRequest")
    assert message in said
    assert len(said) < 500


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        [],
        {"remote_console": None},
        {"remote_console": {"protocol": "serial"}},
        {"remote_console": {"type": "serial"}},
        {"remote_console": {"protocol": "serial", "type": "serial", "extra": 1}},
        {"remote_console": {"protocol": "serial", "type": "serial"}, "extra": 1},
    ],
)
def test_bad_bodies_are_400(world: World, body: Any) -> None:
    path = f"/servers/{world.first}/remote-consoles"
    response = world.a.post(path, body, version="2.6")
    fault(response, 400, "badRequest")


def test_a_missing_body_is_400(world: World) -> None:
    response = world.a.post(f"/servers/{world.first}/remote-consoles", version="2.6")
    fault(response, 400, "badRequest")


def test_a_server_that_is_not_active_gets_409(world: World) -> None:
    reset = {"os-resetState": {"state": "error"}}
    world.admin.ok("POST", f"/servers/{world.second}/action", reset, status=202)
    try:
        response = world.a.post(f"/servers/{world.second}/remote-consoles", SERIAL, version="2.6")
        assert "vm_state error" in fault(response, 409, "conflictingRequest")
    finally:
        back = {"os-resetState": {"state": "active"}}
        world.admin.ok("POST", f"/servers/{world.second}/action", back, status=202)


def test_an_unknown_server_is_404(world: World) -> None:
    response = world.a.post(
        "/servers/00000000-0000-0000-0000-000000000000/remote-consoles", SERIAL, version="2.6"
    )
    fault(response, 404, "itemNotFound")


# ---------------------------------------------------------------------- who may


def test_another_project_cannot_get_a_url_for_my_server(world: World) -> None:
    response = world.b.post(f"/servers/{world.first}/remote-consoles", SERIAL, version="2.6")
    fault(response, 404, "itemNotFound")
    legacy = {"os-getSerialConsole": {"type": "serial"}}
    fault(world.b.post(f"/servers/{world.first}/action", legacy), 404, "itemNotFound")


def test_a_reader_cannot_get_a_url(world: World) -> None:
    response = world.reader.post(f"/servers/{world.first}/remote-consoles", SERIAL, version="2.6")
    fault(response, 403, "forbidden")


def test_a_restricted_application_credential_cannot_get_a_url(world: World) -> None:
    path = f"/servers/{world.first}/remote-consoles"
    fault(world.restricted.post(path, SERIAL, version="2.6"), 403, "forbidden")


def test_only_an_admin_reads_a_token(world: World) -> None:
    token = token_of(serial_url(world.a, world.first))
    path = f"/os-console-auth-tokens/{token}"
    for caller in (world.a, world.reader, world.b, world.restricted):
        fault(caller.get(path, version="2.31"), 403, "forbidden")


# ---------------------------------------------------------------------- os-console-auth-tokens


def test_an_admin_sees_where_a_token_leads(world: World) -> None:
    token = token_of(serial_url(world.a, world.first))
    body = world.admin.ok("GET", f"/os-console-auth-tokens/{token}", version="2.31")
    assert body == {
        "console": {
            "instance_uuid": world.first,
            "host": world.cloud.platform.compute.host,
            "port": 0,
            "internal_access_path": None,
        }
    }


def test_tokens_are_shown_from_2_31_only(world: World) -> None:
    token = token_of(serial_url(world.a, world.first))
    response = world.admin.get(f"/os-console-auth-tokens/{token}", version="2.30")
    fault(response, 400, "badRequest")


@pytest.mark.parametrize("token", ["nope", "x" * 300, "%00", "%F0%9F%98%80", "a.b-c_d"])
def test_an_unknown_token_is_404(world: World, token: str) -> None:
    response = world.admin.get(f"/os-console-auth-tokens/{token}", version="2.31")
    assert "Token not found" in fault(response, 404, "itemNotFound")


def test_a_token_path_with_slashes_is_no_token(world: World) -> None:
    response = world.admin.get("/os-console-auth-tokens/..%2F..%2Fetc", version="2.31")
    fault(response, 404, "itemNotFound")


def test_asking_for_url_after_url_forgets_the_oldest_tokens(world: World) -> None:
    tokens = []
    for _ in range(MAX_TOKENS_PER_SERVER + 8):
        tokens.append(token_of(serial_url(world.a, world.first)))
        world.clock.advance(1)
    for token, shown in ((tokens[0], 404), (tokens[7], 404), (tokens[8], 200), (tokens[-1], 200)):
        response = world.admin.get(f"/os-console-auth-tokens/{token}", version="2.31")
        assert response.status_code == shown, response.text
    with world.cloud.platform.compute.db.session() as s:
        count = s.scalar(select(func.count()).where(ConsoleAuthToken.server_id == world.first))
    assert count == MAX_TOKENS_PER_SERVER


def test_the_websocket_route_needs_a_public_action_in_the_table(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = world.cloud.platform.compute
    assert policy.RULES[SERIAL_ACTION] is policy.Rule.PUBLIC
    assert [r.path for r in compute_api.websocket_routes(service)] == ["/serial-console"]
    monkeypatch.setitem(policy.RULES, SERIAL_ACTION, policy.Rule.PROJECT_MEMBER)
    with pytest.raises(ValueError, match="not public"):
        compute_api.websocket_routes(service)


# ---------------------------------------------------------------------- createBackup


def backup(world: World, name: str, kind: str, rotation: int) -> str:
    body = {"createBackup": {"name": name, "backup_type": kind, "rotation": rotation}}
    made = world.a.ok("POST", f"/servers/{world.first}/action", body, status=202, version="2.45")
    image_id: str = made["image_id"]
    wait_status(world.a, world.first, "ACTIVE")  # the task is over: the snapshot is made
    world.clock.advance(60)  # the next backup is newer
    return image_id


def backups(world: World, kind: str) -> list[dict[str, Any]]:
    query = f"/image/v2/images?instance_uuid={world.first}&backup_type={kind}"
    found: list[dict[str, Any]] = world.cloud.client.get(query, headers=world.alice.headers).json()[
        "images"
    ]
    return found


def test_create_backup_keeps_the_newest_rotation_backups_of_its_type(world: World) -> None:
    weekly = backup(world, "weekly-1", "weekly", 1)
    daily = [backup(world, f"daily-{n}", "daily", 2) for n in range(3)]
    kept = backups(world, "daily")
    assert {i["id"] for i in kept} == set(daily[1:])
    for image in kept:
        assert image["status"] == "active"
        assert image["image_type"] == "backup" and image["backup_type"] == "daily"
        assert image["instance_uuid"] == world.first
    assert [i["id"] for i in backups(world, "weekly")] == [weekly]  # another type is apart


def test_create_backup_below_2_45_gives_a_location_unless_rotation_is_0(world: World) -> None:
    path = f"/servers/{world.first}/action"
    body = {"createBackup": {"name": "hourly", "backup_type": "hourly", "rotation": 1}}
    response = world.a.post(path, body)
    assert response.status_code == 202 and not response.content, response.text
    image_id = response.headers["Location"].rsplit("/", 1)[1]
    assert response.headers["Location"].endswith(f"/image/v2/images/{image_id}")
    wait_status(world.a, world.first, "ACTIVE")
    body["createBackup"]["rotation"] = 0
    response = world.a.post(path, body)
    assert response.status_code == 202 and "Location" not in response.headers
    wait_status(world.a, world.first, "ACTIVE")
    assert backups(world, "hourly") == []  # rotation 0 keeps none, the new one included


@pytest.mark.parametrize(
    "args",
    [
        None,
        {},
        {"name": "b", "backup_type": "daily"},
        {"name": "b", "rotation": 1},
        {"backup_type": "daily", "rotation": 1},
        {"name": "b", "backup_type": "daily", "rotation": -1},
        {"name": "b", "backup_type": "daily", "rotation": "many"},
        {"name": "b", "backup_type": 7, "rotation": 1},
        {"name": "", "backup_type": "daily", "rotation": 1},
        {"name": "b", "backup_type": "daily", "rotation": 1, "extra": 1},
        {"name": "b", "backup_type": "daily", "rotation": 1, "metadata": "x"},
    ],
)
def test_bad_backup_requests_are_400_and_make_no_image(world: World, args: Any) -> None:
    before = len(backups(world, "daily"))
    response = world.a.post(f"/servers/{world.first}/action", {"createBackup": args})
    fault(response, 400, "badRequest")
    assert len(backups(world, "daily")) == before


def test_others_cannot_back_up_my_server(world: World) -> None:
    body = {"createBackup": {"name": "b", "backup_type": "theirs", "rotation": 1}}
    path = f"/servers/{world.first}/action"
    fault(world.b.post(path, body), 404, "itemNotFound")
    fault(world.reader.post(path, body), 403, "forbidden")
    fault(world.restricted.post(path, body), 403, "forbidden")
    assert backups(world, "theirs") == []


# ---------------------------------------------------------------------- the websocket


def test_the_websocket_types_on_the_guests_shell(world: World) -> None:
    url = serial_url(world.a, world.first)
    said = run_on(world, url, "echo marker-$((20 + 22))", "marker-42")
    assert "marker-42" in said
    # the log keeps what the session did (QEMU appends it to console.log as it goes)
    deadline = time.monotonic() + 10
    while True:
        log = world.a.ok("POST", f"/servers/{world.first}/action", {"os-getConsoleOutput": {}})
        if "marker-42" in log["output"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "marker-42" in log["output"]


def test_a_token_reaches_its_own_server_only(world: World) -> None:
    for server_id in (world.first, world.second):
        url = serial_url(world.a, server_id)
        said = run_on(world, url, "cat /sys/class/dmi/id/product_uuid", "\n/ # ")
        assert server_id in said.lower()
        other = world.second if server_id == world.first else world.first
        assert other not in said.lower()


def test_text_frames_are_typed_too(world: World) -> None:
    url = serial_url(world.a, world.first)
    with world.cloud.client.websocket_connect(ws_path(url)) as ws:
        assert ws.accepted_subprotocol is None  # none offered, none chosen
        ws.send_text("echo text-$((1 + 2))\n")
        assert "text-3" in read_until(ws, "text-3")


@pytest.mark.parametrize("query", ["", "?token=", "?token=garbage", "?token=" + "x" * 5000])
def test_a_bad_token_is_refused_before_attaching(world: World, query: str) -> None:
    refused = denied(world, "/compute/serial-console" + query)
    assert refused.status_code == 401
    assert refused.json()["unauthorized"]["code"] == 401


def test_a_second_client_is_refused_while_one_is_attached(world: World) -> None:
    url = serial_url(world.a, world.first)
    with world.cloud.client.websocket_connect(ws_path(url), subprotocols=["binary"]):
        refused = denied(world, ws_path(url))
        assert refused.status_code == 409
        assert "in use" in refused.json()["conflictingRequest"]["message"]
    assert "again-2" in run_on(world, url, "echo again-$((1 + 1))", "again-2")


def test_a_huge_frame_closes_the_session(world: World) -> None:
    url = serial_url(world.a, world.first)
    with world.cloud.client.websocket_connect(ws_path(url), subprotocols=["binary"]) as ws:
        ws.send_bytes(b"x" * (1024 * 1024))
        while True:
            message = receive_within(ws, 30)
            if message["type"] == "websocket.close":
                break
        assert message["code"] == 1009
    assert "after-4" in run_on(world, url, "\x03echo after-$((2 + 2))", "after-4")


def test_an_expired_token_is_refused_and_not_shown(world: World) -> None:
    url = serial_url(world.a, world.first)
    world.clock.advance(TTL + 1)
    refused = denied(world, ws_path(url))
    assert refused.status_code == 401
    response = world.admin.get(f"/os-console-auth-tokens/{token_of(url)}", version="2.31")
    fault(response, 404, "itemNotFound")


def test_tokens_die_with_their_server_and_the_session_ends(world: World) -> None:
    url = serial_url(world.a, world.second)
    token = token_of(url)
    with world.cloud.client.websocket_connect(ws_path(url), subprotocols=["binary"]) as ws:
        world.a.ok("DELETE", f"/servers/{world.second}", status=204)
        while True:  # the guest's output until QEMU goes, then the close
            message = receive_within(ws, 90)
            if message["type"] == "websocket.close":
                break
    wait_for(lambda: world.a.get(f"/servers/{world.second}").status_code == 404, "deletion")
    response = world.admin.get(f"/os-console-auth-tokens/{token}", version="2.31")
    fault(response, 404, "itemNotFound")
    assert denied(world, ws_path(url)).status_code == 401
