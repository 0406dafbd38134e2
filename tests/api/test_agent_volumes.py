"""Volumes of servers on agent hosts, through the in-process API, the hosts' side played
through the real internal API (each host's own token), as the agent process plays it in
tests/platform/test_agent_volumes.py.

On RBD (the shared Ceph cluster): an attach is `attaching` until the server's host
reports its guest holds the volume, a detach `detaching` until it reports the guest let
go; only the server's host's assignment names the volume (pool and image, nothing
secret); another host's reports change nothing; a failed attach gives the volume back;
a server holding volumes does not move between hosts. On files: 409, nothing reserved.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from souverain.compute.models import InstanceAction

from .support import Cloud
from .test_compute_api import Nova
from .test_compute_evacuate import Host, boot_on
from .test_volume_encryption import encrypted_type
from .test_volumes import admin, tenant
from .test_volumes_rbd import database_backend, rbd_cloud  # noqa: F401 - fixtures

ATTACH = "/servers/{}/os-volume_attachments"


def _attach(nova: Nova, server_id: str, volume_id: str) -> Any:
    body = {"volumeAttachment": {"volumeId": volume_id}}
    return nova.post(ATTACH.format(server_id), body, version="2.79")


def _volumes_of(host: Host, server_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    assigned = host.assigned()[server_id]
    return assigned["volumes"], assigned["releasing"]


def _hold(host: Host, server_id: str, held: list[str], failed: Any = None) -> int:
    body = {"held": held, "failed": failed or {}}
    return int(host.call("PUT", f"/servers/{server_id}/volumes", json=body).status_code)


def _actions(cloud: Cloud, server_id: str, name: str) -> list[tuple[str | None, str | None]]:
    with cloud.platform.db.session() as s:
        rows = s.scalars(
            select(InstanceAction)
            .where(InstanceAction.server_id == server_id, InstanceAction.action == name)
            .order_by(InstanceAction.id)
        ).all()
        return [(r.result, r.message) for r in rows]


def everywhere(hosts: list[Host], volume_id: str) -> list[str]:
    """The servers whose assignment, on any of these hosts, names the volume."""
    return [
        server_id
        for host in hosts
        for server_id, server in host.assigned().items()
        if any(v["id"] == volume_id for v in server.get("volumes", []))
        or volume_id in server.get("releasing", [])
    ]


@pytest.fixture(scope="module")
def agent_servers(rbd_cloud: Cloud) -> dict[str, Any]:  # noqa: F811 - the imported fixture
    """Two agent hosts of the module's RBD cloud, a server on each (the module's own)."""
    hv1, hv2 = Host(rbd_cloud, "avhv1"), Host(rbd_cloud, "avhv2")
    nova = Nova(rbd_cloud.client, rbd_cloud.admin_token)
    a, b = boot_on(rbd_cloud, hv1, nova), boot_on(rbd_cloud, hv2, nova)
    return {"cloud": rbd_cloud, "hv1": hv1, "hv2": hv2, "nova": nova, "a": a, "b": b}


@pytest.fixture
def rbd_world(agent_servers: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The servers and a new volume of the admin's, let go of and deleted afterwards."""
    cloud = agent_servers["cloud"]
    cinder = admin(cloud)
    volume = cinder.create(size=1, name="shared")
    yield {**agent_servers, "vol": volume}
    volumes = cloud.platform.volume
    status = cinder.show(volume["id"])["status"]
    if status == "in-use":
        volumes.attachments.states.move(volume["id"], "begin_detach")
    if status in ("in-use", "detaching"):
        volumes.detached(volume["id"])
    volumes.unreserve(volume["id"])
    assert cinder.delete(f"/volumes/{volume['id']}").status_code == 202


