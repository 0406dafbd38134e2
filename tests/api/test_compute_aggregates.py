"""Host aggregates (os-aggregates) as Nova's: shapes per microversion, Nova's errors for
bad and conflicting input (leaving nothing behind), admin only for every other caller,
and the zones they make as users see them and the scheduler uses them.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from souverain.compute.models import Aggregate, AggregateHost, AggregateMetadata, Server
from souverain.compute.scheduler import Capacity

from .support import ADMIN_PASSWORD, Cloud, Member
from .test_compute_api import Nova, fault
from .test_compute_scheduling import _image
from .test_identity_trusts import _app_cred_token as app_cred_token


def _report(cloud: Cloud, name: str) -> None:
    hosts = cloud.platform.compute.hosts
    capacity = Capacity(name, 16, 8192, 100, 16, 8192, 100)
    hosts.report(name, capacity, "192.0.2.7", ["compute"], hosts.now())


def _counts(cloud: Cloud) -> tuple[int, int, int]:
    with cloud.platform.compute.db.session() as s:
        return tuple(  # type: ignore[return-value]
            int(s.scalar(select(func.count()).select_from(m)) or 0)
            for m in (Aggregate, AggregateHost, AggregateMetadata)
        )


@pytest.fixture
def admin(cloud: Cloud) -> Nova:
    _report(cloud, "agg-a")
    _report(cloud, "agg-b")
    return Nova(cloud.client, cloud.admin_token)


def _create(admin: Nova, name: str, zone: str | None = None, version: str = "2.1") -> Any:
    body: dict[str, Any] = {"name": name}
    if zone is not None:
        body["availability_zone"] = zone
    return admin.ok("POST", "/os-aggregates", {"aggregate": body}, version=version)["aggregate"]


def _act(admin: Nova, ident: int, action: str, args: Any, status: int = 200) -> Any:
    return admin.ok("POST", f"/os-aggregates/{ident}/action", {action: args}, status=status)


def test_an_aggregate_is_made_shown_changed_and_deleted_as_novas(cloud: Cloud, admin: Nova) -> None:
    made = _create(admin, "rack-1", "az-1")
    assert set(made) == {
        "availability_zone",
        "created_at",
        "deleted",
        "deleted_at",
        "id",
        "name",
        "updated_at",
    }
    assert (made["name"], made["availability_zone"], made["deleted"]) == ("rack-1", "az-1", False)
    assert made["updated_at"] is None and isinstance(made["id"], int)
    ident = made["id"]
    shown = admin.ok("GET", f"/os-aggregates/{ident}")["aggregate"]
    assert (shown["hosts"], shown["metadata"]) == ([], {"availability_zone": "az-1"})
    assert "uuid" not in shown
    newer = admin.ok("GET", f"/os-aggregates/{ident}", version="2.41")["aggregate"]
    assert str(uuid.UUID(newer["uuid"])) == newer["uuid"]
    added = _act(admin, ident, "add_host", {"host": "agg-a"})["aggregate"]
    assert added["hosts"] == ["agg-a"] and added["updated_at"] is not None
    meta = _act(admin, ident, "set_metadata", {"metadata": {"disk": "ssd", "gpu": "none"}})
    assert meta["aggregate"]["metadata"] == {
        "availability_zone": "az-1",
        "disk": "ssd",
        "gpu": "none",
    }
    meta = _act(admin, ident, "set_metadata", {"metadata": {"gpu": None}})
    assert meta["aggregate"]["metadata"] == {"availability_zone": "az-1", "disk": "ssd"}
    renamed = admin.ok("PUT", f"/os-aggregates/{ident}", {"aggregate": {"name": "rack-one"}})
    assert renamed["aggregate"]["name"] == "rack-one"
    assert renamed["aggregate"]["availability_zone"] == "az-1"
    listed = admin.ok("GET", "/os-aggregates")["aggregates"]
    assert [(a["name"], a["hosts"]) for a in listed] == [("rack-one", ["agg-a"])]
    fault(admin.delete(f"/os-aggregates/{ident}"), 400, "badRequest")  # it holds a host
    removed = _act(admin, ident, "remove_host", {"host": "agg-a"})["aggregate"]
    assert removed["hosts"] == []
    assert admin.delete(f"/os-aggregates/{ident}").status_code == 200
    fault(admin.get(f"/os-aggregates/{ident}"), 404, "itemNotFound")
    assert _counts(cloud) == (0, 0, 0)


@pytest.mark.parametrize(
    "body",
    [
        {"aggregate": {"name": ""}},
        {"aggregate": {"name": "x" * 256}},
        {"aggregate": {"name": " padded"}},
        {"aggregate": {"name": "bell\x07"}},
        {"aggregate": {"name": 7}},
        {"aggregate": {"name": "ok", "availability_zone": ""}},
        {"aggregate": {"name": "ok", "availability_zone": "a:b"}},
        {"aggregate": {"name": "ok", "extra": 1}},
        {"aggregate": {}},
        {"aggregate": "rack"},
        {"name": "rack"},
        [],
    ],
)
def test_bad_input_to_create_is_a_400_that_makes_nothing(
    cloud: Cloud, admin: Nova, body: Any
) -> None:
    fault(admin.post("/os-aggregates", body), 400, "badRequest")
    assert _counts(cloud) == (0, 0, 0)


def test_conflicts_and_unknowns_answer_as_nova(cloud: Cloud, admin: Nova) -> None:
    first = _create(admin, "rack-1", "az-1")["id"]
    other = _create(admin, "rack-2", "az-2")["id"]
    plain = _create(admin, "tags")["id"]
    fault(
        admin.post("/os-aggregates", {"aggregate": {"name": "rack-1"}}), 409, "conflictingRequest"
    )
    taken = {"aggregate": {"name": "rack-2"}}
    fault(admin.put(f"/os-aggregates/{first}", taken), 409, "conflictingRequest")
    _act(admin, first, "add_host", {"host": "agg-a"})
    fault(
        admin.post(f"/os-aggregates/{first}/action", {"add_host": {"host": "agg-a"}}),
        409,
        "conflictingRequest",
    )
    # a host is in one zone at most
    message = fault(
        admin.post(f"/os-aggregates/{other}/action", {"add_host": {"host": "agg-a"}}),
        409,
        "conflictingRequest",
    )
    assert "az-1" in message
    _act(admin, plain, "add_host", {"host": "agg-a"})  # an aggregate without a zone is fine
    moved = {"metadata": {"availability_zone": "az-2"}}
    fault(admin.post(f"/os-aggregates/{plain}/action", {"set_metadata": moved}), 400, "badRequest")
    fault(
        admin.put(f"/os-aggregates/{plain}", {"aggregate": {"availability_zone": "az-2"}}),
        400,
        "badRequest",
    )
    unknown = {"add_host": {"host": "no-such-host"}}
    fault(admin.post(f"/os-aggregates/{first}/action", unknown), 404, "itemNotFound")
    absent = {"remove_host": {"host": "agg-b"}}
    fault(admin.post(f"/os-aggregates/{first}/action", absent), 404, "itemNotFound")
    fault(admin.get("/os-aggregates/999999"), 404, "itemNotFound")
    for unknown_id in ("one", "-1", "9" * 40):
        fault(admin.get(f"/os-aggregates/{unknown_id}"), 404, "itemNotFound")
    fault(admin.delete("/os-aggregates/999999"), 404, "itemNotFound")
    for bad in (
        {"add_host": {}},
        {"add_host": {"host": ""}},
        {"add_host": {"host": "agg-b", "zone": "x"}},
        {"set_metadata": {"metadata": {"bad/key": "v"}}},
        {"set_metadata": {"metadata": {"k": "v" * 256}}},
        {"set_metadata": {"metadata": {"k": 1}}},
        {"set_metadata": {"metadata": []}},
        {"add_host": {"host": "agg-b"}, "remove_host": {"host": "agg-b"}},
        {"reboot": {}},
    ):
        fault(admin.post(f"/os-aggregates/{plain}/action", bad), 400, "badRequest")
    fault(admin.put(f"/os-aggregates/{plain}", {"aggregate": {}}), 400, "badRequest")
    # nothing of the refused calls stayed
    shown = admin.ok("GET", f"/os-aggregates/{plain}")["aggregate"]
    assert (shown["hosts"], shown["metadata"], shown["availability_zone"]) == (["agg-a"], {}, None)
    assert _counts(cloud) == (3, 2, 0)  # zones live on the aggregates, not as metadata rows


def test_only_the_admin_reads_or_changes_aggregates(cloud: Cloud, admin: Nova) -> None:
    ident = _create(admin, "rack-1")["id"]
    member = cloud.member()
    reader = cloud.member("reader", project_id=member.project_id)
    other = cloud.member()
    admin_person = Member(
        cloud.admin_id, "admin", ADMIN_PASSWORD, cloud.admin_project_id, cloud.admin_token
    )
    restricted = app_cred_token(cloud, admin_person, ["reader"])
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/os-aggregates", None),
        ("POST", "/os-aggregates", {"aggregate": {"name": "mine"}}),
        ("GET", f"/os-aggregates/{ident}", None),
        ("PUT", f"/os-aggregates/{ident}", {"aggregate": {"name": "stolen"}}),
        ("DELETE", f"/os-aggregates/{ident}", None),
        ("POST", f"/os-aggregates/{ident}/action", {"add_host": {"host": "agg-a"}}),
        ("POST", f"/os-aggregates/{ident}/action", {"set_metadata": {"metadata": {"k": "v"}}}),
    ]
    for token in (member.token, reader.token, other.token, restricted):
        caller = Nova(cloud.client, token)
        for method, path, body in calls:
            response = (
                caller.call(method, path, body) if body is not None else caller.call(method, path)
            )
            fault(response, 403, "forbidden")
    shown = admin.ok("GET", f"/os-aggregates/{ident}")["aggregate"]
    assert (shown["name"], shown["hosts"], shown["metadata"]) == ("rack-1", [], {})
    assert _counts(cloud) == (1, 0, 0)


def test_an_aggregates_zone_is_listed_and_asked_for_by_a_create(cloud: Cloud, admin: Nova) -> None:
    ident = _create(admin, "rack-1", "az-1")["id"]
    _act(admin, ident, "add_host", {"host": "agg-b"})
    member = cloud.member()
    nova = Nova(cloud.client, member.token)
    zones = nova.ok("GET", "/os-availability-zone")["availabilityZoneInfo"]
    assert {z["zoneName"] for z in zones} == {"nova", "az-1"}
    assert all(z["hosts"] is None for z in zones)
    detail = admin.ok("GET", "/os-availability-zone/detail")["availabilityZoneInfo"]
    by_zone = {z["zoneName"]: z["hosts"] for z in detail}
    assert set(by_zone["az-1"]) == {"agg-b"}
    assert "agg-a" in by_zone["nova"] and "agg-b" not in by_zone["nova"]
    fault(nova.get("/os-availability-zone/detail"), 403, "forbidden")
    image = _image(cloud)
    unknown = {
        "server": {
            "name": "s",
            "imageRef": image,
            "flavorRef": "1",
            "networks": "none",
            "availability_zone": "az-9",
        }
    }
    fault(nova.post("/servers", unknown), 400, "badRequest")
    forced = {"server": {**unknown["server"], "availability_zone": "az-1:agg-b"}}
    fault(nova.post("/servers", forced), 403, "forbidden")
    asked = {"server": {**unknown["server"], "availability_zone": "az-1"}}
    server_id = nova.ok("POST", "/servers", asked, status=202)["server"]["id"]
    placed = _wait_placed(cloud, server_id)
    # agg-b is the only host of az-1; it is not this process's, so its agent builds it
    assert placed == ("agg-b", "az-1")
    assert nova.server(server_id)["OS-EXT-AZ:availability_zone"] == "az-1"


def _wait_placed(cloud: Cloud, server_id: str) -> tuple[str | None, str]:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with cloud.platform.compute.db.session() as s:
            row = s.get(Server, server_id)
            if row.host is not None or row.vm_state == "error":
                return row.host, row.availability_zone
        time.sleep(0.05)
    raise AssertionError(f"server {server_id} was never placed")
