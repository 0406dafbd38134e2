"""os-update_snapshot_status: what a snapshot's maker reports (Nova's assisted snapshots,
with the user's token), along Cinder's transitions, by the snapshot's project members and
admins (Cinder's default policy); and the admin actions os-reset_status and os-force_delete
on snapshots."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import update

from souverain.volume import models as m

from .support import Cloud
from .test_volumes import Cinder, admin, cinder_error, cloud, tenant

__all__ = ["cloud"]

REPORT = "os-update_snapshot_status"


def set_status(cloud: Cloud, snapshot_id: str, status: str) -> None:
    with cloud.platform.volume.shared.db.session() as s:
        s.execute(update(m.Snapshot).where(m.Snapshot.id == snapshot_id).values(status=status))


def report(c: Cinder, snapshot_id: str, body: Any) -> Any:
    return c.post(f"/snapshots/{snapshot_id}/action", {REPORT: body})


def snapshot(c: Cinder, snapshot_id: str) -> dict[str, Any]:
    response = c.get(f"/snapshots/{snapshot_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["snapshot"]
    return body


def test_admin_reports_a_creating_snapshot_available_with_its_progress(cloud: Cloud) -> None:
    c = tenant(cloud)
    a = admin(cloud)
    snap = c.snapshot(c.create()["id"])
    set_status(cloud, snap["id"], "creating")
    assert report(a, snap["id"], {"status": "creating", "progress": "40%"}).status_code == 202
    seen = snapshot(c, snap["id"])
    assert seen["status"] == "creating"
    assert seen["os-extended-snapshot-attributes:progress"] == "40%"
    assert report(a, snap["id"], {"status": "available", "progress": "100%"}).status_code == 202
    seen = snapshot(c, snap["id"])
    assert seen["status"] == "available"
    assert seen["os-extended-snapshot-attributes:progress"] == "100%"
    # an available snapshot reports nothing more
    message = cinder_error(report(a, snap["id"], {"status": "error"}), 400)
    assert "available not allowed" in message

    set_status(cloud, snap["id"], "deleting")
    message = cinder_error(report(a, snap["id"], {"status": "available"}), 400)
    assert "error_deleting" in message
    assert report(a, snap["id"], {"status": "error_deleting"}).status_code == 202
    assert snapshot(c, snap["id"])["status"] == "error_deleting"


def test_bad_reports_are_refused_and_change_nothing(cloud: Cloud) -> None:
    c = tenant(cloud)
    a = admin(cloud)
    snap = c.snapshot(c.create()["id"])
    set_status(cloud, snap["id"], "creating")
    for body in (
        {},
        {"status": 5},
        {"status": "available", "progress": "101%"},
        {"status": "available", "progress": "90"},
        {"status": "available", "progress": "abc%"},
        {"status": "available", "progress": "²%"},
        {"status": "available", "progress": 90},
        {"status": "available", "extra": "x"},
        "available",
        None,
    ):
        cinder_error(report(a, snap["id"], body), 400)
    cinder_error(report(a, snap["id"], {"status": "weird"}), 400)
    cinder_error(report(a, str(uuid.uuid4()), {"status": "available"}), 404)
    cinder_error(report(a, "not-an-id", {"status": "available"}), 404)
    seen = snapshot(c, snap["id"])
    assert seen["status"] == "creating"
    assert seen["os-extended-snapshot-attributes:progress"] == "0%"


def test_the_projects_member_reports_readers_and_other_projects_cannot(cloud: Cloud) -> None:
    c = tenant(cloud)
    snap = c.snapshot(c.create()["id"])
    set_status(cloud, snap["id"], "creating")
    reader = cloud.member(role="reader", project_id=c.project_id)
    r = Cinder(cloud, reader.token, reader.project_id, reader.id)
    cinder_error(report(r, snap["id"], {"status": "error"}), 403)
    other = tenant(cloud)
    cinder_error(report(other, snap["id"], {"status": "error"}), 404)
    assert snapshot(c, snap["id"])["status"] == "creating"
    # what Tempest's test_update_snapshot_status does: the member reports error at 80%
    assert report(c, snap["id"], {"status": "error", "progress": "80%"}).status_code == 202
    seen = snapshot(c, snap["id"])
    assert seen["status"] == "error"
    assert seen["os-extended-snapshot-attributes:progress"] == "80%"
    # an error snapshot reports nothing more; the admin resets it
    cinder_error(report(c, snap["id"], {"status": "available"}), 400)


def test_reset_status_and_force_delete_are_for_admins(cloud: Cloud) -> None:
    c = tenant(cloud)
    a = admin(cloud)
    snap = c.snapshot(c.create()["id"])
    action = f"/snapshots/{snap['id']}/action"
    cinder_error(c.post(action, {"os-reset_status": {"status": "error"}}), 403)
    cinder_error(c.post(action, {"os-force_delete": {}}), 403)
    cinder_error(a.post(action, {"os-reset_status": {"status": "nonsense"}}), 400)
    assert a.post(action, {"os-reset_status": {"status": "backing-up"}}).status_code == 202
    assert snapshot(c, snap["id"])["status"] == "backing-up"
    cinder_error(c.delete(f"/snapshots/{snap['id']}"), 400)
    assert a.post(action, {"os-force_delete": {}}).status_code == 202
    cinder_error(c.get(f"/snapshots/{snap['id']}"), 404)
