"""The internal API host agents call (`/internal/v1`): only a host's own token opens it,
and a host reads and reports only what is assigned to itself (node authorization).

The whole flow with real agent processes is in tests/platform/test_host_agents.py."""

from __future__ import annotations

from typing import Any

import pytest

from souverain.compute.models import ComputeHost

from .support import Cloud

BEAT = {
    "address": "10.70.0.11",
    "roles": "compute",
    "vcpus": 32,
    "memory_mib": 65536,
    "disk_gib": 500,
    "physical_vcpus": 2,
    "physical_memory_mib": 4096,
    "physical_disk_gib": 500,
    "hypervisor_type": "QEMU",
    "hypervisor_version": 8002000,
}


def _call(cloud: Cloud, method: str, path: str, token: str | None, **kw: Any) -> Any:
    headers = {"X-Auth-Token": token} if token is not None else {}
    return cloud.client.request(method, "/internal/v1" + path, headers=headers, **kw)


@pytest.fixture
def hosts(cloud: Cloud) -> dict[str, str]:
    agents = cloud.platform.compute.agents
    return {name: agents.enroll(name) for name in ("hv1", "hv2")}


def test_a_heartbeat_records_the_hosts_report(cloud: Cloud, hosts: dict[str, str]) -> None:
    response = _call(cloud, "POST", "/hosts/hv1/heartbeat", hosts["hv1"], json=BEAT)
    assert response.status_code == 200, response.text
    assert response.json() == {"host": "hv1", "revision": 0}
    with cloud.platform.db.session() as s:
        row = s.get(ComputeHost, "hv1")
        assert row is not None
        assert (row.address, row.vcpus, row.memory_mib) == ("10.70.0.11", 32, 65536)
        assert row.last_seen_at is not None
        assert row.token_hash is not None and hosts["hv1"] not in row.token_hash


def test_assignments_of_a_host_with_nothing_assigned(cloud: Cloud, hosts: dict[str, str]) -> None:
    response = _call(cloud, "GET", "/hosts/hv2/assignments", hosts["hv2"])
    assert response.status_code == 200, response.text
    assert response.json() == {"host": "hv2", "revision": 0, "servers": []}
    # a watch from the current revision waits, then answers the same whole assignment
    waited = _call(cloud, "GET", "/hosts/hv2/assignments?since=0&wait=1", hosts["hv2"])
    assert waited.json()["servers"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/hosts/hv2/assignments"),
        ("POST", "/hosts/hv2/heartbeat"),
        ("PUT", "/hosts/hv2/servers/00000000-0000-0000-0000-000000000000/state"),
    ],
)
def test_a_host_cannot_act_as_another(
    cloud: Cloud, hosts: dict[str, str], method: str, path: str
) -> None:
    response = _call(cloud, method, path, hosts["hv1"], json={"state": "running", **BEAT})
    assert response.status_code == 403, response.text
    assert "not host hv2's" in response.text


def test_only_a_hosts_token_opens_the_internal_api(cloud: Cloud, hosts: dict[str, str]) -> None:
    path = "/hosts/hv1/assignments"
    assert _call(cloud, "GET", path, None).status_code == 401
    assert _call(cloud, "GET", path, "svh_" + "x" * 43).status_code == 401
    assert _call(cloud, "GET", path, "svh_" + "x" * 500).status_code == 401
    # not even the cloud admin's Keystone token
    assert _call(cloud, "GET", path, cloud.admin_token).status_code == 401
    member = cloud.member("member")
    assert _call(cloud, "GET", path, member.token).status_code == 401


def test_a_hosts_token_opens_no_public_api(cloud: Cloud, hosts: dict[str, str]) -> None:
    headers = {"X-Auth-Token": hosts["hv1"]}
    for path in (
        "/compute/v2.1/servers",
        "/identity/v3/users",
        "/network/v2.0/networks",
        "/volume/v3/volumes",
        "/image/v2/images",
    ):
        assert cloud.client.get(path, headers=headers).status_code == 401, path


def test_enrolling_again_ends_the_old_token(cloud: Cloud, hosts: dict[str, str]) -> None:
    new = cloud.platform.compute.agents.enroll("hv1")
    assert _call(cloud, "GET", "/hosts/hv1/assignments", hosts["hv1"]).status_code == 401
    assert _call(cloud, "GET", "/hosts/hv1/assignments", new).status_code == 200


def test_a_report_on_a_server_not_assigned_to_the_host_is_404(
    cloud: Cloud, hosts: dict[str, str]
) -> None:
    for server_id in ("00000000-0000-0000-0000-000000000000", "x" * 300, "..%2F..%2Fetc"):
        response = _call(
            cloud,
            "PUT",
            f"/hosts/hv1/servers/{server_id}/state",
            hosts["hv1"],
            json={"state": "running"},
        )
        assert response.status_code == 404, response.text


@pytest.mark.parametrize(
    "body",
    [
        {**BEAT, "vcpus": -1},
        {**BEAT, "vcpus": "32"},
        {**BEAT, "vcpus": True},
        {**BEAT, "memory_mib": 2**62},
        {**BEAT, "address": "a" * 65},
        {**BEAT, "hypervisor_type": ""},
        {**BEAT, "roles": ["compute"]},
    ],
)
def test_a_bad_heartbeat_is_400_and_changes_nothing(
    cloud: Cloud, hosts: dict[str, str], body: dict[str, Any]
) -> None:
    response = _call(cloud, "POST", "/hosts/hv1/heartbeat", hosts["hv1"], json=body)
    assert response.status_code == 400, response.text
    with cloud.platform.db.session() as s:
        row = s.get(ComputeHost, "hv1")
        assert row is not None and row.last_seen_at is None and row.vcpus == 0


@pytest.mark.parametrize(
    "query", ["since=abc", "since=-5", "wait=61", "wait=-1", "wait=1e9", "since=1&wait=x"]
)
def test_a_bad_watch_is_400(cloud: Cloud, hosts: dict[str, str], query: str) -> None:
    response = _call(cloud, "GET", f"/hosts/hv1/assignments?{query}", hosts["hv1"])
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    "body", [{"state": "flying"}, {}, {"state": 1}, {"state": "error", "message": 5}, []]
)
def test_a_bad_state_report_is_400(cloud: Cloud, hosts: dict[str, str], body: Any) -> None:
    response = _call(
        cloud,
        "PUT",
        "/hosts/hv1/servers/00000000-0000-0000-0000-000000000000/state",
        hosts["hv1"],
        json=body,
    )
    assert response.status_code == 400, response.text
