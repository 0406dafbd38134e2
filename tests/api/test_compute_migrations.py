"""Live and cold migration between agent hosts through the in-process API: the agents'
halves are played through the real internal API (each host's own token), as the agent
processes play them in tests/platform/test_host_migration.py.

A live migration moves through preparing, running, post-migrating to completed as the
destination and source report; a failure or an abort gives the server back to its source;
a cold migration ends in VERIFY_RESIZE, then confirmResize or revertResize. os-migrations
and a server's migrations show the moves per microversion. Only an admin moves servers
or reads migrations; bad bodies, hosts and states are refused and change nothing; a host
reports only on moves it takes part in, each step only by its own side."""

from __future__ import annotations

import time
from typing import Any

import pytest

from souverain.compute.models import Migration, Server, ServerGroupMember

from .support import ADMIN_PASSWORD, Cloud, Member, SteppingClock
from .test_compute_api import Nova
from .test_compute_evacuate import Host as AgentHost
from .test_compute_evacuate import boot_on
from .test_compute_scheduling import _image
from .test_identity_trusts import _app_cred_token as app_cred_token

BEAT = {"vcpus": 16, "memory_mib": 16384, "disk_gib": 100, "hypervisor_type": "QEMU"}
ADDRESSES = {"hv1": "10.70.0.1", "hv2": "10.70.0.2", "hv3": "10.70.0.3"}


class Host(AgentHost):
    """An agent host played through the internal API, with an underlay address."""

    def heartbeat(self) -> dict[str, Any]:
        return {**BEAT, "address": ADDRESSES[self.name]}

    def step(self, migration_id: int, step: str, **fields: Any) -> Any:
        return self.call("PUT", f"/migrations/{migration_id}", json={"step": step, **fields})


@pytest.fixture
def world(cloud: Cloud, clock: SteppingClock) -> dict[str, Any]:
    hv1, hv2 = Host(cloud, "hv1"), Host(cloud, "hv2")
    admin = Nova(cloud.client, cloud.admin_token)
    server_id = boot_on(cloud, hv1, admin)
    return {"hv1": hv1, "hv2": hv2, "admin": admin, "server": server_id, "clock": clock}


def _action(nova: Nova, server_id: str, body: Any, version: str = "2.30") -> Any:
    return nova.post(f"/servers/{server_id}/action", body, version=version)


def _live(nova: Nova, server_id: str, args: Any, version: str = "2.30") -> Any:
    return _action(nova, server_id, {"os-migrateLive": args}, version)


def _state(cloud: Cloud, server_id: str) -> tuple[str | None, str, str | None]:
    with cloud.platform.db.session() as s:
        row = s.get(Server, server_id)
        assert row is not None
        return row.host, row.vm_state, row.task_state


def _migrations(cloud: Cloud) -> list[Migration]:
    with cloud.platform.db.session() as s:
        return list(s.query(Migration).order_by(Migration.id))


