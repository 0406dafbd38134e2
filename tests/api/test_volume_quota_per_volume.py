"""per_volume_gigabytes in a project's volume quota: an admin sets it, it bounds the size
of new and extended volumes (413, as Cinder's VolumeSizeExceedsLimit), a reset lifts it."""

from __future__ import annotations

from .support import Cloud
from .test_volumes import admin, cinder_error, cloud, tenant

__all__ = ["cloud"]


def test_per_volume_gigabytes_bounds_new_and_extended_volumes(cloud: Cloud) -> None:
    c = tenant(cloud)
    a = admin(cloud)
    before = a.get(f"/os-quota-sets/{c.project_id}").json()["quota_set"]
    largest = before["per_volume_gigabytes"]
    body = {"quota_set": {"per_volume_gigabytes": 2, "volumes": 11}}
    updated = a.put(f"/os-quota-sets/{c.project_id}", body)
    assert updated.status_code == 200, updated.text
    assert updated.json()["quota_set"]["per_volume_gigabytes"] == 2
    assert updated.json()["quota_set"]["volumes"] == 11

    message = cinder_error(c.post("/volumes", {"volume": {"size": 3}}), 413)
    assert "VolumeSizeExceedsLimit" in message
    volume_id = c.create(size=2)["id"]
    cinder_error(c.action(volume_id, "os-extend", {"new_size": 3}), 413)
    assert c.show(volume_id)["size"] == 2 and c.show(volume_id)["status"] == "available"
    assert [v["id"] for v in c.get("/volumes").json()["volumes"]] == [volume_id]

    # another project keeps the default
    other = tenant(cloud)
    assert other.create(size=3)["size"] == 3

    for bad in (-2, "2", True, 2**31):
        cinder_error(
            a.put(f"/os-quota-sets/{c.project_id}", {"quota_set": {"per_volume_gigabytes": bad}}),
            400,
        )
    cinder_error(c.put(f"/os-quota-sets/{c.project_id}", body), 403)

    assert a.delete(f"/os-quota-sets/{c.project_id}").status_code == 200
    shown = a.get(f"/os-quota-sets/{c.project_id}").json()["quota_set"]
    assert shown["per_volume_gigabytes"] == largest
    assert c.action(volume_id, "os-extend", {"new_size": 3}).status_code == 202
