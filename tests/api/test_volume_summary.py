"""GET /volumes/summary (3.12; metadata from 3.36) and `with_count` on the volume, snapshot
and backup listings (3.45): totals of the caller's scope and filters, whatever the page."""

from __future__ import annotations

from typing import Any

import pytest

from .support import Cloud
from .test_volume_backups import backup
from .test_volumes import Cinder, admin, cinder_error, cloud, tenant

__all__ = ["cloud"]


def summary(c: Cinder, query: str = "") -> dict[str, Any]:
    response = c.get(f"/volumes/summary{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["volume-summary"]
    return body


def test_summary_counts_the_projects_volumes_and_their_sizes(cloud: Cloud) -> None:
    c = tenant(cloud)
    other = tenant(cloud)
    c.create(size=1, metadata={"env": "prod", "tier": "a"})
    c.create(size=2, metadata={"env": "dev"})
    c.create(size=3, metadata={"env": "prod"}, name="big")
    other.create(size=4, metadata={"secret": "theirs"})

    seen = summary(c)
    assert seen == {
        "total_count": 3,
        "total_size": 6,
        "metadata": {"env": ["dev", "prod"], "tier": ["a"]},
    }
    # the listing's filters narrow it
    assert summary(c, "?name=big") == {
        "total_count": 1,
        "total_size": 3,
        "metadata": {"env": ["prod"]},
    }
    assert summary(c, "?status=error")["total_count"] == 0
    # the same path under the project id
    assert c.get("/volumes/summary", project=True).json()["volume-summary"] == seen

    c.version = "3.35"
    assert summary(c) == {"total_count": 3, "total_size": 6}
    c.version = "3.11"  # before 3.12 "summary" is no route: a volume id not found
    cinder_error(c.get("/volumes/summary"), 404)


def test_summary_of_every_project_is_for_admins_asking_all_tenants(cloud: Cloud) -> None:
    c = tenant(cloud)
    c.create(size=5)
    a = admin(cloud)
    everyone = summary(a, "?all_tenants=1")
    own = summary(a)
    assert everyone["total_count"] >= own["total_count"] + 1
    assert everyone["total_size"] >= own["total_size"] + 5
    assert summary(a, f"?all_tenants=1&project_id={c.project_id}")["total_size"] == 5
    # a member asking all_tenants still sees only its project
    assert summary(c, "?all_tenants=1") == {"total_count": 1, "total_size": 5, "metadata": {}}
    assert summary(c, f"?project_id={a.project_id}")["total_count"] == 1


def test_summary_isolation(cloud: Cloud) -> None:
    c = tenant(cloud)
    c.create(size=2)
    reader = cloud.member(role="reader", project_id=c.project_id)
    r = Cinder(cloud, reader.token, reader.project_id, reader.id)
    assert summary(r)["total_size"] == 2
    other = tenant(cloud)
    other.project_id = c.project_id  # another project's id in the path
    cinder_error(other.get("/volumes/summary", project=True), 404)
    cinder_error(c.get("/volumes/summary?limit=x"), 400)
    cinder_error(c.get("/volumes/summary?all_tenants=maybe"), 400)


@pytest.mark.parametrize("collection", ["volumes", "snapshots", "backups"])
def test_with_count_counts_every_match_whatever_the_page(cloud: Cloud, collection: str) -> None:
    c = tenant(cloud)
    other = tenant(cloud)
    other.create()
    key = collection[:-1]
    for index in range(3):
        volume_id = c.create(name=f"v{index}")["id"]
        if collection == "snapshots":
            c.snapshot(volume_id, name=f"v{index}")
        elif collection == "backups":
            backup(c, volume_id, name=f"v{index}")
    assert key in ("volume", "snapshot", "backup")
    for path in (f"/{collection}", f"/{collection}/detail"):
        page = c.get(f"{path}?with_count=true&limit=1").json()
        assert page["count"] == 3 and len(page[collection]) == 1
        marker = page[collection][0]["id"]
        after = c.get(f"{path}?with_count=true&limit=1&marker={marker}").json()
        assert after["count"] == 3 and after[collection][0]["id"] != marker
        assert c.get(f"{path}?with_count=true&name=v1").json()["count"] == 1
        assert c.get(f"{path}?with_count=true&name=none").json() == {collection: [], "count": 0}
        assert "count" not in c.get(f"{path}?with_count=false").json()
        assert "count" not in c.get(path).json()
        cinder_error(c.get(f"{path}?with_count=perhaps"), 400)
        c.version = "3.44"  # Cinder knows no with_count before 3.45
        assert "count" not in c.get(f"{path}?with_count=true").json()
        c.version = "3.70"


def test_with_count_for_admins_follows_all_tenants(cloud: Cloud) -> None:
    c = tenant(cloud)
    c.create()
    a = admin(cloud)
    own = a.get("/volumes?with_count=true").json()["count"]
    everyone = a.get("/volumes?with_count=true&all_tenants=1").json()["count"]
    assert everyone >= own + 1
    assert a.get(f"/volumes?with_count=true&project_id={c.project_id}").json()["count"] == 1


@pytest.mark.parametrize("collection", ["volumes", "snapshots", "backups"])
def test_listings_take_offset_limit_zero_and_the_display_name_sort(
    cloud: Cloud, collection: str
) -> None:
    c = tenant(cloud)
    for name in ("b", "c", "a"):
        volume_id = c.create(name=name)["id"]
        if collection == "snapshots":
            c.snapshot(volume_id, name=name)
        elif collection == "backups":
            backup(c, volume_id, name=name)
    for path in (f"/{collection}", f"/{collection}/detail"):

        def names(query: str, p: str = path) -> list[str]:
            response = c.get(f"{p}?{query}")
            assert response.status_code == 200, response.text
            return [item["name"] for item in response.json()[collection]]

        assert names("sort_key=display_name&sort_dir=asc") == ["a", "b", "c"]
        assert names("sort=display_name:desc") == ["c", "b", "a"]
        assert names("sort=name:asc&offset=1") == ["b", "c"]
        assert names("sort=name:asc&offset=2&limit=3") == ["c"]
        assert names("offset=3") == []
        assert names("limit=0") == []
        page = c.get(f"{path}?limit=0&with_count=true").json()
        assert page == {collection: [], "count": 3}
        for bad in ("offset=-1", "offset=x", "offset=99999999999", "limit=-1", "limit=x"):
            cinder_error(c.get(f"{path}?{bad}"), 400)