def test_a_live_migration_moves_through_both_agents(cloud: Cloud, world: dict[str, Any]) -> None:
    hv1, hv2, admin, server_id = world["hv1"], world["hv2"], world["admin"], world["server"]
    started = _live(admin, server_id, {"host": None, "block_migration": "auto"})
    assert started.status_code == 202, started.text
    assert _state(cloud, server_id) == ("hv2", "active", "migrating")
    assert admin.server(server_id)["status"] == "MIGRATING"
    (mig,) = _migrations(cloud)
    assert (mig.status, mig.source_compute, mig.dest_compute) == ("preparing", "hv1", "hv2")
    assert mig.dest_host == "10.70.0.2"
    # the destination's part: prepare, with what to make the guest from
    part = hv2.assigned()[server_id]["migration"]
    assert (part["role"], part["status"], part["type"]) == ("destination", "preparing", LIVE)
    assert part["build"]["disk_format"] == "raw" and part["build"]["meta_data"]["uuid"]
    # the source still has the guest, and nothing to do yet
    assert hv1.assigned()[server_id]["migration"]["role"] == "source"
    assert hv1.step(mig.id, "sent", console="").status_code == 409  # not its turn
    assert hv1.step(mig.id, "listening", nbd_port=1, stream_port=2).status_code == 409
    assert hv2.step(mig.id, "listening", nbd_port=49152, stream_port=49153).status_code == 204
    endpoint = hv1.assigned()[server_id]["migration"]["endpoint"]
    assert endpoint == {"address": "10.70.0.2", "nbd_port": 49152, "stream_port": 49153}
    shown = admin.ok("GET", f"/servers/{server_id}/migrations", version="2.80")["migrations"]
    assert [(m["status"], m["dest_compute"], m["uuid"]) for m in shown] == [
        ("running", "hv2", mig.uuid)
    ]
    assert hv1.step(mig.id, "sent", console="bGluZQo=").status_code == 204
    assert hv1.step(mig.id, "sent", console="bGluZQo=").status_code == 204  # said again
    finishing = hv2.assigned()[server_id]["migration"]
    assert (finishing["status"], finishing["endpoint"]["console"]) == ("post-migrating", "bGluZQo=")
    assert hv2.step(mig.id, "arrived", running=True).status_code == 204
    assert _state(cloud, server_id) == ("hv2", "active", None)
    assert server_id not in hv1.assigned()  # the source removes its copy
    assert "migration" not in hv2.assigned()[server_id]
    server = admin.server(server_id, version="2.16")
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "hv2")
    listed = admin.ok("GET", "/os-migrations", version="2.23")["migrations"]
    assert [(m["status"], m["migration_type"], m["source_compute"]) for m in listed] == [
        ("completed", LIVE, "hv1")
    ]
    assert "links" not in listed[0]  # ended
    actions = admin.ok("GET", f"/servers/{server_id}/os-instance-actions")["instanceActions"]
    assert actions[0]["action"] == LIVE
    assert admin.ok("GET", f"/servers/{server_id}/migrations", version="2.23")["migrations"] == []


LIVE = "live-migration"


def test_a_failed_live_migration_leaves_the_server_on_its_source(
    cloud: Cloud, world: dict[str, Any]
) -> None:
    hv1, hv2, admin, server_id = world["hv1"], world["hv2"], world["admin"], world["server"]
    assert _live(admin, server_id, {"host": "hv2", "block_migration": True}).status_code == 202
    (mig,) = _migrations(cloud)
    assert hv2.step(mig.id, "listening", nbd_port=49152, stream_port=49153).status_code == 204
    failed = hv1.step(mig.id, "failed", message="the mirror could not connect")
    assert failed.status_code == 204
    assert _state(cloud, server_id) == ("hv1", "active", None)
    assert server_id not in hv2.assigned()  # the destination removes what it made
    assert "migration" not in hv1.assigned()[server_id]
    (mig,) = _migrations(cloud)
    assert (mig.status, mig.message) == ("error", "the mirror could not connect")
    action = admin.ok("GET", f"/servers/{server_id}/os-instance-actions")["instanceActions"][0]
    detail = admin.ok("GET", f"/servers/{server_id}/os-instance-actions/{action['request_id']}")
    assert detail["instanceAction"]["message"] == "the mirror could not connect"
    assert admin.server(server_id)["status"] == "ACTIVE"
    assert hv2.step(mig.id, "arrived").status_code == 409  # ended: nothing follows


def test_an_abort_cancels_a_running_live_migration(cloud: Cloud, world: dict[str, Any]) -> None:
    hv2, admin, server_id = world["hv2"], world["admin"], world["server"]
    assert _live(admin, server_id, {"block_migration": "auto"}).status_code == 202
    (mig,) = _migrations(cloud)
    path = f"/servers/{server_id}/migrations/{mig.id}"
    early = admin.delete(path, headers={"OpenStack-API-Version": "compute 2.24"})
    assert early.status_code == 400 and "preparing" in early.text  # only running, to 2.64
    assert admin.delete(path, version="2.23").status_code == 404  # no abort before 2.24
    assert hv2.step(mig.id, "listening", nbd_port=49152, stream_port=49153).status_code == 204
    assert admin.delete(path, version="2.24").status_code == 202
    assert _state(cloud, server_id) == ("hv1", "active", None)
    assert _migrations(cloud)[0].status == "cancelled"
    assert admin.get(path, version="2.24").status_code == 404


