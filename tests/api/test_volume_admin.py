"""The cloud-wide volume calls: hosts and pools for admins, manage/unmanage refused with
501 (nothing outside the service to adopt), image metadata actions, cascade delete."""

from __future__ import annotations

from pathlib import Path

from .support import Cloud
from .test_volumes import admin, cinder_error, cloud, tenant, upload_image

__all__ = ["cloud"]


def test_hosts_and_pools_for_admins_only(cloud: Cloud) -> None:
    a, c = admin(cloud), tenant(cloud)
    volume_id = c.create(size=2)["id"]
    c.snapshot(volume_id)
    hosts = a.get("/os-hosts").json()["hosts"]
    assert [(h["host_name"], h["service"]) for h in hosts] == [
        ("souverain", "cinder-scheduler"),
        ("souverain@local", "cinder-volume"),
    ]
    assert all(h["service-status"] == "available" for h in hosts)
    cinder_error(a.get("/os-hosts/souverain"), 404)  # a scheduler holds no volumes
    resources = [r["resource"] for r in a.get("/os-hosts/souverain@local").json()["host"]]
    assert resources[0]["project"] == "(total)"
    mine = [r for r in resources if r["project"] == c.project_id]
    assert mine == [
        {
            "host": "souverain@local",
            "project": c.project_id,
            "volume_count": "1",
            "total_volume_gb": "2",
            "snapshot_count": "1",
            "total_snapshot_gb": "2",
        }
    ]
    cinder_error(a.get("/os-hosts/elsewhere"), 404)
    pools = a.get("/scheduler-stats/get_pools").json()["pools"]
    assert pools == [{"name": "souverain@local#qcow2"}]
    detail = a.get("/scheduler-stats/get_pools?detail=true").json()["pools"][0]
    caps = detail["capabilities"]
    assert caps["total_capacity_gb"] >= caps["free_capacity_gb"] >= 0
    assert caps["allocated_capacity_gb"] >= 2 and caps["vendor_name"] == "Open Source"
    for path in ("/os-hosts", "/os-hosts/souverain@local", "/scheduler-stats/get_pools"):
        cinder_error(c.get(path), 403)


def test_manage_and_unmanage_are_refused_with_501_and_change_nothing(cloud: Cloud) -> None:
    a, c = admin(cloud), tenant(cloud)
    body = {"volume": {"host": "souverain@local#qcow2", "ref": {"source-name": "x"}}}
    message = cinder_error(a.post("/os-volume-manage", body), 501)
    assert "not supported" in message
    cinder_error(a.post("/os-volume-manage", {}), 400)
    cinder_error(a.post("/os-snapshot-manage", {"snapshot": {"volume_id": "v"}}), 501)
    a.version = "3.8"
    assert a.get("/manageable_volumes?host=souverain@local").json() == {"manageable-volumes": []}
    cinder_error(a.post("/manageable_volumes", body), 501)
    a.version = "3.7"
    cinder_error(a.get("/manageable_volumes"), 404)
    cinder_error(c.post("/os-volume-manage", body), 403)

    volume_id = c.create()["id"]
    snap = c.snapshot(volume_id)
    cinder_error(c.action(volume_id, "os-unmanage"), 501)
    cinder_error(c.post(f"/snapshots/{snap['id']}/action", {"os-unmanage": {}}), 501)
    assert c.show(volume_id)["status"] == "available"
    assert c.get(f"/snapshots/{snap['id']}").status_code == 200
    other = tenant(cloud)
    cinder_error(other.action(volume_id, "os-unmanage"), 404)


