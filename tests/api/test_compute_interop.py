"""What Tempest's compute tests ask beyond the basics, in-process against real guests:
the guest's administrator password (shown once, reaching the guest only by its config
drive), multiple create, x509 key pairs and the version list.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from souverain import server
from souverain.common.clock import Clock
from tests.host_cleanup import kill_guests
from tests.vm.guest_support import build_tiny_image, missing_requirements

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient, settings_for
from .test_compute_api import BASE, Nova, fault, wait_for, wait_gone, wait_status


@dataclass
class Guests:
    cloud: Cloud
    a: Nova  # project A
    b: Nova  # project B
    image_id: str

    def config_drive_meta(self, server_id: str, name: str = "disk.config") -> dict[str, Any]:
        """meta_data.json as the guest reads it from its config drive."""
        import pycdlib

        path = self.cloud.platform.compute.driver.instance_dir(server_id) / name
        iso = pycdlib.PyCdlib()
        iso.open(str(path))
        try:
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, joliet_path="/openstack/latest/meta_data.json")
        finally:
            iso.close()
        meta: dict[str, Any] = json.loads(out.getvalue())
        return meta

    def create(self, version: str = "2.1", **fields: Any) -> Any:
        body = {"name": "s", "imageRef": self.image_id, "flavorRef": "1", "networks": "none"}
        body.update(fields)
        return self.a.post("/servers", {"server": body}, version=version)


@pytest.fixture(scope="module")
def guests(database_backend: str) -> Iterator[Guests]:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"compute API tests need real guests: {reason}")
    root = Path(tempfile.mkdtemp(prefix="souverain-nova-interop-", dir=_fast_tmp_root()))
    data_dir = root / "data"
    settings = settings_for(data_dir)
    settings.image.tiny_image = build_tiny_image()
    settings.compute.shutdown_timeout = 15
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings, clock=Clock(SteppingClock().now))
        try:
            with TestClient(built.app, base_url=BASE) as client:
                cloud = Cloud(client, built)
                alice, bob = cloud.member(), cloud.member()
                a, b = Nova(client, alice.token), Nova(client, bob.token)
                images = client.get("/image/v2/images?name=tiny", headers=alice.headers).json()
                yield Guests(cloud, a, b, images["images"][0]["id"])
        finally:
            built.close()
    finally:
        kill_guests(data_dir)
        shutil.rmtree(root, ignore_errors=True)


def _delete(g: Guests, *server_ids: str) -> None:
    for server_id in server_ids:
        g.a.ok("DELETE", f"/servers/{server_id}", status=204)
    for server_id in server_ids:
        wait_gone(g.a, server_id)


# ---------------------------------------------------------------------- adminPass


def test_create_shows_a_new_admin_password_once_and_the_guest_reads_it(guests: Guests) -> None:
    response = guests.create(name="pw-generated")
    assert response.status_code == 202, response.text
    created = response.json()["server"]
    password = created["adminPass"]
    assert isinstance(password, str) and len(password) >= 12
    server_id = created["id"]
    shown = wait_status(guests.a, server_id, "ACTIVE")
    assert "adminPass" not in shown
    assert password not in json.dumps(guests.a.ok("GET", "/servers/detail"))
    assert guests.config_drive_meta(server_id)["admin_pass"] == password
    # a second server gets a password of its own
    other = guests.create(name="pw-other").json()["server"]
    assert other["adminPass"] != password
    _delete(guests, server_id, other["id"])


def test_create_with_admin_pass_hands_that_password_to_the_guest(guests: Guests) -> None:
    created = guests.create(name="pw-given", adminPass="testpassword").json()["server"]
    assert created["adminPass"] == "testpassword"
    wait_status(guests.a, created["id"], "ACTIVE")
    assert guests.config_drive_meta(created["id"])["admin_pass"] == "testpassword"
    _delete(guests, created["id"])


@pytest.mark.parametrize("bad", [12345, ["x"], "p" * 256])
def test_admin_pass_that_is_not_a_short_string_is_400(guests: Guests, bad: Any) -> None:
    before = guests.a.ids()
    fault(guests.create(name="pw-bad", adminPass=bad), 400, "badRequest")
    assert guests.a.ids() == before


def test_rebuild_answers_a_new_admin_password_in_the_new_config_drive(guests: Guests) -> None:
    created = guests.create(name="pw-rebuild").json()["server"]
    server_id = created["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    body = {"rebuild": {"imageRef": guests.image_id, "adminPass": "rebuildPassw0rd"}}
    rebuilt = guests.a.ok("POST", f"/servers/{server_id}/action", body, status=202)["server"]
    assert rebuilt["adminPass"] == "rebuildPassw0rd"
    wait_status(guests.a, server_id, "ACTIVE")
    assert guests.config_drive_meta(server_id)["admin_pass"] == "rebuildPassw0rd"
    body = {"rebuild": {"imageRef": guests.image_id}}
    again = guests.a.ok("POST", f"/servers/{server_id}/action", body, status=202)["server"]
    assert again["adminPass"] not in ("", created["adminPass"], "rebuildPassw0rd")
    wait_status(guests.a, server_id, "ACTIVE")
    # another project cannot rebuild it (nor learn a password)
    fault(guests.b.post(f"/servers/{server_id}/action", body), 404, "itemNotFound")
    _delete(guests, server_id)


def test_multiple_create_answers_the_first_server_without_reservation(guests: Guests) -> None:
    response = guests.create(name="many", min_count=2)
    assert response.status_code == 202, response.text
    body = response.json()
    assert "reservation_id" not in body
    assert set(body["server"]) >= {"id", "links", "adminPass"}
    listed = [s for s in guests.a.ok("GET", "/servers")["servers"] if s["name"].startswith("many")]
    assert len(listed) == 2
    for item in listed:
        wait_status(guests.a, item["id"], "ACTIVE")
    _delete(guests, *(s["id"] for s in listed))


# ---------------------------------------------------------------------- key pairs


def test_x509_keypair_is_generated_with_its_certificate(guests: Guests) -> None:
    body = {"keypair": {"name": "cert-key", "type": "x509"}}
    created = guests.a.ok("POST", "/os-keypairs", body, status=201, version="2.2")["keypair"]
    assert created["type"] == "x509" and created["user_id"]
    cert = x509.load_pem_x509_certificate(created["public_key"].encode())
    serialization.load_pem_private_key(created["private_key"].encode(), password=None)
    assert created["fingerprint"] == ":".join(
        f"{b:02x}"
        for b in cert.fingerprint(hashes.SHA1())  # noqa: S303
    )
    shown = guests.a.ok("GET", "/os-keypairs/cert-key", version="2.2")["keypair"]
    assert (shown["type"], shown["public_key"]) == ("x509", created["public_key"])
    assert "private_key" not in shown
    fault(guests.b.get("/os-keypairs/cert-key"), 404, "itemNotFound")
    guests.a.ok("DELETE", "/os-keypairs/cert-key", status=204, version="2.2")


def test_x509_keypair_imports_a_certificate_and_refuses_anything_else(guests: Guests) -> None:
    made = guests.a.ok(
        "POST",
        "/os-keypairs",
        {"keypair": {"name": "src", "type": "x509"}},
        status=201,
        version="2.2",
    )["keypair"]
    guests.a.ok("DELETE", "/os-keypairs/src", status=204, version="2.2")
    body = {"keypair": {"name": "imp", "type": "x509", "public_key": made["public_key"]}}
    imported = guests.a.ok("POST", "/os-keypairs", body, status=201, version="2.2")["keypair"]
    assert imported["fingerprint"] == made["fingerprint"] and "private_key" not in imported
    assert imported["user_id"]
    ssh_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1hZGUtdXAta2V5LWZvci10ZXN0aW5nISE= x"
    body = {"keypair": {"name": "bad", "type": "x509", "public_key": ssh_key}}
    fault(guests.a.post("/os-keypairs", body, version="2.2"), 400, "badRequest")
    fault(guests.a.get("/os-keypairs/bad", version="2.2"), 404, "itemNotFound")
    guests.a.ok("DELETE", "/os-keypairs/imp", status=204, version="2.2")


def test_keypair_create_at_2_1_names_its_user(guests: Guests) -> None:
    created = guests.a.ok("POST", "/os-keypairs", {"keypair": {"name": "k21"}})["keypair"]
    assert created["user_id"] and "type" not in created
    guests.a.ok("DELETE", "/os-keypairs/k21", status=202)


# ---------------------------------------------------------------------- on a project network


def _project_network(g: Guests, token: str, cidr: str) -> str:
    headers = {"X-Auth-Token": token}
    client = g.cloud.client
    net = client.post("/network/v2.0/networks", json={"network": {"name": "n"}}, headers=headers)
    assert net.status_code == 201, net.text
    network_id: str = net.json()["network"]["id"]
    body = {"subnet": {"network_id": network_id, "cidr": cidr, "ip_version": 4}}
    subnet = client.post("/network/v2.0/subnets", json=body, headers=headers)
    assert subnet.status_code == 201, subnet.text
    return network_id


def test_server_on_a_project_network_boots_and_its_delete_frees_the_subnet(
    guests: Guests,
) -> None:
    token = guests.a.token
    network_id = _project_network(guests, token, "10.9.8.0/28")
    created = guests.create(name="netted", networks=[{"uuid": network_id}])
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    shown = wait_status(guests.a, server_id, "ACTIVE")
    assert shown["addresses"], shown
    guests.a.ok("DELETE", f"/servers/{server_id}", status=204)
    wait_gone(guests.a, server_id)
    headers = {"X-Auth-Token": token}
    ports = guests.cloud.client.get(f"/network/v2.0/ports?network_id={network_id}", headers=headers)
    assert [p for p in ports.json()["ports"] if p["device_owner"].startswith("compute:")] == []
    gone = guests.cloud.client.delete(f"/network/v2.0/networks/{network_id}", headers=headers)
    assert gone.status_code == 204, gone.text


# ---------------------------------------------------------------------- access IPs, update shape


def test_access_ips_are_kept_canonical_and_changed_by_update(guests: Guests) -> None:
    response = guests.create(
        name="access",
        accessIPv4="1.1.1.1",
        accessIPv6="0000:0000:0000:0000:0000:babe:220.12.22.2",
    )
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    shown = guests.a.server(server_id)
    assert (shown["accessIPv4"], shown["accessIPv6"]) == ("1.1.1.1", "::babe:dc0c:1602")
    body = {"server": {"accessIPv4": "2.2.2.2", "accessIPv6": "::babe:202:202"}}
    updated = guests.a.ok("PUT", f"/servers/{server_id}", body)["server"]
    assert (updated["accessIPv4"], updated["accessIPv6"]) == ("2.2.2.2", "::babe:202:202")
    fault(guests.b.put(f"/servers/{server_id}", body), 404, "itemNotFound")
    wait_status(guests.a, server_id, "ACTIVE")
    _delete(guests, server_id)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("accessIPv6", "notvalid"),
        ("accessIPv4", "::1"),
        ("accessIPv4", 7),
        ("accessIPv6", "1.2.3.4"),
    ],
)
def test_access_ip_that_is_not_an_address_of_its_version_is_400(
    guests: Guests, field: str, value: Any
) -> None:
    before = guests.a.ids()
    fault(guests.create(name="bad-ip", **{field: value}), 400, "badRequest")
    assert guests.a.ids() == before


def test_update_answers_without_extension_attributes_until_2_75(guests: Guests) -> None:
    server_id = guests.create(name="shape").json()["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    old = guests.a.ok("PUT", f"/servers/{server_id}", {"server": {"name": "shape-2"}})["server"]
    assert old["name"] == "shape-2"
    assert not [k for k in old if k.startswith(("OS-EXT", "OS-SRV-USG", "os-extended"))]
    assert "key_name" not in old and "config_drive" not in old
    new = guests.a.ok(
        "PUT", f"/servers/{server_id}", {"server": {"name": "shape-3"}}, version="2.75"
    )["server"]
    assert new["OS-EXT-STS:vm_state"] == "active" and "key_name" in new
    _delete(guests, server_id)


# ---------------------------------------------------------------------- the image proxy


def test_server_image_through_the_proxy_keeps_metadata_and_deletes(guests: Guests) -> None:
    server_id = guests.create(name="snap").json()["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    body = {"createImage": {"name": "snap-₡", "metadata": {"image_type": "test"}}}
    response = guests.a.post(f"/servers/{server_id}/action", body)
    assert response.status_code == 202, response.text
    image_id = response.headers["location"].rsplit("/", 1)[-1]

    def active() -> dict[str, Any] | None:
        image: dict[str, Any] = guests.a.ok("GET", f"/images/{image_id}")["image"]
        assert image["status"] in ("SAVING", "ACTIVE"), image
        return image if image["status"] == "ACTIVE" else None

    image = wait_for(active, "the snapshot to be active")
    assert image["name"] == "snap-₡" and image["progress"] == 100
    assert image["metadata"]["image_type"] == "test"
    assert image["server"]["id"] == server_id
    original = guests.a.ok("GET", f"/images/{guests.image_id}")["image"]
    assert image["minRam"] == original["minRam"]
    fault(guests.b.get(f"/images/{image_id}"), 404, "itemNotFound")
    fault(guests.b.delete(f"/images/{image_id}"), 404, "itemNotFound")
    fault(guests.a.get(f"/images/{image_id}", version="2.36"), 404, "itemNotFound")
    wait_status(guests.a, server_id, "ACTIVE")
    guests.a.ok("DELETE", f"/images/{image_id}", status=204)
    fault(guests.a.get(f"/images/{image_id}"), 404, "itemNotFound")
    _delete(guests, server_id)


# ---------------------------------------------------------------------- server groups


def _group(g: Guests, nova: Nova, version: str, **fields: Any) -> Any:
    return nova.post("/os-server-groups", {"server_group": fields}, version=version)


def test_server_group_shape_follows_the_microversion(guests: Guests) -> None:
    old = _group(guests, guests.a, "2.1", name="g-old", policies=["affinity"])
    assert old.status_code == 200, old.text
    body = old.json()["server_group"]
    assert set(body) == {"id", "name", "policies", "members", "metadata"}
    assert (body["policies"], body["members"], body["metadata"]) == (["affinity"], [], {})
    mid = guests.a.ok("GET", f"/os-server-groups/{body['id']}", version="2.13")["server_group"]
    assert mid["project_id"] and mid["user_id"]
    new = guests.a.ok("GET", f"/os-server-groups/{body['id']}", version="2.64")["server_group"]
    assert (new["policy"], new["rules"]) == ("affinity", {}) and "policies" not in new
    fields = {"name": "g-new", "policy": "anti-affinity", "rules": {"max_server_per_host": 2}}
    made = _group(guests, guests.a, "2.64", **fields).json()["server_group"]
    assert made["rules"] == {"max_server_per_host": 2}
    listed = guests.a.ok("GET", "/os-server-groups")["server_groups"]
    assert {g["id"] for g in listed} >= {body["id"], made["id"]}
    for group_id in (body["id"], made["id"]):
        guests.a.ok("DELETE", f"/os-server-groups/{group_id}", status=204)
    fault(guests.a.get(f"/os-server-groups/{body['id']}"), 404, "itemNotFound")


@pytest.mark.parametrize(
    ("version", "fields"),
    [
        ("2.1", {"name": "x", "policies": ["soft-affinity"]}),  # soft-* from 2.15
        ("2.15", {"name": "x", "policies": ["affinity", "anti-affinity"]}),
        ("2.15", {"name": "x", "policies": ["spread"]}),
        ("2.15", {"name": "x", "policy": "affinity"}),  # policy from 2.64
        ("2.64", {"name": "x", "policies": ["affinity"]}),
        ("2.64", {"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}),
        ("2.64", {"name": "x", "policy": "anti-affinity", "rules": {"max_server_per_host": 0}}),
        ("2.64", {"name": "", "policy": "affinity"}),
    ],
)
def test_bad_server_group_is_400_and_makes_nothing(
    guests: Guests, version: str, fields: dict[str, Any]
) -> None:
    before = guests.a.ok("GET", "/os-server-groups")["server_groups"]
    fault(_group(guests, guests.a, version, **fields), 400, "badRequest")
    assert guests.a.ok("GET", "/os-server-groups")["server_groups"] == before


def test_server_group_of_another_project_is_not_found(guests: Guests) -> None:
    group = _group(guests, guests.a, "2.15", name="mine", policies=["soft-anti-affinity"])
    group_id = group.json()["server_group"]["id"]
    fault(guests.b.get(f"/os-server-groups/{group_id}"), 404, "itemNotFound")
    fault(guests.b.delete(f"/os-server-groups/{group_id}"), 404, "itemNotFound")
    assert group_id not in [
        g["id"] for g in guests.b.ok("GET", "/os-server-groups")["server_groups"]
    ]
    # another project cannot put its servers in it either
    body = {
        "server": {"name": "x", "imageRef": guests.image_id, "flavorRef": "1", "networks": "none"},
        "os:scheduler_hints": {"group": group_id},
    }
    fault(guests.b.post("/servers", body), 400, "badRequest")
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    every = admin.ok("GET", "/os-server-groups?all_projects=true")["server_groups"]
    assert group_id in [g["id"] for g in every]
    guests.a.ok("DELETE", f"/os-server-groups/{group_id}", status=204)


def test_anti_affinity_on_one_host_admits_one_member_then_no_valid_host(guests: Guests) -> None:
    group = _group(guests, guests.a, "2.1", name="apart", policies=["anti-affinity"])
    group_id = group.json()["server_group"]["id"]

    def member(name: str) -> str:
        body = {
            "server": {
                "name": name,
                "imageRef": guests.image_id,
                "flavorRef": "1",
                "networks": "none",
            },
            "os:scheduler_hints": {"group": group_id},
        }
        server_id: str = guests.a.ok("POST", "/servers", body, status=202)["server"]["id"]
        return server_id

    first = member("apart-1")
    wait_status(guests.a, first, "ACTIVE")
    second = member("apart-2")
    failed = wait_status(guests.a, second, "ERROR")
    assert "No valid host" in failed["fault"]["message"]
    shown = guests.a.ok("GET", f"/os-server-groups/{group_id}")["server_group"]
    assert shown["members"] == [first, second]
    assert guests.a.server(first, version="2.71")["server_groups"] == [group_id]
    assert "server_groups" not in guests.a.server(first, version="2.70")
    _delete(guests, first, second)
    assert guests.a.ok("GET", f"/os-server-groups/{group_id}")["server_group"]["members"] == []
    guests.a.ok("DELETE", f"/os-server-groups/{group_id}", status=204)


def test_server_group_quota_is_ten_per_project(guests: Guests) -> None:
    made = []
    held = len(guests.b.ok("GET", "/os-server-groups")["server_groups"])
    for index in range(10 - held):
        response = _group(guests, guests.b, "2.1", name=f"q{index}", policies=["affinity"])
        made.append(response.json()["server_group"]["id"])
    fault(_group(guests, guests.b, "2.1", name="over", policies=["affinity"]), 403, "forbidden")
    for group_id in made:
        guests.b.ok("DELETE", f"/os-server-groups/{group_id}", status=204)


# ---------------------------------------------------------------------- hypervisors, actions


def test_hypervisor_uptime_and_servers_for_admins_only(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    (hyper,) = admin.ok("GET", "/os-hypervisors")["hypervisors"]
    uptime = admin.ok("GET", f"/os-hypervisors/{hyper['id']}/uptime")["hypervisor"]
    assert " up " in uptime["uptime"] and "load average" in uptime["uptime"]
    fault(guests.a.get(f"/os-hypervisors/{hyper['id']}/uptime"), 403, "forbidden")
    fault(admin.get("/os-hypervisors/999/uptime"), 404, "itemNotFound")
    server_id = guests.create(name="on-host").json()["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    name = hyper["hypervisor_hostname"]
    (found,) = admin.ok("GET", f"/os-hypervisors/{name}/servers")["hypervisors"]
    assert {"uuid": server_id, "name": "on-host"} in found["servers"]
    (searched,) = admin.ok("GET", f"/os-hypervisors/{name}/search")["hypervisors"]
    assert "servers" not in searched
    fault(admin.get("/os-hypervisors/no-such-host/servers"), 404, "itemNotFound")
    fault(guests.a.get(f"/os-hypervisors/{name}/servers"), 403, "forbidden")
    fault(admin.get(f"/os-hypervisors/{name}/servers", version="2.53"), 404, "itemNotFound")
    (listed,) = admin.ok("GET", "/os-hypervisors?with_servers=true", version="2.53")["hypervisors"]
    assert {"uuid": server_id, "name": "on-host"} in listed["servers"]
    shown = admin.ok("GET", f"/os-hypervisors/{listed['id']}", version="2.88")["hypervisor"]
    assert "load average" in shown["uptime"]
    fault(admin.get(f"/os-hypervisors/{listed['id']}/uptime", version="2.88"), 404, "itemNotFound")
    _delete(guests, server_id)


def test_action_events_show_to_members_from_2_51_and_progress_only_while_running(
    guests: Guests,
) -> None:
    response = guests.create(name="evented")
    server_id = response.json()["server"]["id"]
    request_id = response.headers["x-openstack-request-id"]
    assert "progress" in wait_status(guests.a, server_id, "ACTIVE")
    path = f"/servers/{server_id}/os-instance-actions/{request_id}"
    assert "events" not in guests.a.ok("GET", path, version="2.50")["instanceAction"]
    (event,) = guests.a.ok("GET", path, version="2.62")["instanceAction"]["events"]
    assert event["event"] == "compute_create" and "host" not in event and event["hostId"]
    assert "traceback" not in event
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    (event,) = admin.ok("GET", path, version="2.84")["instanceAction"]["events"]
    assert event["host"] and event["details"] is None
    fault(guests.b.get(path), 404, "itemNotFound")
    guests.a.ok("POST", f"/servers/{server_id}/action", {"os-stop": None}, status=202)
    assert "progress" not in wait_status(guests.a, server_id, "SHUTOFF")
    _delete(guests, server_id)


# ---------------------------------------------------------------------- os-services


def test_services_filter_and_forced_down_appears_from_2_11(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    rows = admin.ok("GET", "/os-services?binary=nova-compute")["services"]
    assert [r["binary"] for r in rows] == ["nova-compute"] and "forced_down" not in rows[0]
    host = rows[0]["host"]
    assert len(admin.ok("GET", f"/os-services?host={host}")["services"]) == 3
    assert admin.ok("GET", "/os-services?host=elsewhere")["services"] == []
    assert admin.ok("GET", "/os-services", version="2.11")["services"][0]["forced_down"] is False


def test_disabled_compute_takes_no_new_server_until_enabled(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    host = admin.ok("GET", "/os-services")["services"][0]["host"]
    which = {"host": host, "binary": "nova-compute"}
    body = {**which, "disabled_reason": "maintenance"}
    done = admin.ok("PUT", "/os-services/disable-log-reason", body)["service"]
    assert done == {**which, "status": "disabled", "disabled_reason": "maintenance"}
    (row,) = admin.ok("GET", "/os-services?binary=nova-compute")["services"]
    assert (row["status"], row["disabled_reason"]) == ("disabled", "maintenance")
    refused = guests.create(name="nowhere").json()["server"]["id"]
    assert "No valid host" in wait_status(guests.a, refused, "ERROR")["fault"]["message"]
    assert admin.ok("PUT", "/os-services/enable", which)["service"]["status"] == "enabled"
    placed = guests.create(name="somewhere").json()["server"]["id"]
    wait_status(guests.a, placed, "ACTIVE")
    _delete(guests, refused, placed)


def test_forced_down_by_action_from_2_11_and_by_uuid_from_2_53(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    host = admin.ok("GET", "/os-services")["services"][0]["host"]
    body = {"host": host, "binary": "nova-compute", "forced_down": True}
    fault(admin.put("/os-services/force-down", body), 404, "itemNotFound")  # before 2.11
    down = admin.ok("PUT", "/os-services/force-down", body, version="2.11")["service"]
    assert down == body
    (row,) = admin.ok("GET", "/os-services?binary=nova-compute", version="2.53")["services"]
    assert (row["state"], row["forced_down"]) == ("down", True)
    fault(admin.put("/os-services/force-down", body, version="2.53"), 404, "itemNotFound")
    up = {"forced_down": False, "status": "disabled", "disabled_reason": "later"}
    changed = admin.ok("PUT", f"/os-services/{row['id']}", up, version="2.53")["service"]
    assert (changed["state"], changed["status"], changed["disabled_reason"]) == (
        "up",
        "disabled",
        "later",
    )
    changed = admin.ok("PUT", f"/os-services/{row['id']}", {"status": "enabled"}, version="2.53")[
        "service"
    ]
    assert (changed["status"], changed["disabled_reason"]) == ("enabled", None)


@pytest.mark.parametrize(
    ("path", "body", "version", "status"),
    [
        ("/os-services/disable", {"host": "elsewhere", "binary": "nova-compute"}, "2.1", 404),
        ("/os-services/disable", {"binary": "nova-compute"}, "2.1", 400),
        ("/os-services/reboot", {}, "2.1", 404),
        ("/os-services/{id}", {"status": "sleeping"}, "2.53", 400),
        ("/os-services/{id}", {"disabled_reason": "why"}, "2.53", 400),
        ("/os-services/{id}", {}, "2.53", 400),
        ("/os-services/{scheduler}", {"forced_down": True}, "2.53", 400),
        ("/os-services/00000000-0000-0000-0000-000000000000", {"status": "enabled"}, "2.53", 404),
    ],
)
def test_bad_service_updates_are_refused_and_change_nothing(
    guests: Guests, path: str, body: dict[str, Any], version: str, status: int
) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)

    def states() -> list[dict[str, Any]]:
        rows = admin.ok("GET", "/os-services", version="2.53")["services"]
        return [{k: v for k, v in r.items() if k != "updated_at"} for r in rows]

    before = states()
    ids = {"id": before[2]["id"], "scheduler": before[1]["id"]}
    response = admin.put(path.format(**ids), body, version=version)
    assert response.status_code == status, response.text
    assert states() == before


def test_members_cannot_change_services(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    host = admin.ok("GET", "/os-services")["services"][0]["host"]
    body = {"host": host, "binary": "nova-compute"}
    fault(guests.a.put("/os-services/disable", body), 403, "forbidden")
    assert admin.ok("GET", "/os-services")["services"][2]["status"] == "enabled"


# ---------------------------------------------------------------------- diagnostics


def test_diagnostics_for_admins_in_nova_shape_per_microversion(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    server_id = guests.create(name="diagnosed").json()["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    path = f"/servers/{server_id}/diagnostics"
    new = admin.ok("GET", path, version="2.48")
    assert (new["state"], new["num_cpus"], new["config_drive"]) == ("running", 1, True)
    assert new["memory_details"]["maximum"] == 128 and new["hypervisor"] in ("kvm", "tcg", "qemu")
    assert new["num_disks"] == len(new["disk_details"]) >= 1
    assert new["num_nics"] == 0 and new["nic_details"] == []  # networks none
    # QEMU's own counters: the booting guest reads its root disk
    wait_for(
        lambda: admin.ok("GET", path, version="2.48")["disk_details"][0]["read_bytes"] > 0,
        "the guest to read its root disk",
    )
    old = admin.ok("GET", path)
    assert old["memory"] == 128 * 1024 and old["vda_read"] > 0
    fault(guests.a.get(path), 403, "forbidden")
    fault(
        admin.get("/servers/00000000-0000-0000-0000-000000000000/diagnostics"), 404, "itemNotFound"
    )
    guests.a.ok("POST", f"/servers/{server_id}/action", {"os-stop": None}, status=202)
    wait_status(guests.a, server_id, "SHUTOFF")
    stopped = admin.ok("GET", path, version="2.48")
    assert (stopped["state"], stopped["uptime"], stopped["disk_details"]) == ("shutdown", None, [])
    _delete(guests, server_id)


# ---------------------------------------------------------------------- smaller shapes


def test_cpu_info_is_a_string_before_2_28_and_an_object_from_it(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    (old,) = admin.ok("GET", "/os-hypervisors/detail", version="2.27")["hypervisors"]
    assert isinstance(old["cpu_info"], str) and "arch" in json.loads(old["cpu_info"])
    (new,) = admin.ok("GET", "/os-hypervisors/detail", version="2.28")["hypervisors"]
    assert isinstance(new["cpu_info"], dict) and new["cpu_info"]["arch"]
    assert new["cpu_info"]["topology"]["cores"] >= 1


@pytest.mark.parametrize(("given", "public"), [("False", False), ("true", True), (False, False)])
def test_flavor_is_public_takes_nova_boolean_spellings(
    guests: Guests, given: Any, public: bool
) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    body = {
        "flavor": {
            "name": f"spelled-{given}",
            "ram": 64,
            "vcpus": 1,
            "disk": 1,
            "os-flavor-access:is_public": given,
        }
    }
    made = admin.ok("POST", "/flavors", body)["flavor"]
    assert made["os-flavor-access:is_public"] is public
    admin.ok("DELETE", f"/flavors/{made['id']}", status=202)


def test_flavor_is_public_that_is_no_boolean_is_400(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    body = {"flavor": {"name": "odd", "ram": 64, "vcpus": 1, "disk": 1}}
    body["flavor"]["os-flavor-access:is_public"] = "maybe"
    fault(admin.post("/flavors", body), 400, "badRequest")
    assert "odd" not in [f["name"] for f in admin.ok("GET", "/flavors?is_public=None")["flavors"]]


def test_empty_update_changes_nothing_and_2_100_shows_scheduler_hints(guests: Guests) -> None:
    group = _group(guests, guests.a, "2.15", name="hinted", policies=["soft-affinity"])
    group_id = group.json()["server_group"]["id"]
    body = {
        "server": {"name": "hinted", "imageRef": guests.image_id, "flavorRef": "1"},
        "os:scheduler_hints": {"group": group_id},
    }
    body["server"]["networks"] = "none"
    server_id = guests.a.ok("POST", "/servers", body, status=202)["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    same = guests.a.ok("PUT", f"/servers/{server_id}", {"server": {}})["server"]
    assert same["name"] == "hinted"
    shown = guests.a.server(server_id, version="2.100")
    assert shown["scheduler_hints"] == {"group": group_id}
    (listed,) = [
        s
        for s in guests.a.ok("GET", "/servers/detail", version="2.100")["servers"]
        if s["id"] == server_id
    ]
    assert listed["scheduler_hints"] == {"group": group_id} and "server_groups" not in listed
    assert "scheduler_hints" not in guests.a.server(server_id, version="2.99")
    _delete(guests, server_id)
    guests.a.ok("DELETE", f"/os-server-groups/{group_id}", status=204)


# ---------------------------------------------------------------------- rescue


def test_rescue_boots_a_rescue_disk_with_its_own_password_then_unrescue(guests: Guests) -> None:
    server_id = guests.create(name="rescued").json()["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    action = f"/servers/{server_id}/action"
    fault(guests.b.post(action, {"rescue": None}), 404, "itemNotFound")
    fault(guests.a.post(action, {"rescue": {"colour": "red"}}), 400, "badRequest")
    answer = guests.a.ok("POST", action, {"rescue": {"adminPass": "r3scue"}})
    assert answer == {"adminPass": "r3scue"}
    shown = wait_status(guests.a, server_id, "RESCUE")
    assert shown["OS-EXT-STS:vm_state"] == "rescued"
    instance = guests.cloud.platform.compute.driver.instance_dir(server_id)
    assert (instance / "disk.rescue").exists() and (instance / "disk.qcow2").exists()
    assert guests.config_drive_meta(server_id, "disk.rescue.config")["admin_pass"] == "r3scue"
    assert "admin_pass" in guests.config_drive_meta(server_id)  # the server's own, untouched
    assert server_id in guests.a.ids("?status=RESCUE")
    fault(guests.a.post(action, {"os-stop": None}), 409, "conflictingRequest")
    fault(guests.a.post(action, {"rescue": None}), 409, "conflictingRequest")
    guests.a.ok("POST", action, {"unrescue": None}, status=202)
    wait_status(guests.a, server_id, "ACTIVE")
    assert not (instance / "disk.rescue").exists()
    fault(guests.a.post(action, {"unrescue": None}), 409, "conflictingRequest")
    generated = guests.a.ok("POST", action, {"rescue": None})["adminPass"]
    assert len(generated) >= 12
    wait_status(guests.a, server_id, "RESCUE")
    _delete(guests, server_id)  # a rescued server can be deleted


# ---------------------------------------------------------------------- shelve


def _images_named(g: Guests, name: str) -> list[dict[str, Any]]:
    found = g.cloud.client.get(f"/image/v2/images?name={name}", headers={"X-Auth-Token": g.a.token})
    images: list[dict[str, Any]] = found.json()["images"]
    return images


def test_shelve_offloads_to_a_snapshot_and_unshelve_boots_from_it(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    server_id = guests.create(name="shelf", metadata={"kept": "yes"}).json()["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    action = f"/servers/{server_id}/action"
    fault(guests.b.post(action, {"shelve": None}), 404, "itemNotFound")
    guests.a.ok("POST", action, {"shelve": None}, status=202)
    shown = wait_status(guests.a, server_id, "SHELVED_OFFLOADED")
    assert shown["metadata"] == {"kept": "yes"}
    (snapshot,) = _images_named(guests, "shelf-shelved")
    assert snapshot["status"] == "active"
    assert not guests.cloud.platform.compute.driver.instance_dir(server_id).exists()
    (hyper,) = admin.ok("GET", "/os-hypervisors/detail")["hypervisors"]
    on_host = admin.ok("GET", f"/os-hypervisors/{hyper['hypervisor_hostname']}/servers")
    assert server_id not in [s["uuid"] for s in on_host["hypervisors"][0]["servers"]]
    fault(guests.a.post(action, {"os-start": None}), 409, "conflictingRequest")
    # already offloaded: Nova's 409 for shelveOffload, and it is the admin's to ask
    fault(guests.a.post(action, {"shelveOffload": None}), 403, "forbidden")
    refused = admin.post(action, {"shelveOffload": None})
    fault(refused, 409, "conflictingRequest")
    assert "vm_state shelved_offloaded" in refused.json()["conflictingRequest"]["message"]
    fault(guests.a.post(action, {"unshelve": {"availability_zone": "nova"}}), 400, "badRequest")
    elsewhere = {"unshelve": {"availability_zone": "no-such-zone"}}
    fault(guests.a.post(action, elsewhere, version="2.77"), 400, "badRequest")
    here = {"unshelve": {"availability_zone": "nova"}}  # 2.77: a zone the cloud has
    guests.a.ok("POST", action, here, status=202, version="2.77")
    wait_status(guests.a, server_id, "ACTIVE")
    assert _images_named(guests, "shelf-shelved") == []
    assert guests.cloud.platform.compute.driver.instance_dir(server_id).exists()
    # shelved again, then deleted: the snapshot goes with the server
    guests.a.ok("POST", action, {"shelve": None}, status=202)
    wait_status(guests.a, server_id, "SHELVED_OFFLOADED")
    assert len(_images_named(guests, "shelf-shelved")) == 1
    _delete(guests, server_id)
    wait_for(lambda: _images_named(guests, "shelf-shelved") == [], "the snapshot to go")


def test_image_proxy_lists_by_name_until_2_35(guests: Guests) -> None:
    (brief,) = guests.a.ok("GET", "/images?name=tiny")["images"]
    assert set(brief) == {"id", "name", "links"} and brief["id"] == guests.image_id
    (detail,) = guests.a.ok("GET", "/images/detail?name=tiny")["images"]
    assert detail["status"] == "ACTIVE" and detail["minDisk"] >= 0
    assert guests.a.ok("GET", "/images?name=no-such-image")["images"] == []
    assert len(guests.a.ok("GET", "/images?limit=1")["images"]) == 1
    fault(guests.a.get("/images", version="2.36"), 404, "itemNotFound")
    fault(guests.a.get("/images?marker=nonexistent"), 400, "badRequest")


def test_rebuild_answer_names_key_from_2_54_and_user_data_from_2_57(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    server_id = guests.create(name="rebuilt", user_data="ZWNobw==").json()["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    action = f"/servers/{server_id}/action"
    body = {"rebuild": {"imageRef": guests.image_id}}
    old = guests.a.ok("POST", action, body, status=202, version="2.53")["server"]
    assert "key_name" not in old and "user_data" not in old
    wait_status(guests.a, server_id, "ACTIVE")
    mid = guests.a.ok("POST", action, body, status=202, version="2.57")["server"]
    assert mid["key_name"] is None and mid["user_data"] == "ZWNobw=="
    wait_status(guests.a, server_id, "ACTIVE")
    new = admin.ok("POST", action, body, status=202, version="2.75")["server"]
    assert new["user_data"] == "ZWNobw==" and "OS-EXT-SRV-ATTR:user_data" not in new
    assert new["OS-EXT-SRV-ATTR:host"] and new["adminPass"]
    wait_status(guests.a, server_id, "ACTIVE")
    _delete(guests, server_id)


def test_reset_state_is_an_admins_repair(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    server_id = guests.create(name="reset").json()["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    action = f"/servers/{server_id}/action"
    fault(guests.a.post(action, {"os-resetState": {"state": "error"}}), 403, "forbidden")
    fault(admin.post(action, {"os-resetState": {"state": "deleted"}}), 400, "badRequest")
    admin.ok("POST", action, {"os-resetState": {"state": "error"}}, status=202)
    assert guests.a.server(server_id)["status"] == "ERROR"
    assert server_id in admin.ids("?status=ERROR&all_tenants=1")
    admin.ok("POST", action, {"os-resetState": {"state": "active"}}, status=202)
    assert guests.a.server(server_id)["status"] == "ACTIVE"
    _delete(guests, server_id)


def test_flavor_list_is_public_filter_takes_boolean_spellings(guests: Guests) -> None:
    admin = Nova(guests.cloud.client, guests.cloud.admin_token)
    body = {"flavor": {"name": "hidden", "ram": 64, "vcpus": 1, "disk": 1}}
    body["flavor"]["os-flavor-access:is_public"] = False
    made = admin.ok("POST", "/flavors", body)["flavor"]
    for word in ("f", "false", "no", "0"):
        names = [f["name"] for f in admin.ok("GET", f"/flavors?is_public={word}")["flavors"]]
        assert "hidden" in names and "t1.nano" not in names
    for word in ("t", "true", "yes", "1"):
        names = [f["name"] for f in admin.ok("GET", f"/flavors?is_public={word}")["flavors"]]
        assert "hidden" not in names and "t1.nano" in names
    fault(admin.get("/flavors?is_public=perhaps"), 400, "badRequest")
    admin.ok("DELETE", f"/flavors/{made['id']}", status=202)


def test_image_proxy_filters_by_server_and_type(guests: Guests) -> None:
    server_id = guests.create(name="imaged").json()["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    body = {"createImage": {"name": "from-imaged"}}
    response = guests.a.post(f"/servers/{server_id}/action", body)
    image_id = response.headers["location"].rsplit("/", 1)[-1]
    by_server = guests.a.ok("GET", f"/images?server={server_id}")["images"]
    assert [i["id"] for i in by_server] == [image_id]
    link = f"{BASE}/compute/v2.1/servers/{server_id}"
    assert [i["id"] for i in guests.a.ok("GET", f"/images/detail?server={link}")["images"]] == [
        image_id
    ]
    snapshots = [i["id"] for i in guests.a.ok("GET", "/images?type=snapshot")["images"]]
    assert image_id in snapshots and guests.image_id not in snapshots
    wait_status(guests.a, server_id, "ACTIVE")
    guests.a.ok("DELETE", f"/images/{image_id}", status=204)
    _delete(guests, server_id)


def test_security_groups_shown_added_and_removed_through_the_server(guests: Guests) -> None:
    network_id = _project_network(guests, guests.a.token, "10.9.7.0/28")
    headers = {"X-Auth-Token": guests.a.token}
    made = guests.cloud.client.post(
        "/network/v2.0/security-groups", json={"security_group": {"name": "web"}}, headers=headers
    )
    assert made.status_code == 201, made.text
    response = guests.create(name="guarded", networks=[{"uuid": network_id}])
    server_id = response.json()["server"]["id"]
    shown = wait_status(guests.a, server_id, "ACTIVE")
    assert shown["security_groups"] == [{"name": "default"}]
    action = f"/servers/{server_id}/action"
    guests.a.ok("POST", action, {"addSecurityGroup": {"name": "web"}}, status=202)
    names = [g["name"] for g in guests.a.server(server_id)["security_groups"]]
    assert names == ["default", "web"]
    fault(guests.a.post(action, {"addSecurityGroup": {"name": "nope"}}), 404, "itemNotFound")
    fault(guests.b.post(action, {"addSecurityGroup": {"name": "web"}}), 404, "itemNotFound")
    for name in ("default", "web"):
        guests.a.ok("POST", action, {"removeSecurityGroup": {"name": name}}, status=202)
    assert "security_groups" not in guests.a.server(server_id)
    fault(guests.a.post(action, {"removeSecurityGroup": {"name": "web"}}), 400, "badRequest")
    # a server without ports has none to take
    bare = guests.create(name="bare").json()["server"]["id"]
    bare_action = f"/servers/{bare}/action"
    fault(guests.a.post(bare_action, {"addSecurityGroup": {"name": "web"}}), 400, "badRequest")
    _delete(guests, server_id, bare)
    gone = guests.cloud.client.delete(f"/network/v2.0/networks/{network_id}", headers=headers)
    assert gone.status_code == 204, gone.text


# ---------------------------------------------------------------------- detach while booting


def _volume_status(g: Guests, volume_id: str) -> str:
    headers = {"X-Auth-Token": g.a.token}
    found = g.cloud.client.get(f"/volume/v3/volumes/{volume_id}", headers=headers)
    status: str = found.json()["volume"]["status"]
    return status


def test_detach_asked_while_the_guest_boots_is_done_once_it_listens(guests: Guests) -> None:
    """A hot-unplug asked before the guest's hotplug driver listens is asked again."""
    server_id = guests.create(name="restarted").json()["server"]["id"]
    wait_status(guests.a, server_id, "ACTIVE")
    headers = {"X-Auth-Token": guests.a.token}
    made = guests.cloud.client.post(
        "/volume/v3/volumes", json={"volume": {"size": 1}}, headers=headers
    )
    volume_id = made.json()["volume"]["id"]
    wait_for(lambda: _volume_status(guests, volume_id) == "available", "the volume")
    body = {"volumeAttachment": {"volumeId": volume_id}}
    guests.a.ok("POST", f"/servers/{server_id}/os-volume_attachments", body)
    wait_for(lambda: _volume_status(guests, volume_id) == "in-use", "the attachment")
    action = f"/servers/{server_id}/action"
    guests.a.ok("POST", action, {"os-stop": None}, status=202)
    wait_status(guests.a, server_id, "SHUTOFF")
    guests.a.ok("POST", action, {"os-start": None}, status=202)
    wait_status(guests.a, server_id, "ACTIVE")  # QEMU runs; the guest has only begun to boot
    guests.a.ok("DELETE", f"/servers/{server_id}/os-volume_attachments/{volume_id}", status=202)
    wait_for(lambda: _volume_status(guests, volume_id) == "available", "the detach", 60)
    _delete(guests, server_id)