def test_a_cold_migration_is_confirmed_or_reverted(cloud: Cloud, world: dict[str, Any]) -> None:
    hv1, hv2, admin, server_id = world["hv1"], world["hv2"], world["admin"], world["server"]
    assert _action(admin, server_id, {"migrate": None}).status_code == 202
    assert _state(cloud, server_id) == ("hv2", "active", "resize_migrating")
    assert admin.server(server_id)["status"] == "RESIZE"
    (mig,) = _migrations(cloud)
    assert (mig.status, mig.migration_type) == ("migrating", "migration")
    assert hv1.step(mig.id, "exported", port=10809).status_code == 204
    part = hv2.assigned()[server_id]["migration"]
    assert part["endpoint"] == {"address": "10.70.0.1", "port": 10809}
    assert hv2.step(mig.id, "arrived", running=True).status_code == 204
    assert _state(cloud, server_id) == ("hv2", "resized", None)
    assert admin.server(server_id)["status"] == "VERIFY_RESIZE"
    assert hv1.assigned()[server_id]["migration"]["status"] == "finished"  # kept until confirmed
    assert hv2.assigned()[server_id]["desired"] == "running"
    assert _action(admin, server_id, {"revertResize": None}).status_code == 202
    assert _state(cloud, server_id) == ("hv1", "active", "powering-on")
    assert server_id not in hv2.assigned()
    assert hv1.report(server_id, "running") == 204
    assert admin.server(server_id)["status"] == "ACTIVE"
    # again, confirmed this time: the source lets go
    assert _action(admin, server_id, {"migrate": {"host": "hv2"}}, "2.56").status_code == 202
    second = _migrations(cloud)[-1]
    assert hv1.step(second.id, "exported", port=10810).status_code == 204
    assert hv2.step(second.id, "arrived", running=True).status_code == 204
    assert _action(admin, server_id, {"confirmResize": None}).status_code == 204
    assert _state(cloud, server_id) == ("hv2", "active", None)
    assert server_id not in hv1.assigned()
    statuses = [m.status for m in _migrations(cloud)]
    assert statuses == ["reverted", "confirmed"]
    names = [
        a["action"]
        for a in admin.ok("GET", f"/servers/{server_id}/os-instance-actions")["instanceActions"]
    ]
    assert names[:4] == ["confirmResize", "migrate", "revertResize", "migrate"]


@pytest.mark.parametrize(
    ("args", "version", "status"),
    [
        ({"host": "hv1", "block_migration": "auto"}, "2.30", 400),  # the same host
        ({"host": "nowhere", "block_migration": "auto"}, "2.30", 400),
        ({"host": "", "block_migration": "auto"}, "2.30", 400),
        ({"host": "h" * 256, "block_migration": "auto"}, "2.30", 400),
        ({"host": "hv2\n", "block_migration": "auto"}, "2.30", 400),
        ({"host": 7, "block_migration": "auto"}, "2.30", 400),
        ({"host": "hv2"}, "2.30", 400),  # block_migration is required
        ({"host": "hv2", "block_migration": False}, "2.30", 400),  # no shared storage
        ({"host": "hv2", "block_migration": "maybe"}, "2.30", 400),
        ({"host": "hv2", "block_migration": "auto"}, "2.24", 400),  # auto from 2.25
        ({"host": "hv2", "block_migration": True}, "2.24", 400),  # disk_over_commit needed
        ({"host": "hv2", "block_migration": "auto", "force": True}, "2.68", 400),
        ({"host": "hv2", "block_migration": "auto", "flavor": "1"}, "2.30", 400),
        ("hv2", "2.30", 400),
    ],
)
def test_bad_live_migrations_are_refused_and_change_nothing(
    cloud: Cloud, world: dict[str, Any], args: Any, version: str, status: int
) -> None:
    response = _live(world["admin"], world["server"], args, version)
    assert response.status_code == status, response.text
    assert response.json()["badRequest"]["message"]
    assert _state(cloud, world["server"]) == ("hv1", "active", None)
    assert _migrations(cloud) == []
    assert world["server"] not in world["hv2"].assigned()


