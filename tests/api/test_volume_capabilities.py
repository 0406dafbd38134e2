"""GET /capabilities/{host}: what the backend offers volume types, for admins only, and the
same facts its pools report."""

from __future__ import annotations

from urllib.parse import quote

from .support import Cloud
from .test_volumes import Cinder, admin, cinder_error, cloud, tenant

__all__ = ["cloud"]

FACTS = ("vendor_name", "volume_backend_name", "storage_protocol", "driver_version")


def test_admin_reads_the_backends_capabilities_by_pool_or_backend(cloud: Cloud) -> None:
    a = admin(cloud)
    (pool,) = a.get("/scheduler-stats/get_pools?detail=true").json()["pools"]
    by_pool = a.get(f"/capabilities/{quote(pool['name'])}")  # the pool's "#" escaped
    assert by_pool.status_code == 200, by_pool.text
    body = by_pool.json()
    assert body["namespace"].startswith("OS::Storage::Capabilities::")
    assert body["pool_name"] == pool["capabilities"]["pool_name"]
    assert body["replication_targets"] == []
    for fact in FACTS:
        assert body[fact] == pool["capabilities"][fact], fact
    for prop in body["properties"].values():
        assert set(prop) == {"title", "description", "type"}
    backend = pool["name"].split("#", 1)[0]
    assert a.get(f"/capabilities/{backend}", project=True).json() == body
    aliases = [e["alias"] for e in a.get("/extensions").json()["extensions"]]
    assert "capabilities" in aliases


def test_capabilities_of_unknown_hosts_and_for_non_admins(cloud: Cloud) -> None:
    a = admin(cloud)
    for host in ("elsewhere", "souverain", "souverain@local%23other", "x" * 300):
        cinder_error(a.get(f"/capabilities/{host}"), 404)
    c = tenant(cloud)
    reader = cloud.member(role="reader", project_id=c.project_id)
    r = Cinder(cloud, reader.token, reader.project_id, reader.id)
    for caller in (c, r):
        cinder_error(caller.get("/capabilities/souverain@local"), 403)
