"""What a compute listing costs: a page is a constant number of SQL statements, whatever its
length, and the brief list builds no detailed view.

The servers are rows inserted beside the API, as bench/compute does, so no guest runs;
their volumes are real ones, attached through the volume service's own calls (the ones the
compute service makes). The statements are counted on the platform's engine, which every
service shares, so a lookup made per server anywhere on the path shows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from souverain.common.context import RequestContext
from souverain.compute.models import InstanceAction
from tests.server_rows import server_row

from .support import Cloud, Member

COMPUTE = "/compute/v2.1"
VERSION = {"OpenStack-API-Version": "compute 2.79"}
FLAVORS = (
    {"id": "1", "name": "t1.nano", "vcpus": 1, "ram": 128, "disk": 1},
    {"id": "3", "name": "m1.medium", "vcpus": 2, "ram": 4096, "disk": 40},
)


def _add_servers(cloud: Cloud, member: Member, count: int, deleted: bool = False) -> list[str]:
    """`count` stopped servers of the member's project on this host, flavors alternating."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with cloud.platform.compute.db.session() as s:
        for index, server_id in enumerate(ids):
            flavor = FLAVORS[index % len(FLAVORS)]
            s.add(
                server_row(
                    server_id,
                    project_id=member.project_id,
                    user_id=member.id,
                    name=f"listed-{index}",
                    hostname=f"listed-{index}",
                    image_id="image",
                    flavor=dict(flavor),
                    vcpus=flavor["vcpus"],
                    memory_mib=flavor["ram"],
                    disk_gib=flavor["disk"],
                    mac="fa:16:3e:00:00:01",
                    host=cloud.platform.compute.host,
                    vm_state="stopped",
                    task_state=None,
                    power_state=4,
                    reservation_id="r-listed",
                    created_at=now + dt.timedelta(microseconds=index),
                    updated_at=now,
                    deleted=deleted,
                )
            )
    return ids


def _attach_volumes(cloud: Cloud, member: Member, server_ids: list[str]) -> dict[str, str]:
    """One new volume attached to each server, as the compute service attaches them."""
    volumes = cloud.platform.volume
    ctx = _ctx(cloud, member)
    attached = {}
    for index, server_id in enumerate(server_ids):
        volume_id = volumes.create_volume(ctx, {"size": 1})["id"]
        volumes.reserve(ctx, volume_id, server_id)
        volumes.attached(volume_id, server_id, "/dev/vdb", f"att-{index}", index % 2 == 0)
        attached[server_id] = volume_id
    return attached


def _ctx(cloud: Cloud, member: Member) -> RequestContext:
    view = cloud.platform.identity.validate(member.token)
    assert view is not None
    return view.context("req-listing")


@contextmanager
def _statements(cloud: Cloud) -> Iterator[list[str]]:
    """Every SQL statement sent to the database inside the block."""
    seen: list[str] = []
    engine = cloud.platform.compute.db.engine

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _get(cloud: Cloud, member: Member, path: str, **params: Any) -> Any:
    response = cloud.client.get(
        COMPUTE + path, headers={**member.headers, **VERSION}, params=params
    )
    assert response.status_code == 200, response.text
    return response.json()


def _counted_get(cloud: Cloud, member: Member, path: str, **params: Any) -> tuple[Any, int]:
    _get(cloud, member, path, **params)  # warm-up: what a first request caches
    with _statements(cloud) as seen:
        body = _get(cloud, member, path, **params)
    return body, len(seen)


def test_a_page_of_servers_costs_the_same_statements_for_n_and_3n_servers(cloud: Cloud) -> None:
    member = cloud.member()
    n = 3  # 3n volumes: within the default volume quota (10)
    first = _add_servers(cloud, member, n)
    volumes = _attach_volumes(cloud, member, first)

    small, small_cost = _counted_get(cloud, member, "/servers/detail")
    assert len(small["servers"]) == n

    more = _add_servers(cloud, member, 2 * n)
    volumes.update(_attach_volumes(cloud, member, more))
    large, large_cost = _counted_get(cloud, member, "/servers/detail")
    assert len(large["servers"]) == 3 * n
    assert large_cost == small_cost, f"{n} servers: {small_cost} statements, {3 * n}: {large_cost}"

    page, page_cost = _counted_get(cloud, member, "/servers/detail", limit=2 * n)
    assert len(page["servers"]) == 2 * n and page["servers_links"]
    assert page_cost == small_cost

    for server in large["servers"]:
        index = int(server["name"].rsplit("-", 1)[1])
        assert server["os-extended-volumes:volumes_attached"] == [
            {"id": volumes[server["id"]], "delete_on_termination": index % 2 == 0}
        ]
        shown = _get(cloud, member, f"/servers/{server['id']}")["server"]
        assert shown.pop("server_groups") == []  # a server's own document only, from 2.71
        assert shown == server


