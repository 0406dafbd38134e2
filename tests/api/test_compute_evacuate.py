"""Evacuate (os-evacuate) through the in-process API: a server of an agent host that
went silent is rebuilt on another agent host; the host agents' side is played through
the real internal API (a host's own token), as an agent process plays it in
tests/platform/test_host_agents.py.

Only an admin evacuates; a live host, the same host, an unknown one, a host without an
agent, bad bodies per microversion are refused and change nothing. A reboot there is
the agent's and ends on its report of that reboot; an action no agent does is 409."""

from __future__ import annotations

import time
from typing import Any

import pytest

from souverain.compute.models import ConsoleTail, Server

from .support import ADMIN_PASSWORD, Cloud, Member, SteppingClock
from .test_compute_api import Nova
from .test_compute_scheduling import _image
from .test_identity_trusts import _app_cred_token as app_cred_token

BEAT = {"vcpus": 16, "memory_mib": 16384, "disk_gib": 100, "hypervisor_type": "QEMU"}


class Host:
    def __init__(self, cloud: Cloud, name: str) -> None:
        self.cloud, self.name = cloud, name
        self.token = cloud.platform.compute.agents.enroll(name)
        self.beat()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        url = f"/internal/v1/hosts/{self.name}{path}"
        return self.cloud.client.request(method, url, headers={"X-Auth-Token": self.token}, **kw)

    def beat(self) -> None:
        assert self.call("POST", "/heartbeat", json=self.heartbeat()).status_code == 200

    def heartbeat(self) -> dict[str, Any]:
        return BEAT

    def assigned(self) -> dict[str, dict[str, Any]]:
        return {s["id"]: s for s in self.call("GET", "/assignments").json()["servers"]}

    def report(self, server_id: str, state: str, echo: bool = True) -> int:
        """Report the server's state as an agent does: naming the action the assignment
        names (a reboot's, a rebuild's), unless `echo` is False."""
        body: dict[str, Any] = {"state": state}
        action = self.assigned().get(server_id, {}).get("action")
        if echo and action is not None:
            body["action"] = action
        return int(self.call("PUT", f"/servers/{server_id}/state", json=body).status_code)


def boot_on(cloud: Cloud, host: Host, admin: Nova) -> str:
    """A server forced onto `host` by an admin, built there (its agent's report played)."""
    body = {
        "server": {
            "name": "db-1",
            "imageRef": _image(cloud),
            "flavorRef": "1",
            "networks": "none",
            "availability_zone": f"nova:{host.name}",
        }
    }
    server_id = admin.ok("POST", "/servers", body, status=202, version="2.74")["server"]["id"]
    deadline = time.monotonic() + 30
    while server_id not in host.assigned() and time.monotonic() < deadline:
        time.sleep(0.05)  # handed over once placed
    assert host.assigned()[server_id]["task"] == "spawning"
    assert host.report(server_id, "running") == 204
    assert admin.server(server_id)["status"] == "ACTIVE"
    return server_id


@pytest.fixture
def world(cloud: Cloud, clock: SteppingClock) -> dict[str, Any]:
    hv1, hv2 = Host(cloud, "hv1"), Host(cloud, "hv2")
    admin = Nova(cloud.client, cloud.admin_token)
    server_id = boot_on(cloud, hv1, admin)
    return {"hv1": hv1, "hv2": hv2, "admin": admin, "server": server_id, "clock": clock}


def _silence(world: dict[str, Any]) -> None:
    """hv1 stops reporting; hv2 goes on."""
    world["clock"].advance(61)
    world["hv2"].beat()


def _evacuate(nova: Nova, server_id: str, body: Any, version: str = "2.14") -> Any:
    return nova.post(f"/servers/{server_id}/action", {"evacuate": body}, version=version)


def _host_of(cloud: Cloud, server_id: str) -> tuple[str | None, str, str | None]:
    with cloud.platform.db.session() as s:
        row = s.get(Server, server_id)
        assert row is not None
        return row.host, row.vm_state, row.task_state