@pytest.mark.parametrize(
    ("args", "version"),
    [({"host": "hv2"}, "2.55"), ({"host": "hv1"}, "2.56"), ({"hosts": "hv2"}, "2.56"), (7, "2.56")],
)
def test_bad_cold_migrations_are_refused(
    cloud: Cloud, world: dict[str, Any], args: Any, version: str
) -> None:
    response = _action(world["admin"], world["server"], {"migrate": args}, version)
    assert response.status_code == 400, response.text
    assert _state(cloud, world["server"]) == ("hv1", "active", None)
    assert _migrations(cloud) == []


def test_a_server_not_active_or_with_nowhere_to_go_is_refused(
    cloud: Cloud, world: dict[str, Any]
) -> None:
    hv1, admin, server_id = world["hv1"], world["admin"], world["server"]
    assert admin.post(f"/servers/{server_id}/action", {"os-stop": None}).status_code == 202
    assert hv1.report(server_id, "stopped") == 204
    stopped = _live(admin, server_id, {"block_migration": "auto"})
    assert stopped.status_code == 409, stopped.text
    assert "Cannot 'os-migrateLive' instance" in stopped.text and "stopped" in stopped.text
    world["clock"].advance(61)  # hv2 silent: nowhere to go
    hv1.beat()
    nowhere = _action(admin, server_id, {"migrate": None})
    assert nowhere.status_code == 400 and "No valid host" in nowhere.text
    assert _state(cloud, server_id) == ("hv1", "stopped", None)
    assert _migrations(cloud) == []


def test_a_server_of_the_all_in_one_host_is_refused(cloud: Cloud, world: dict[str, Any]) -> None:
    admin = world["admin"]
    local = cloud.platform.compute.host
    response = _live(admin, world["server"], {"host": local, "block_migration": "auto"})
    assert response.status_code == 400 and "runs no host agent" in response.text


def test_a_host_reports_only_on_its_own_moves(cloud: Cloud, world: dict[str, Any]) -> None:
    hv3 = Host(cloud, "hv3")
    assert _live(world["admin"], world["server"], {"block_migration": "auto", "host": "hv2"})
    (mig,) = _migrations(cloud)
    assert hv3.step(mig.id, "listening", nbd_port=1, stream_port=2).status_code == 404
    assert hv3.step(mig.id, "failed").status_code == 404
    assert hv3.call("PUT", "/migrations/x", json={"step": "failed"}).status_code == 404
    other = world["hv2"].call("PUT", f"/migrations/{mig.id}", json={"step": 5})
    assert other.status_code == 400
    cross = hv3.call(
        "PUT", f"/../hv2/migrations/{mig.id}", json={"step": "failed"}
    )  # another host's path
    assert cross.status_code in (403, 404)
    for bad in ({"nbd_port": 0, "stream_port": 2}, {"nbd_port": "1", "stream_port": 2}, {}):
        assert world["hv2"].step(mig.id, "listening", **bad).status_code == 400
    assert world["hv2"].step(mig.id, "jumped").status_code == 400
    assert _migrations(cloud)[0].status == "preparing"
    member = cloud.member("member")
    refused = cloud.client.put(
        f"/internal/v1/hosts/hv2/migrations/{mig.id}",
        json={"step": "failed"},
        headers={"X-Auth-Token": member.token},
    )
    assert refused.status_code == 401
    assert _migrations(cloud)[0].status == "preparing"