def test_the_brief_server_list_reads_no_volumes_and_costs_the_same_for_n_and_3n(
    cloud: Cloud,
) -> None:
    member = cloud.member()
    servers = _add_servers(cloud, member, 3)
    _attach_volumes(cloud, member, servers)
    small, small_cost = _counted_get(cloud, member, "/servers")

    servers += _add_servers(cloud, member, 6)
    _attach_volumes(cloud, member, servers[3:])
    _get(cloud, member, "/servers")
    with _statements(cloud) as seen:
        large = _get(cloud, member, "/servers")

    assert len(small["servers"]) == 3 and len(large["servers"]) == 9
    assert len(seen) == small_cost
    assert not [s for s in seen if "volumes" in s], seen
    assert {s["id"] for s in large["servers"]} == set(servers)
    for server in large["servers"]:
        assert set(server) == {"id", "name", "links"}
        assert server["links"][0]["href"].endswith(f"/v2.1/servers/{server['id']}")


def test_a_volume_still_being_attached_is_not_listed_on_its_server(cloud: Cloud) -> None:
    member = cloud.member()
    (server_id,) = _add_servers(cloud, member, 1)
    volume_id = cloud.platform.volume.create_volume(_ctx(cloud, member), {"size": 1})["id"]
    cloud.platform.volume.reserve(_ctx(cloud, member), volume_id, server_id)

    (listed,) = _get(cloud, member, "/servers/detail")["servers"]
    shown = _get(cloud, member, f"/servers/{server_id}")["server"]
    assert listed["os-extended-volumes:volumes_attached"] == []
    assert shown["os-extended-volumes:volumes_attached"] == []


def test_limits_count_the_projects_servers_in_the_same_statements_for_n_and_3n(
    cloud: Cloud,
) -> None:
    member = cloud.member()
    _add_servers(cloud, member, 1, deleted=True)  # a deleted server holds nothing
    _add_servers(cloud, member, 2)
    small, small_cost = _counted_get(cloud, member, "/limits")
    _add_servers(cloud, member, 4)
    large, large_cost = _counted_get(cloud, member, "/limits")

    assert large_cost == small_cost
    used = {k: v for k, v in small["limits"]["absolute"].items() if k.startswith("total")}
    assert used["totalInstancesUsed"] == 2
    assert used["totalCoresUsed"] == 1 + 2
    assert used["totalRAMUsed"] == 128 + 4096
    absolute = large["limits"]["absolute"]
    assert absolute["totalInstancesUsed"] == 6
    assert absolute["totalCoresUsed"] == 3 * (1 + 2)
    assert absolute["totalRAMUsed"] == 3 * (128 + 4096)


def test_an_instance_action_is_found_by_its_request_among_many(cloud: Cloud) -> None:
    member = cloud.member()
    (server_id,) = _add_servers(cloud, member, 1)
    start = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with cloud.platform.compute.db.session() as s:
        for index in range(12):
            s.add(
                InstanceAction(
                    server_id=server_id,
                    project_id=member.project_id,
                    user_id=member.id,
                    request_id=f"req-{index}",
                    action="stop" if index % 2 else "start",
                    start_time=start + dt.timedelta(seconds=index),
                )
            )

    listed = _get(cloud, member, f"/servers/{server_id}/os-instance-actions")["instanceActions"]
    assert [a["request_id"] for a in listed] == [f"req-{i}" for i in reversed(range(12))]
    found = _get(cloud, member, f"/servers/{server_id}/os-instance-actions/req-5")
    assert found["instanceAction"]["request_id"] == "req-5"
    assert found["instanceAction"]["action"] == "stop"
    missing = cloud.client.get(
        f"{COMPUTE}/servers/{server_id}/os-instance-actions/req-99",
        headers={**member.headers, **VERSION},
    )
    assert missing.status_code == 404