def test_a_server_of_a_silent_host_is_rebuilt_on_another(
    cloud: Cloud, world: dict[str, Any]
) -> None:
    hv1, hv2, admin, server_id = world["hv1"], world["hv2"], world["admin"], world["server"]
    live = _evacuate(admin, server_id, {})
    assert live.status_code == 400 and "Compute service of hv1 is still in use." in live.text
    _silence(world)
    assert admin.server(server_id, version="2.16")["host_status"] == "UNKNOWN"
    done = _evacuate(admin, server_id, {"host": "hv2"})
    assert done.status_code == 200 and not done.content
    assert _host_of(cloud, server_id) == ("hv2", "active", "rebuild_spawning")
    assert server_id not in hv1.assigned()  # back, hv1 would remove its guest
    assignment = hv2.assigned()[server_id]
    assert (assignment["desired"], assignment["task"]) == ("running", "rebuild_spawning")
    assert assignment["build"]["disk_format"] == "raw"
    assert hv1.report(server_id, "running") == 404  # no longer hv1's to report on
    assert hv2.report(server_id, "running") == 204
    shown = admin.server(server_id, version="2.16")
    assert (shown["status"], shown["OS-EXT-SRV-ATTR:host"], shown["host_status"]) == (
        "ACTIVE",
        "hv2",
        "UP",
    )
    actions = admin.ok("GET", f"/servers/{server_id}/os-instance-actions")["instanceActions"]
    assert actions[0]["action"] == "evacuate"


def test_from_2_95_an_evacuated_server_is_stopped_and_to_2_13_a_password_answers(
    cloud: Cloud, world: dict[str, Any]
) -> None:
    _silence(world)
    old = _evacuate(world["admin"], world["server"], {"onSharedStorage": False}, "2.13")
    assert old.status_code == 200 and len(old.json()["adminPass"]) >= 8
    assert world["hv2"].report(world["server"], "running") == 204
    # back to hv1's turn: it is silent again after hv2 stops reporting
    world["clock"].advance(61)
    world["hv1"].beat()
    new = _evacuate(world["admin"], world["server"], {}, "2.95")
    assert new.status_code == 200
    assert _host_of(cloud, world["server"]) == ("hv1", "stopped", "rebuild_spawning")
    assert world["hv1"].assigned()[world["server"]]["desired"] == "stopped"
    assert world["hv1"].report(world["server"], "stopped") == 204
    assert world["admin"].server(world["server"])["status"] == "SHUTOFF"


@pytest.mark.parametrize(
    ("body", "version", "status"),
    [
        ({"host": "hv1"}, "2.14", 400),  # the same host
        ({"host": "nowhere"}, "2.14", 404),
        ({"host": ""}, "2.14", 400),
        ({"host": "h" * 256}, "2.14", 400),
        ({"host": 7}, "2.14", 400),
        ({"adminPass": 5}, "2.14", 400),
        ({"onSharedStorage": False}, "2.14", 400),  # gone from 2.14
        ({}, "2.13", 400),  # required to 2.13
        ({"onSharedStorage": True}, "2.13", 400),  # no shared storage here
        ({"onSharedStorage": "maybe"}, "2.13", 400),
        ({"force": True}, "2.68", 400),  # gone from 2.68
        ({"force": "yes"}, "2.29", 400),
        ({"flavor": "1"}, "2.14", 400),
        ("hv2", "2.14", 400),
    ],
)
def test_bad_evacuations_are_refused_and_change_nothing(
    cloud: Cloud, world: dict[str, Any], body: Any, version: str, status: int
) -> None:
    _silence(world)
    response = _evacuate(world["admin"], world["server"], body, version)
    assert response.status_code == status, response.text
    assert _host_of(cloud, world["server"]) == ("hv1", "active", None)
    assert world["server"] not in world["hv2"].assigned()