def test_os_migrations_filters_and_pages(cloud: Cloud, world: dict[str, Any]) -> None:
    hv1, hv2, admin, server_id = world["hv1"], world["hv2"], world["admin"], world["server"]
    for _ in range(2):
        assert _live(admin, server_id, {"block_migration": "auto"}).status_code == 202
        mig = _migrations(cloud)[-1]
        assert hv2.step(mig.id, "failed", message="no room").status_code == 204
        world["clock"].advance(1)
    assert _action(admin, server_id, {"migrate": None}).status_code == 202
    first, second, cold = _migrations(cloud)
    get = lambda q, v="2.80": admin.get(f"/os-migrations{q}", version=v)  # noqa: E731
    newest = get("").json()["migrations"]
    assert [m["id"] for m in newest] == [cold.id, second.id, first.id]
    assert newest[0]["links"] if newest[0]["migration_type"] == LIVE else True
    assert {m["user_id"] for m in newest} == {cloud.admin_id}
    assert "user_id" not in get("", "2.79").json()["migrations"][0]
    assert "uuid" not in get("", "2.58").json()["migrations"][0]
    assert "migration_type" not in get("", "2.22").json()["migrations"][0]
    assert [m["id"] for m in get("?migration_type=migration").json()["migrations"]] == [cold.id]
    assert len(get("?status=error").json()["migrations"]) == 2
    assert len(get("?host=hv2").json()["migrations"]) == 3
    assert get("?host=hv9").json()["migrations"] == []
    assert len(get(f"?instance_uuid={server_id}").json()["migrations"]) == 3
    assert get(f"?project_id={cloud.admin_project_id}&user_id=nobody").json()["migrations"] == []
    page = get("?limit=2").json()
    assert [m["id"] for m in page["migrations"]] == [cold.id, second.id]
    assert f"marker={second.uuid}" in page["migrations_links"][0]["href"]
    assert [m["id"] for m in get(f"?marker={second.uuid}").json()["migrations"]] == [first.id]
    assert get("?marker=nope").status_code == 400
    assert get("?limit=-1").status_code == 400
    assert get("?migration_type=teleport").status_code == 400
    assert get("?changes-since=yesterday").status_code == 400
    assert get("?sort_key=id").status_code == 400  # strict from 2.59
    assert get("?sort_key=id", "2.58").status_code == 200  # ignored below
    assert get("?changes-before=2000-01-01T00:00:00Z", "2.65").status_code == 400
    assert get("?changes-before=2000-01-01T00:00:00Z").json()["migrations"] == []
    assert hv1.assigned()[server_id]["migration"]["status"] == "migrating"


def test_only_an_admin_moves_servers_or_reads_migrations(
    cloud: Cloud, world: dict[str, Any]
) -> None:
    server_id = world["server"]
    admin = Member(
        cloud.admin_id, "admin", ADMIN_PASSWORD, cloud.admin_project_id, cloud.admin_token
    )
    callers = [
        cloud.member("member", project_id=cloud.admin_project_id).token,
        cloud.member("reader", project_id=cloud.admin_project_id).token,
        cloud.member("member").token,  # another project
        app_cred_token(cloud, admin, ["reader"]),  # the admin's, restricted to reading
    ]
    for token in callers:
        nova = Nova(cloud.client, token)
        for body in ({"os-migrateLive": {"block_migration": "auto"}}, {"migrate": None}):
            response = _action(nova, server_id, body)
            assert response.status_code in (403, 404), response.text
        for path in ("/os-migrations", f"/servers/{server_id}/migrations"):
            assert nova.get(path, version="2.80").status_code in (403, 404), path
        gone = nova.delete(f"/servers/{server_id}/migrations/1", version="2.80")
        assert gone.status_code in (403, 404)
    assert _state(cloud, server_id) == ("hv1", "active", None)
    assert _migrations(cloud) == []


def test_a_silent_source_is_refused_and_a_disabled_one_drained(
    cloud: Cloud, world: dict[str, Any]
) -> None:
    hv1, hv2, admin, server_id = world["hv1"], world["hv2"], world["admin"], world["server"]
    world["clock"].advance(61)  # hv1 silent: nobody there to send the guest
    hv2.beat()
    silent = _live(admin, server_id, {"block_migration": "auto"})
    assert silent.status_code == 400, silent.text
    assert "Compute service of hv1 is unavailable" in silent.text
    assert _migrations(cloud) == []
    hv1.beat()
    services = admin.ok("GET", "/os-services?host=hv1", version="2.53")["services"]
    disable = {"status": "disabled", "disabled_reason": "drain"}
    admin.ok("PUT", f"/os-services/{services[0]['id']}", disable, version="2.53")
    assert _live(admin, server_id, {"block_migration": "auto"}).status_code == 202
    assert _state(cloud, server_id) == ("hv2", "active", "migrating")