def test_an_rbd_volume_moves_between_hosts_only_on_their_reports(
    rbd_world: dict[str, Any],
) -> None:
    w = rbd_world
    cloud, hv1, hv2, nova, a, b = (w[k] for k in ("cloud", "hv1", "hv2", "nova", "a", "b"))
    vol = w["vol"]["id"]
    cinder = admin(cloud)

    attached = _attach(nova, a, vol)
    assert attached.status_code == 200, attached.text
    device = attached.json()["volumeAttachment"]["device"]
    assert cinder.show(vol)["status"] == "attaching"
    volumes, releasing = _volumes_of(hv1, a)
    assert releasing == []
    [doc] = volumes
    pool = cloud.platform.settings.volume.rbd_pool
    assert doc == {
        "id": vol,
        "device": device,
        "serial": vol[:20],
        "readonly": False,
        "rbd": {"pool": pool, "image": f"volume-{vol}"},
    }
    assert everywhere([hv2], vol) == []  # no other host learns of it
    # the volume is not free while its host has not answered
    assert _attach(nova, b, vol).status_code == 400
    # another host cannot report on the server, nor its own report move the volume
    assert _hold(hv2, a, [vol]) == 404
    assert _hold(hv2, b, [vol]) == 204
    assert cinder.show(vol)["status"] == "attaching"

    assert _hold(hv1, a, [vol]) == 204
    shown = cinder.show(vol)
    assert shown["status"] == "in-use"
    assert [(x["server_id"], x["device"]) for x in shown["attachments"]] == [(a, device)]
    assert _actions(cloud, a, "attach_volume") == [("Success", None)]

    detach = nova.delete(f"{ATTACH.format(a)}/{vol}", version="2.79")
    assert detach.status_code == 202, detach.text
    assert cinder.show(vol)["status"] == "detaching"
    assert _volumes_of(hv1, a) == ([], [vol])  # unplug it, and say so
    assert _attach(nova, b, vol).status_code == 400  # not before the host let go
    assert _hold(hv1, a, [vol]) == 204  # still held: still detaching
    assert cinder.show(vol)["status"] == "detaching"
    assert _hold(hv1, a, []) == 204
    assert cinder.show(vol)["status"] == "available"
    assert _volumes_of(hv1, a) == ([], [])
    assert _actions(cloud, a, "detach_volume") == [("Success", None)]

    # on the other host: its assignment names it now, and a failed attach gives it back
    assert _attach(nova, b, vol).status_code == 200
    assert everywhere([hv1, hv2], vol) == [b]
    assert _hold(hv2, b, [], {vol: "the cluster said no"}) == 204
    assert cinder.show(vol)["status"] == "available"
    [(result, message)] = _actions(cloud, b, "attach_volume")
    assert result == "Error" and message is not None and "the cluster said no" in message
    assert everywhere([hv1, hv2], vol) == []


def test_a_server_holding_volumes_does_not_move_between_hosts(rbd_world: dict[str, Any]) -> None:
    w = rbd_world
    nova, hv1, a, vol = w["nova"], w["hv1"], w["a"], w["vol"]["id"]
    assert _attach(nova, a, vol).status_code == 200
    assert _hold(hv1, a, [vol]) == 204
    live = {"os-migrateLive": {"host": None, "block_migration": "auto"}}
    moved = nova.post(f"/servers/{a}/action", live, version="2.30")
    assert moved.status_code == 409, moved.text
    assert "detach them first" in moved.text
    cold = nova.post(f"/servers/{a}/action", {"migrate": None}, version="2.56")
    assert cold.status_code == 409, cold.text
    assert w["hv1"].assigned()[a].get("migration") is None


