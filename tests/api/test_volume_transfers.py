"""Volume transfers between projects: the key shown once, accepted within the taker's
quota, snapshots moving with the volume, and nobody else seeing or taking the offer."""

from __future__ import annotations

from .support import Cloud
from .test_volumes import Cinder, admin, cinder_error, cloud, tenant

__all__ = ["cloud"]


def offer(c: Cinder, volume_id: str, path: str = "/os-volume-transfer") -> dict[str, object]:
    made = c.post(path, {"transfer": {"volume_id": volume_id, "name": "gift"}})
    assert made.status_code == 202, made.text
    body: dict[str, object] = made.json()["transfer"]
    return body


def test_transfer_moves_the_volume_and_its_snapshots_to_the_accepting_project(
    cloud: Cloud,
) -> None:
    giver, taker = tenant(cloud), tenant(cloud)
    giver.version = taker.version = "3.0"
    volume_id = giver.create(size=2)["id"]
    snap = giver.snapshot(volume_id)
    made = offer(giver, volume_id)
    assert set(made) == {"id", "created_at", "name", "volume_id", "auth_key", "links"}
    assert giver.show(volume_id)["status"] == "awaiting-transfer"
    shown = giver.get(f"/os-volume-transfer/{made['id']}").json()["transfer"]
    assert "auth_key" not in shown and shown["volume_id"] == volume_id
    listed = giver.get("/os-volume-transfer").json()["transfers"]
    assert [set(t) for t in listed] == [{"id", "volume_id", "name", "links"}]
    cinder_error(giver.delete(f"/volumes/{volume_id}"), 400)  # not while offered

    # the taker cannot see the offer, and a wrong key takes nothing
    assert taker.get("/os-volume-transfer").json()["transfers"] == []
    cinder_error(taker.get(f"/os-volume-transfer/{made['id']}"), 404)
    wrong = {"accept": {"auth_key": "0" * 16}}
    cinder_error(taker.post(f"/os-volume-transfer/{made['id']}/accept", wrong), 400)
    assert giver.show(volume_id)["status"] == "awaiting-transfer"

    right = {"accept": {"auth_key": made["auth_key"]}}
    accepted = taker.post(f"/os-volume-transfer/{made['id']}/accept", right)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["transfer"]["volume_id"] == volume_id
    assert taker.show(volume_id)["status"] == "available"
    cinder_error(giver.get(f"/volumes/{volume_id}"), 404)
    assert taker.get(f"/snapshots/{snap['id']}").status_code == 200
    cinder_error(giver.get(f"/snapshots/{snap['id']}"), 404)
    usage = taker.get(f"/os-quota-sets/{taker.project_id}?usage=true").json()["quota_set"]
    assert usage["volumes"]["in_use"] == 1 and usage["gigabytes"]["in_use"] == 4
    cinder_error(taker.post(f"/os-volume-transfer/{made['id']}/accept", right), 404)


def test_deleting_a_transfer_gives_the_volume_back(cloud: Cloud) -> None:
    giver, other = tenant(cloud), tenant(cloud)
    volume_id = giver.create()["id"]
    made = offer(giver, volume_id)
    cinder_error(other.delete(f"/os-volume-transfer/{made['id']}"), 404)
    assert giver.delete(f"/os-volume-transfer/{made['id']}").status_code == 202
    assert giver.show(volume_id)["status"] == "available"
    accept = {"accept": {"auth_key": made["auth_key"]}}
    cinder_error(other.post(f"/os-volume-transfer/{made['id']}/accept", accept), 404)


def test_volume_transfers_path_and_fields_follow_the_microversion(cloud: Cloud) -> None:
    giver, taker = tenant(cloud), tenant(cloud)
    giver.version = "3.54"
    volume_id = giver.create()["id"]
    cinder_error(giver.get("/volume-transfers"), 404)
    giver.version = "3.55"
    made = offer(giver, volume_id, "/volume-transfers")
    assert made["no_snapshots"] is False and "accepted" not in made
    giver.version = "3.57"
    shown = giver.get(f"/volume-transfers/{made['id']}").json()["transfer"]
    assert shown["source_project_id"] == giver.project_id and shown["accepted"] is False
    assert shown["destination_project_id"] is None
    detail = giver.get("/volume-transfers/detail").json()["transfers"]
    assert [t["id"] for t in detail] == [made["id"]]
    taker.version = "3.57"
    accept = {"accept": {"auth_key": made["auth_key"]}}
    assert taker.post(f"/volume-transfers/{made['id']}/accept", accept).status_code == 202


def test_a_transfer_is_refused_when_it_cannot_complete(cloud: Cloud) -> None:
    giver, taker, a = tenant(cloud), tenant(cloud), admin(cloud)
    attached = giver.create()["id"]
    cloud.platform.volume.reserve(giver.ctx(), attached, "server-1")
    cinder_error(giver.post("/os-volume-transfer", {"transfer": {"volume_id": attached}}), 400)
    cinder_error(giver.post("/os-volume-transfer", {"transfer": {}}), 400)
    with_snap = giver.create()["id"]
    giver.snapshot(with_snap)
    giver.version = "3.55"
    body = {"transfer": {"volume_id": with_snap, "no_snapshots": True}}
    cinder_error(giver.post("/volume-transfers", body), 400)
    assert giver.show(with_snap)["status"] == "available"

    # over the taker's quota: refused, and the offer stays
    big = giver.create(size=3)["id"]
    made = offer(giver, big)
    a.put(f"/os-quota-sets/{taker.project_id}", {"quota_set": {"gigabytes": 2}})
    accept = {"accept": {"auth_key": made["auth_key"]}}
    cinder_error(taker.post(f"/os-volume-transfer/{made['id']}/accept", accept), 413)
    assert giver.show(big)["status"] == "awaiting-transfer"


def test_a_reader_cannot_offer_or_accept(cloud: Cloud) -> None:
    giver = tenant(cloud)
    volume_id = giver.create()["id"]
    made = offer(giver, volume_id)
    member = cloud.member(role="reader")
    reader = Cinder(cloud, member.token, member.project_id, member.id)
    cinder_error(reader.post("/os-volume-transfer", {"transfer": {"volume_id": volume_id}}), 403)
    accept = {"accept": {"auth_key": made["auth_key"]}}
    cinder_error(reader.post(f"/os-volume-transfer/{made['id']}/accept", accept), 403)
    assert giver.show(volume_id)["status"] == "awaiting-transfer"