def test_the_destination_honours_the_servers_group(cloud: Cloud, world: dict[str, Any]) -> None:
    hv1, hv2, admin, server_id = world["hv1"], world["hv2"], world["admin"], world["server"]
    hv3 = Host(cloud, "hv3")
    group = admin.ok(
        "POST",
        "/os-server-groups",
        {"server_group": {"name": "apart", "policies": ["anti-affinity"]}},
    )["server_group"]["id"]
    body = {
        "server": {
            "name": "db-2",
            "imageRef": _image(cloud),
            "flavorRef": "1",
            "networks": "none",
            "availability_zone": "nova:hv2",
        },
        "os:scheduler_hints": {"group": group},
    }
    other = admin.ok("POST", "/servers", body, status=202)["server"]["id"]
    deadline = time.monotonic() + 30
    while other not in hv2.assigned() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hv2.report(other, "running") == 204
    with cloud.platform.db.session() as s:  # db-1 joins the group (as if booted in it)
        s.add(ServerGroupMember(group_id=group, server_id=server_id))
    onto_peer = _live(admin, server_id, {"host": "hv2", "block_migration": "auto"})
    assert onto_peer.status_code == 400 and "No valid host" in onto_peer.text
    assert _migrations(cloud) == []
    assert _live(admin, server_id, {"block_migration": "auto"}).status_code == 202
    assert _state(cloud, server_id) == ("hv3", "active", "migrating")
    assert server_id in hv3.assigned() and server_id in hv1.assigned()


def test_force_complete_tells_the_source_while_it_sends(
    cloud: Cloud, world: dict[str, Any]
) -> None:
    hv1, hv2, admin, server_id = world["hv1"], world["hv2"], world["admin"], world["server"]
    assert _live(admin, server_id, {"block_migration": "auto"}).status_code == 202
    (mig,) = _migrations(cloud)
    path = f"/servers/{server_id}/migrations/{mig.id}/action"
    early = admin.post(path, {"force_complete": None}, version="2.22")
    assert early.status_code == 400 and "preparing" in early.text
    assert hv2.step(mig.id, "listening", nbd_port=49152, stream_port=49153).status_code == 204
    assert admin.post(path, {"force_complete": None}, version="2.21").status_code == 404
    for bad in ({"force_complete": {}}, {"force": None}, {}, []):
        assert admin.post(path, bad, version="2.22").status_code == 400, bad
    assert "force_complete" not in hv1.assigned()[server_id]["migration"]["endpoint"]
    other = f"/servers/{server_id}/migrations/{mig.id + 1}/action"
    assert admin.post(other, {"force_complete": None}, version="2.22").status_code == 404
    assert admin.post(path, {"force_complete": None}, version="2.22").status_code == 202
    assert hv1.assigned()[server_id]["migration"]["endpoint"]["force_complete"] is True
    assert _migrations(cloud)[0].status == "running"


def test_a_server_deleted_while_it_moves_ends_its_move(cloud: Cloud, world: dict[str, Any]) -> None:
    hv1, hv2, admin, server_id = world["hv1"], world["hv2"], world["admin"], world["server"]
    assert _live(admin, server_id, {"block_migration": "auto"}).status_code == 202
    (mig,) = _migrations(cloud)
    assert hv2.step(mig.id, "listening", nbd_port=49152, stream_port=49153).status_code == 204
    assert admin.delete(f"/servers/{server_id}").status_code == 204
    assert hv2.assigned()[server_id]["desired"] == "absent"
    assert hv1.assigned()[server_id]["desired"] == "absent"  # both let go of their copies
    assert hv2.report(server_id, "absent") == 204
    assert server_id not in hv1.assigned() and server_id not in hv2.assigned()
    (mig,) = _migrations(cloud)
    assert (mig.status, mig.message) == ("error", "The server was deleted while it moved.")
