"""Snapshots of in-use volumes, microversion by microversion, as Cinder decides them.

From 3.66 an in-use volume needs no flag, a true `force` is ignored and a false one refused,
as in Cinder. Below 3.66 only an explicit `force: false` is refused: Cinder also refuses a
missing flag, but the `openstack` CLI leaves `--force` out while sending 3.65
(volume/schemas.snapshot_create). A refused request leaves nothing behind.
"""

from __future__ import annotations

import uuid

import pytest

from .support import Cloud
from .test_volumes import Cinder, cinder_error, cloud, tenant

__all__ = ["cloud"]


def attached(cloud: Cloud, c: Cinder) -> str:
    volume_id: str = c.create()["id"]
    server_id = str(uuid.uuid4())
    cloud.platform.volume.reserve(c.ctx(), volume_id, server_id)
    cloud.platform.volume.attached(volume_id, server_id, "/dev/vdb", "att")
    return volume_id


def snapshots_of(c: Cinder, volume_id: str) -> list[str]:
    listed = c.get(f"/snapshots?volume_id={volume_id}").json()["snapshots"]
    return [s["id"] for s in listed]


@pytest.mark.parametrize(
    ("version", "force", "status"),
    [
        ("3.0", None, 202),
        ("3.0", False, 400),
        ("3.0", True, 202),
        ("3.65", None, 202),
        ("3.65", "false", 400),
        ("3.65", "true", 202),
        ("3.66", None, 202),
        ("3.66", True, 202),
        ("3.66", False, 400),
        ("3.70", "false", 400),
        ("3.70", None, 202),
    ],
)
def test_in_use_snapshot_by_microversion(
    cloud: Cloud, version: str, force: object, status: int
) -> None:
    c = tenant(cloud)
    c.version = version
    volume_id = attached(cloud, c)
    body: dict[str, object] = {"volume_id": volume_id}
    if force is not None:
        body["force"] = force
    response = c.post("/snapshots", {"snapshot": body})
    if status == 202:
        assert response.status_code == 202, response.text
        assert response.json()["snapshot"]["status"] == "available"
        assert len(snapshots_of(c, volume_id)) == 1
    else:
        message = cinder_error(response, 400)
        assert "force" in message
        assert snapshots_of(c, volume_id) == []


def test_a_false_force_is_refused_from_366_even_for_an_available_volume(cloud: Cloud) -> None:
    c = tenant(cloud)
    c.version = "3.66"
    volume_id = c.create()["id"]
    cinder_error(c.post("/snapshots", {"snapshot": {"volume_id": volume_id, "force": False}}), 400)
    assert snapshots_of(c, volume_id) == []
    c.version = "3.65"
    assert c.snapshot(volume_id, force=False)["status"] == "available"  # available: no force


def test_snapshot_without_a_volume_is_404_and_without_the_key_400(cloud: Cloud) -> None:
    c = tenant(cloud)
    message = cinder_error(c.post("/snapshots", {"snapshot": {"volume_id": None}}), 404)
    assert message == "Volume None could not be found."
    message = cinder_error(c.post("/snapshots", {"snapshot": {"name": "x"}}), 400)
    assert "volume_id" in message
    cinder_error(c.post("/snapshots", {"snapshot": {"volume_id": 7}}), 400)


def test_another_project_cannot_snapshot_an_in_use_volume_it_does_not_own(cloud: Cloud) -> None:
    a, b = tenant(cloud), tenant(cloud)
    volume_id = attached(cloud, a)
    b.version = "3.70"
    cinder_error(b.post("/snapshots", {"snapshot": {"volume_id": volume_id}}), 404)
    assert snapshots_of(a, volume_id) == []