def test_image_metadata_actions(cloud: Cloud, tmp_path: Path) -> None:
    c = tenant(cloud)
    image_id = upload_image(cloud, c, tmp_path)
    volume_id = c.create(imageRef=image_id)["id"]
    shown = c.action(volume_id, "os-show_image_metadata").json()["metadata"]
    assert shown["image_id"] == image_id
    added = c.action(volume_id, "os-set_image_metadata", {"metadata": {"os_type": "linux"}})
    assert added.status_code == 200 and added.json()["metadata"]["os_type"] == "linux"
    assert added.json()["metadata"]["image_id"] == image_id  # merged, not replaced
    assert c.show(volume_id)["volume_image_metadata"]["os_type"] == "linux"
    gone = c.action(volume_id, "os-unset_image_metadata", {"key": "os_type"})
    assert gone.status_code == 200
    assert "os_type" not in c.show(volume_id)["volume_image_metadata"]
    cinder_error(c.action(volume_id, "os-unset_image_metadata", {"key": "os_type"}), 404)
    cinder_error(c.action(volume_id, "os-unset_image_metadata", {}), 400)
    cinder_error(c.action(volume_id, "os-set_image_metadata", {"metadata": "x"}), 400)
    other = tenant(cloud)
    cinder_error(other.action(volume_id, "os-show_image_metadata"), 404)
    cinder_error(other.action(volume_id, "os-set_image_metadata", {"metadata": {"a": "b"}}), 404)


def test_delete_with_cascade_takes_the_snapshots(cloud: Cloud) -> None:
    c = tenant(cloud)
    volume_id = c.create()["id"]
    snaps = [c.snapshot(volume_id)["id"] for _ in range(2)]
    cinder_error(c.delete(f"/volumes/{volume_id}"), 400)
    response = c.client.delete(f"/volume/v3/volumes/{volume_id}?cascade=true", headers=c._h())
    assert response.status_code == 202
    cinder_error(c.get(f"/volumes/{volume_id}"), 404)
    for snap_id in snaps:
        cinder_error(c.get(f"/snapshots/{snap_id}"), 404)
        assert not cloud.platform.volume.backend.snapshot_path(snap_id).exists()


def test_another_project_cannot_cascade_delete(cloud: Cloud) -> None:
    c, other = tenant(cloud), tenant(cloud)
    volume_id = c.create()["id"]
    c.snapshot(volume_id)
    url = f"/volume/v3/volumes/{volume_id}?cascade=true"
    cinder_error(other.client.delete(url, headers=other._h()), 404)
    assert c.show(volume_id)["status"] == "available"


def test_os_reserve_and_unreserve_and_compute_steps(cloud: Cloud) -> None:
    c, other = tenant(cloud), tenant(cloud)
    volume_id = c.create()["id"]
    assert c.action(volume_id, "os-reserve").status_code == 202
    assert c.show(volume_id)["status"] == "attaching"
    assert "must be available" in cinder_error(c.action(volume_id, "os-reserve"), 400)
    cinder_error(other.action(volume_id, "os-unreserve"), 404)
    assert c.action(volume_id, "os-unreserve").status_code == 202
    assert c.show(volume_id)["status"] == "available"
    cinder_error(c.action(volume_id, "os-unreserve"), 400)
    message = cinder_error(c.action(volume_id, "os-detach"), 400)
    assert "compute API" in message
    cinder_error(c.action("xxx", "os-detach"), 404)
    assert c.show(volume_id)["status"] == "available"


def test_a_missing_marker_is_404(cloud: Cloud) -> None:
    c = tenant(cloud)
    marker = "00000000-0000-0000-0000-000000000001"
    cinder_error(c.get(f"/volumes?marker={marker}"), 404)
    cinder_error(c.get(f"/snapshots?marker={marker}"), 404)


def test_maintenance_is_a_status_an_admin_may_set_and_force_delete(cloud: Cloud) -> None:
    a, c = admin(cloud), tenant(cloud)
    volume_id = c.create()["id"]
    reset = a.action(volume_id, "os-reset_status", {"status": "maintenance"})
    assert reset.status_code == 202
    assert c.show(volume_id)["status"] == "maintenance"
    cinder_error(c.delete(f"/volumes/{volume_id}"), 400)
    assert a.action(volume_id, "os-force_delete").status_code == 202
    cinder_error(c.get(f"/volumes/{volume_id}"), 404)
