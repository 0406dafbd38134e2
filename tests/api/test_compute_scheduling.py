"""Placement across hosts: the scheduler's filters, weighers and claims over host rows
registered as agents register them (`Hosts.report`), and the admin views of each host.

The in-process platform builds guests only on its own host, so most tests drive
`select_and_claim` in a session over server rows and read where each went; the third
anti-affinity member is refused through the API, as a client sees it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from souverain import server
from souverain.compute.core import NO_VALID_HOST
from souverain.compute.models import (
    Aggregate,
    AggregateHost,
    AggregateMetadata,
    Server,
    ServerGroup,
)
from souverain.compute.scheduler import Capacity, PlacementRequest
from tests.server_rows import add_server

from .support import Cloud, SteppingClock
from .test_compute_api import Nova, fault

GIB_DISK = 100


def _capacity(name: str, vcpus: int = 16, memory: int = 8192, disk: int = GIB_DISK) -> Capacity:
    return Capacity(name, vcpus, memory, disk, vcpus, memory, disk)


@pytest.fixture
def compute(platform: server.Platform) -> Iterator[Any]:
    """The platform's compute with its own host taken out of placement (disabled), so
    only the hosts a test reports take servers."""
    compute = platform.compute
    compute.host_services.update(
        compute.host_services.find(host=compute.host, binary="nova-compute"),
        _disable(),
    )
    yield compute


def _disable() -> Any:
    from souverain.compute.host_services import ServiceChange

    return ServiceChange(disabled=True, disabled_reason="tests place on reported hosts")


def _report(compute: Any, name: str, **size: int) -> None:
    compute.hosts.report(
        name, _capacity(name, **size), "192.0.2.1", ["compute"], compute.hosts.now()
    )


def _group(compute: Any, policy: str, rules: dict[str, Any] | None = None) -> str:
    group_id = str(uuid.uuid4())
    with compute.db.session() as s:
        s.add(
            ServerGroup(
                id=group_id,
                project_id="p",
                user_id="u",
                name=policy,
                policy=policy,
                rules=rules or {},
                created_at=dt.datetime(2026, 1, 1),
            )
        )
    return group_id


def _place(compute: Any, server_id: str, **asked: Any) -> str | None:
    with compute.db.session() as s:
        row = s.get(Server, server_id)
        request = PlacementRequest(
            server_id=server_id,
            vcpus=row.vcpus,
            memory_mib=row.memory_mib,
            disk_gib=row.disk_gib,
            **asked,
        )
        placed: str | None = compute.core.scheduler.select_and_claim(s, request)
    with compute.db.session() as s:  # what the row says is what the agents read
        assert s.get(Server, server_id).host == placed
    return placed


def _aggregate(
    compute: Any, name: str, hosts: list[str], zone: str | None = None, **meta: str
) -> None:
    with compute.db.session() as s:
        row = Aggregate(
            uuid=str(uuid.uuid4()),
            name=name,
            availability_zone=zone,
            created_at=dt.datetime(2026, 1, 1),
        )
        s.add(row)
        s.flush()
        s.add_all(AggregateHost(aggregate_id=row.id, host=h) for h in hosts)
        s.add_all(AggregateMetadata(aggregate_id=row.id, key=k, value=v) for k, v in meta.items())


# ---------------------------------------------------------------------- server groups


def test_anti_affinity_puts_two_servers_on_two_hosts_and_refuses_a_third(compute: Any) -> None:
    _report(compute, "sched-a")
    _report(compute, "sched-b")
    group = _group(compute, "anti-affinity")
    first, second, third = (add_server(compute.db, group=group) for _ in range(3))
    placed = {_place(compute, first), _place(compute, second)}
    assert placed == {"sched-a", "sched-b"}
    assert _place(compute, third) is None
    # a member deleted frees its host for the next one
    with compute.db.session() as s:
        s.get(Server, first).deleted = True
    assert _place(compute, third) in placed


def test_anti_affinity_admits_max_server_per_host(compute: Any) -> None:
    _report(compute, "sched-a")
    group = _group(compute, "anti-affinity", {"max_server_per_host": 2})
    members = [add_server(compute.db, group=group) for _ in range(3)]
    assert [_place(compute, m) for m in members] == ["sched-a", "sched-a", None]


def test_affinity_keeps_members_together_even_when_spread_would_not(compute: Any) -> None:
    _report(compute, "sched-a")
    _report(compute, "sched-b")
    group = _group(compute, "affinity")
    first = _place(compute, add_server(compute.db, memory=4096, group=group))
    # spread alone would pick the emptier host; the policy keeps the group together
    assert _place(compute, add_server(compute.db, memory=1024, group=group)) == first
    # and when that host is full, there is no valid host rather than another one
    assert _place(compute, add_server(compute.db, memory=4096, group=group)) is None


def test_soft_policies_weigh_but_never_refuse(compute: Any) -> None:
    _report(compute, "sched-a")
    _report(compute, "sched-b")
    soft_anti = _group(compute, "soft-anti-affinity")
    hosts = [_place(compute, add_server(compute.db, memory=256, group=soft_anti)) for _ in range(3)]
    assert set(hosts[:2]) == {"sched-a", "sched-b"} and hosts[2] is not None
    soft = _group(compute, "soft-affinity")
    first = _place(compute, add_server(compute.db, memory=256, group=soft))
    assert _place(compute, add_server(compute.db, memory=256, group=soft)) == first


# ---------------------------------------------------------------------- weighers


def test_spread_is_the_default_and_pack_a_setting(compute: Any) -> None:
    _report(compute, "sched-a")
    _report(compute, "sched-b")
    spread = [_place(compute, add_server(compute.db)) for _ in range(4)]
    assert sorted(spread) == ["sched-a", "sched-a", "sched-b", "sched-b"]
    compute.settings.scheduler_weigher = "pack"
    try:
        _report(compute, "sched-c")
        _report(compute, "sched-d")
        packed = [_place(compute, add_server(compute.db), zone=None) for _ in range(3)]
    finally:
        compute.settings.scheduler_weigher = "spread"
    # the fullest host that still fits takes every one
    assert len(set(packed)) == 1 and packed[0] in ("sched-a", "sched-b")


def test_capacity_is_each_hosts_report_and_is_never_overbooked(compute: Any) -> None:
    _report(compute, "sched-small", memory=2048, vcpus=2)
    assert _place(compute, add_server(compute.db, memory=4096)) is None
    assert _place(compute, add_server(compute.db, memory=2048, vcpus=3)) is None
    assert _place(compute, add_server(compute.db, memory=2048, vcpus=2)) == "sched-small"
    assert _place(compute, add_server(compute.db, memory=1)) is None
    # a new report (more memory) is what the next claim reads
    _report(compute, "sched-small", memory=4096, vcpus=4)
    assert _place(compute, add_server(compute.db, memory=2048)) == "sched-small"


# ---------------------------------------------------------------------- hosts that take nothing


def test_a_down_host_takes_nothing_until_it_reports_again(
    compute: Any, clock: SteppingClock
) -> None:
    _report(compute, "sched-a")
    clock.advance(compute.settings.service_down_time + 1)
    waiting = add_server(compute.db)
    assert _place(compute, waiting) is None
    _report(compute, "sched-a")
    assert _place(compute, waiting) == "sched-a"


def test_a_disabled_or_forced_down_host_takes_nothing(compute: Any) -> None:
    from souverain.compute.host_services import ServiceChange

    _report(compute, "sched-a")
    services = compute.host_services
    svc = services.find(host="sched-a", binary="nova-compute")
    services.update(svc, ServiceChange(disabled=True, disabled_reason="maintenance"))
    waiting = add_server(compute.db)
    assert _place(compute, waiting) is None
    services.update(svc, ServiceChange(disabled=False, forced_down=True))
    assert _place(compute, waiting) is None
    services.update(svc, ServiceChange(forced_down=False))
    assert _place(compute, waiting) == "sched-a"


# ---------------------------------------------------------------------- zones, aggregates, images


def test_a_zone_is_asked_for_through_aggregates(compute: Any) -> None:
    _report(compute, "sched-a")
    _report(compute, "sched-b")
    _aggregate(compute, "rack-1", ["sched-b"], zone="az-1")
    for _ in range(3):
        assert _place(compute, add_server(compute.db), zone="az-1") == "sched-b"
    # the default zone is the hosts in no zone
    assert _place(compute, add_server(compute.db), zone="nova") == "sched-a"
    assert _place(compute, add_server(compute.db), zone="az-9") is None
    assert _place(compute, add_server(compute.db), host="sched-b", zone="nova") is None
    assert _place(compute, add_server(compute.db), host="sched-b") == "sched-b"


def test_flavor_extra_specs_must_match_aggregate_metadata(compute: Any) -> None:
    _report(compute, "sched-a")
    _report(compute, "sched-b")
    _aggregate(compute, "ssd", ["sched-a"], disk="ssd,nvme", gpu="none")
    wants_ssd = {"aggregate_instance_extra_specs:disk": "ssd", "hw:cpu_policy": "shared"}
    for _ in range(3):
        assert _place(compute, add_server(compute.db), extra_specs=wants_ssd) == "sched-a"
    nvme = {"aggregate_instance_extra_specs:disk": "nvme"}
    assert _place(compute, add_server(compute.db), extra_specs=nvme) == "sched-a"
    tape = {"aggregate_instance_extra_specs:disk": "tape"}
    assert _place(compute, add_server(compute.db), extra_specs=tape) is None


def test_image_properties_no_host_offers_are_refused(compute: Any) -> None:
    _report(compute, "sched-a")
    arm = {"hw_architecture": "aarch64"}
    assert _place(compute, add_server(compute.db), image_properties=arm) is None
    x86 = {"hw_architecture": "x86_64", "img_hv_type": "qemu"}
    assert _place(compute, add_server(compute.db), image_properties=x86) == "sched-a"


# ---------------------------------------------------------------------- concurrency


def test_twenty_concurrent_claims_on_room_for_ten_place_exactly_ten(compute: Any) -> None:
    _report(compute, "sched-a", memory=10 * 512, vcpus=64)
    servers = [add_server(compute.db, memory=512) for _ in range(20)]
    barrier = threading.Barrier(len(servers))
    placed: list[str | None] = []
    lock = threading.Lock()

    def claim(server_id: str) -> None:
        barrier.wait()
        host = _place(compute, server_id)
        with lock:
            placed.append(host)

    threads = [threading.Thread(target=claim, args=(sid,)) for sid in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert placed.count("sched-a") == 10 and placed.count(None) == 10
    (row,) = [h for h in compute.hypervisors() if h["host"] == "sched-a"]
    assert (row["memory_mb_used"] - compute.settings.reserved_host_memory_mib) == 10 * 512
    assert row["running_vms"] == 10


# ---------------------------------------------------------------------- through the API


def _image(cloud: Cloud) -> str:
    headers = {"X-Auth-Token": cloud.admin_token}
    made = cloud.client.post(
        "/image/v2/images",
        json={
            "name": "blob",
            "disk_format": "raw",
            "container_format": "bare",
            "visibility": "public",
        },
        headers=headers,
    )
    assert made.status_code == 201, made.text
    image_id: str = made.json()["id"]
    upload = cloud.client.put(
        f"/image/v2/images/{image_id}/file",
        content=b"\0" * 4096,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 204, upload.text
    return image_id


def test_the_third_anti_affinity_member_ends_with_novas_message(cloud: Cloud, compute: Any) -> None:
    member = cloud.member()
    nova = Nova(cloud.client, member.token)
    _report(compute, "sched-a")
    _report(compute, "sched-b")
    group = nova.ok(
        "POST",
        "/os-server-groups",
        {"server_group": {"name": "replicas", "policies": ["anti-affinity"]}},
    )["server_group"]["id"]
    for host in ("sched-a", "sched-b"):  # two members already run, one per host
        placed = add_server(compute.db, group=group)
        with compute.db.session() as s:
            row = s.get(Server, placed)
            row.host, row.project_id, row.vm_state, row.task_state = (
                host,
                member.project_id,
                "active",
                None,
            )
    body = {
        "server": {
            "name": "third",
            "imageRef": _image(cloud),
            "flavorRef": "1",
            "networks": "none",
        },
        "os:scheduler_hints": {"group": group},
    }
    server_id = nova.ok("POST", "/servers", body, status=202)["server"]["id"]
    deadline = time.monotonic() + 30
    while (shown := nova.server(server_id))["status"] == "BUILD" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shown["status"] == "ERROR"
    assert shown["fault"]["message"] == NO_VALID_HOST
    assert shown["fault"]["code"] == 500
    with compute.db.session() as s:
        assert s.get(Server, server_id).host is None  # it holds nothing anywhere


# ---------------------------------------------------------------------- admin views


def test_hypervisors_and_services_show_every_host(
    cloud: Cloud, compute: Any, clock: SteppingClock
) -> None:
    admin = Nova(cloud.client, cloud.admin_token)
    _report(compute, "sched-a", vcpus=8, memory=4096)
    _place(compute, add_server(compute.db, memory=1024, vcpus=2))
    clock.advance(compute.settings.service_down_time - 5)
    _report(compute, "sched-b", vcpus=4, memory=2048)
    clock.advance(10)  # sched-a is now silent for longer than the down time; b is not
    listed = admin.ok("GET", "/os-hypervisors/detail", version="2.53")["hypervisors"]
    by_name = {h["hypervisor_hostname"]: h for h in listed}
    assert set(by_name) == {compute.host, "sched-a", "sched-b"}
    a, b = by_name["sched-a"], by_name["sched-b"]
    assert (a["state"], b["state"], by_name[compute.host]["state"]) == ("down", "up", "up")
    assert by_name[compute.host]["status"] == "disabled"
    assert (a["vcpus"], a["vcpus_used"], a["running_vms"]) == (8, 2, 1)
    assert a["host_ip"] == "192.0.2.1" and a["service"]["host"] == "sched-a"
    shown = admin.ok("GET", f"/os-hypervisors/{a['id']}", version="2.53")["hypervisor"]
    assert shown["hypervisor_hostname"] == "sched-a"
    assert admin.ok("GET", "/os-hypervisors/statistics")["hypervisor_statistics"]["count"] == 3
    found = admin.ok("GET", "/os-hypervisors/sched/search")["hypervisors"]
    assert sorted(h["hypervisor_hostname"] for h in found) == ["sched-a", "sched-b"]
    with_servers = admin.ok("GET", "/os-hypervisors/sched-a/servers")["hypervisors"][0]
    assert len(with_servers["servers"]) == 1
    fault(admin.get("/os-hypervisors/nothing-like-it/search"), 404, "itemNotFound")
    services = admin.ok("GET", "/os-services?binary=nova-compute")["services"]
    states = {s["host"]: (s["state"], s["status"]) for s in services}
    assert states == {
        compute.host: ("up", "disabled"),
        "sched-a": ("down", "enabled"),
        "sched-b": ("up", "enabled"),
    }
    # a down host takes nothing, and the zones list shows whether a host is active
    assert _place(compute, add_server(compute.db)) == "sched-b"
    zones = admin.ok("GET", "/os-availability-zone/detail")["availabilityZoneInfo"]
    nova_zone = next(z for z in zones if z["zoneName"] == "nova")
    assert nova_zone["hosts"]["sched-a"]["nova-compute"]["active"] is False
    assert nova_zone["hosts"]["sched-b"]["nova-compute"]["active"] is True


def test_the_all_in_one_keeps_its_own_host_up_for_every_other_node(
    platform: server.Platform, clock: SteppingClock
) -> None:
    """Another API node (its own registry, no local host) reads the heartbeat the
    all-in-one's power-state sync writes."""
    from souverain.compute.hosts import Hosts

    compute = platform.compute
    elsewhere = Hosts(compute.db, compute.core.clock, compute.settings)
    assert elsewhere.is_up(elsewhere.get(compute.host))
    clock.advance(compute.settings.service_down_time + 1)
    assert not elsewhere.is_up(elsewhere.get(compute.host))
    assert compute.hosts.is_up(compute.hosts.get(compute.host))  # its own process runs
    compute.sync_power_states()
    assert elsewhere.is_up(elsewhere.get(compute.host))