def test_onto_a_host_without_an_agent_or_with_no_room_is_refused(
    cloud: Cloud, world: dict[str, Any]
) -> None:
    _silence(world)
    local = cloud.platform.compute.host
    response = _evacuate(world["admin"], world["server"], {"host": local})
    assert response.status_code == 400 and "runs no host agent" in response.text
    world["clock"].advance(61)  # hv2 silent too: nowhere to go
    response = _evacuate(world["admin"], world["server"], {})
    assert response.status_code == 400 and "No valid host" in response.text
    assert _host_of(cloud, world["server"]) == ("hv1", "active", None)


def test_only_an_admin_evacuates(cloud: Cloud, world: dict[str, Any]) -> None:
    _silence(world)
    admin_project = cloud.admin_project_id
    for role in ("member", "reader"):
        caller = cloud.member(role, project_id=admin_project)
        response = _evacuate(Nova(cloud.client, caller.token), world["server"], {})
        assert response.status_code == 403, response.text
    other = cloud.member("member")
    response = _evacuate(Nova(cloud.client, other.token), world["server"], {})
    assert response.status_code in (403, 404), response.text
    # the admin's own application credential, restricted to reading
    admin = Member(
        cloud.admin_id, "admin", ADMIN_PASSWORD, cloud.admin_project_id, cloud.admin_token
    )
    restricted = app_cred_token(cloud, admin, ["reader"])
    response = _evacuate(Nova(cloud.client, restricted), world["server"], {})
    assert response.status_code == 403, response.text
    assert _host_of(cloud, world["server"]) == ("hv1", "active", None)


def test_a_reboot_on_an_agent_host_is_the_agents_and_ends_on_its_report(
    world: dict[str, Any],
) -> None:
    hv1, admin, server_id = world["hv1"], world["admin"], world["server"]
    assert (
        admin.post(f"/servers/{server_id}/action", {"reboot": {"type": "HARD"}}).status_code == 202
    )
    assert admin.server(server_id)["status"] == "HARD_REBOOT"
    reboot = hv1.assigned()[server_id]["reboot"]
    assert reboot["hard"] is True and isinstance(reboot["action"], int)
    assert hv1.report(server_id, "running", echo=False) == 204  # not the reboot's answer
    assert admin.server(server_id)["status"] == "HARD_REBOOT"
    for bad in ("1", -1, 2**63, True):
        body = {"state": "running", "action": bad}
        url = f"/servers/{server_id}/state"
        assert hv1.call("PUT", url, json=body).status_code == 400
    done = {"state": "running", "action": reboot["action"]}
    assert hv1.call("PUT", f"/servers/{server_id}/state", json=done).status_code == 204
    assert admin.server(server_id)["status"] == "ACTIVE"
    assert "reboot" not in hv1.assigned()[server_id]