def test_an_attached_volume_of_an_agent_host_is_extended_only_detached(
    rbd_world: dict[str, Any],
) -> None:
    w = rbd_world
    cinder, vol = admin(w["cloud"]), w["vol"]["id"]
    assert _attach(w["nova"], w["a"], vol).status_code == 200
    assert _hold(w["hv1"], w["a"], [vol]) == 204
    response = cinder.action(vol, "os-extend", {"new_size": 2})
    assert response.status_code == 400, response.text
    assert "agent host avhv1" in response.text and "while it is detached" in response.text
    shown = cinder.show(vol)
    assert (shown["status"], shown["size"]) == ("in-use", 1)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"held": "x"},
        {"held": [1]},
        {"held": ["x" * 37]},
        {"held": ["a"] * 65},
        {"held": [], "failed": []},
        {"held": [], "failed": {"v": "x" * 256}},
    ],
)
def test_hostile_volume_reports_are_400_and_change_nothing(
    rbd_world: dict[str, Any], body: dict[str, Any]
) -> None:
    w = rbd_world
    hv1, a, vol = w["hv1"], w["a"], w["vol"]["id"]
    assert _attach(w["nova"], a, vol).status_code == 200
    response = hv1.call("PUT", f"/servers/{a}/volumes", json=body)
    assert response.status_code == 400, response.text
    assert admin(w["cloud"]).show(vol)["status"] == "attaching"


def test_another_project_neither_attaches_to_nor_detaches_from_the_server(
    rbd_world: dict[str, Any],
) -> None:
    """Another project's member: its own volume and the admin's server, 404 as if the
    server did not exist; nothing reserved, no host woken with it."""
    w = rbd_world
    cloud, a = w["cloud"], w["a"]
    other = tenant(cloud)
    theirs = other.create(size=1, name="theirs")["id"]
    member = Nova(cloud.client, other.token)
    assert _attach(member, a, theirs).status_code == 404
    assert member.delete(f"{ATTACH.format(a)}/{w['vol']['id']}", version="2.79").status_code == 404
    assert other.show(theirs)["status"] == "available"
    assert everywhere([w["hv1"], w["hv2"]], theirs) == []


def test_file_volumes_stay_refused_on_agent_hosts_with_nothing_reserved(cloud: Cloud) -> None:
    hv1 = Host(cloud, "hv1")
    nova = Nova(cloud.client, cloud.admin_token)
    server_id = boot_on(cloud, hv1, nova)
    cinder = admin(cloud)
    vol = cinder.create(size=1)["id"]
    response = _attach(nova, server_id, vol)
    assert response.status_code == 409, response.text
    assert "shared storage" in response.text and 'volume.backend = \\"rbd\\"' in response.text
    assert cinder.show(vol)["status"] == "available"
    assert hv1.assigned()[server_id]["volumes"] == []
    assert _actions(cloud, server_id, "attach_volume") == []
    assert _attach(nova, server_id, "00000000-0000-0000-0000-00000000dead").status_code == 404


def test_a_deleted_servers_volume_is_free_once_its_host_removed_the_guest(
    rbd_world: dict[str, Any],
) -> None:
    w = rbd_world
    cloud, hv1, nova, vol = w["cloud"], w["hv1"], w["nova"], w["vol"]["id"]
    doomed = boot_on(cloud, hv1, nova)
    assert _attach(nova, doomed, vol).status_code == 200
    assert _hold(hv1, doomed, [vol]) == 204
    assert nova.delete(f"/servers/{doomed}").status_code == 204
    assert admin(cloud).show(vol)["status"] == "in-use"  # the guest may still hold it
    assert hv1.assigned()[doomed]["desired"] == "absent"
    assert hv1.report(doomed, "absent") == 204  # QEMU gone on the host
    assert admin(cloud).show(vol)["status"] == "available"
    assert everywhere([hv1, w["hv2"]], vol) == []


def test_an_encrypted_volume_is_refused_on_agent_hosts_with_nothing_reserved(
    agent_servers: dict[str, Any],
) -> None:
    """A host is handed no secret, so it could open an encrypted volume only as ciphertext:
    409, the volume stays available and no assignment names it."""
    cloud, nova, hv1, a = (agent_servers[k] for k in ("cloud", "nova", "hv1", "a"))
    cinder = admin(cloud)
    encrypted_type(cinder, "luks-agents")
    vol = cinder.create(size=1, volume_type="luks-agents")["id"]
    refused = _attach(nova, a, vol)
    assert refused.status_code == 409 and "encrypted" in refused.text, refused.text
    assert cinder.show(vol)["status"] == "available"
    assert everywhere([hv1], vol) == []
    assert cinder.delete(f"/volumes/{vol}").status_code == 202