def test_an_action_its_agent_does_not_do_is_409_and_changes_nothing(
    world: dict[str, Any],
) -> None:
    admin, server_id = world["admin"], world["server"]
    before = admin.server(server_id)
    answer = admin.post(f"/servers/{server_id}/action", {"shelve": None})
    assert answer.status_code == 409
    assert "hv1" in answer.json()["conflictingRequest"]["message"]
    after = admin.server(server_id)
    assert (after["status"], after["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
    assert after["updated"] == before["updated"]


def test_the_console_of_a_guest_on_an_agent_host_is_what_its_agent_sent(
    world: dict[str, Any], cloud: Cloud
) -> None:
    hv1, hv2, admin, server_id = world["hv1"], world["hv2"], world["admin"], world["server"]

    def console(length: int | None = None) -> Any:
        body = {"os-getConsoleOutput": {} if length is None else {"length": length}}
        return admin.post(f"/servers/{server_id}/action", body)

    assert console().json() == {"output": ""}  # nothing sent yet
    url = f"/servers/{server_id}/console"
    assert hv1.call("PUT", url, json={"output": "boot\nlogin: "}).status_code == 204
    assert console().json() == {"output": "boot\nlogin: "}
    assert console(1).json() == {"output": "login: "}
    # another host, a bad body, too much: refused, and nothing changed
    assert hv2.call("PUT", url, json={"output": "forged"}).status_code == 404
    for bad in ({}, {"output": 7}, []):
        assert hv1.call("PUT", url, json=bad).status_code == 400
    too_much = hv1.call("PUT", url, json={"output": "x" * 65537})
    assert too_much.status_code in (400, 413)  # over the tail kept, or over the body limit
    assert console().json() == {"output": "boot\nlogin: "}
    # a member of another project does not see it
    other = cloud.member("member")
    outsider = Nova(cloud.client, other.token)
    seen = outsider.post(f"/servers/{server_id}/action", {"os-getConsoleOutput": {}})
    assert seen.status_code == 404
    # it goes with the server
    assert admin.delete(f"/servers/{server_id}").status_code == 204
    assert hv1.report(server_id, "absent") == 204
    assert hv1.call("PUT", url, json={"output": "late"}).status_code == 404
    with cloud.platform.db.session() as s:
        assert s.get(ConsoleTail, server_id) is None


@pytest.mark.parametrize(
    ("action", "task", "state", "status", "power", "back"),
    [
        ("pause", "pausing", "paused", "PAUSED", 3, "unpause"),
        ("suspend", "suspending", "suspended", "SUSPENDED", 7, "resume"),
    ],
)
def test_pause_and_suspend_on_an_agent_host_end_on_its_reports(
    world: dict[str, Any], action: str, task: str, state: str, status: str, power: int, back: str
) -> None:
    hv1, admin, server_id = world["hv1"], world["admin"], world["server"]
    assert admin.post(f"/servers/{server_id}/action", {action: None}).status_code == 202
    assert hv1.assigned()[server_id]["desired"] == state
    assert hv1.report(server_id, "running") == 204  # not yet
    assert admin.server(server_id)["OS-EXT-STS:task_state"] == task
    assert hv1.report(server_id, state) == 204
    server = admin.server(server_id)
    assert (server["status"], server["OS-EXT-STS:power_state"]) == (status, power)
    assert hv1.assigned()[server_id]["desired"] == state  # and stays so
    assert admin.post(f"/servers/{server_id}/action", {back: None}).status_code == 202
    assert hv1.assigned()[server_id]["desired"] == "running"
    assert hv1.report(server_id, "running") == 204
    server = admin.server(server_id)
    assert (server["status"], server["OS-EXT-STS:power_state"]) == ("ACTIVE", 1)


def test_a_rebuild_on_an_agent_host_is_built_anew_there(
    world: dict[str, Any], cloud: Cloud
) -> None:
    hv1, admin, server_id = world["hv1"], world["admin"], world["server"]
    image = _image(cloud)
    body = {"rebuild": {"imageRef": image, "name": "db-1-rebuilt"}}
    answer = admin.post(f"/servers/{server_id}/action", body)
    assert answer.status_code == 202
    assert answer.json()["server"]["adminPass"]
    assigned = hv1.assigned()[server_id]
    assert assigned["task"] == "rebuild_spawning" and assigned["desired"] == "running"
    assert assigned["build"]["meta_data"]["name"] == "db-1-rebuilt"
    assert isinstance(assigned["action"], int)
    assert hv1.report(server_id, "running", echo=False) == 204  # the old guest, not the new
    assert admin.server(server_id)["status"] == "REBUILD"
    assert hv1.report(server_id, "running") == 204
    server = admin.server(server_id)
    assert (server["status"], server["name"], server["OS-EXT-SRV-ATTR:host"]) == (
        "ACTIVE",
        "db-1-rebuilt",
        "hv1",
    )
    assert "action" not in hv1.assigned()[server_id]
