"""Cinder's views field by field: each field appears from its microversion on, admin-only
fields only for admins, the attribute extensions only on reads (show and detail lists).

The expected sets are written out here from Cinder's API reference, not derived from
`views`' table, so a wrong row in the table fails a test.
"""

from __future__ import annotations

from typing import Any

import pytest

from souverain.volume.api_admin import EXTENSIONS

from .support import Cloud
from .test_volumes import Cinder, admin, cinder_error, cloud, tenant, upload_image

__all__ = ["cloud"]

BASE_VOLUME = {
    "id", "name", "description", "status", "size", "availability_zone", "bootable",
    "encrypted", "multiattach", "attachments", "metadata", "snapshot_id", "source_volid",
    "volume_type", "user_id", "replication_status", "consistencygroup_id", "created_at",
    "updated_at", "links",
}  # fmt: skip
ADMIN_READS = {
    "os-vol-host-attr:host",
    "os-vol-mig-status-attr:migstat",
    "os-vol-mig-status-attr:name_id",
}
READS = {"os-vol-tenant-attr:tenant_id"}  # project readers see it on show and detail
BASE_SNAPSHOT = {
    "id", "name", "description", "status", "size", "volume_id", "metadata", "created_at",
    "updated_at",
}  # fmt: skip
EXTENDED_SNAPSHOT = {
    "os-extended-snapshot-attributes:progress",
    "os-extended-snapshot-attributes:project_id",
}


def at(c: Cinder, version: str) -> Cinder:
    other = Cinder(c.cloud, c.token, c.project_id, c.user_id)
    other.version = version
    return other


def shown(c: Cinder, volume_id: str) -> set[str]:
    return set(c.show(volume_id))


@pytest.mark.parametrize(
    ("version", "member_extra", "admin_extra"),
    [
        ("3.0", set(), {"migration_status"}),
        ("3.13", {"group_id"}, {"migration_status"}),
        ("3.21", {"group_id"}, {"migration_status", "provider_id"}),
        (
            "3.48",
            {"group_id", "shared_targets", "service_uuid"},
            {"migration_status", "provider_id"},
        ),
        (
            "3.61",
            {"group_id", "shared_targets", "service_uuid"},
            {"migration_status", "provider_id", "cluster_name"},
        ),
        (
            "3.63",
            {"group_id", "shared_targets", "service_uuid", "volume_type_id"},
            {"migration_status", "provider_id", "cluster_name"},
        ),
        (
            "3.65",
            {"group_id", "shared_targets", "service_uuid", "volume_type_id", "consumes_quota"},
            {"migration_status", "provider_id", "cluster_name"},
        ),
    ],
)
def test_volume_fields_per_microversion_and_role(
    cloud: Cloud, version: str, member_extra: set[str], admin_extra: set[str]
) -> None:
    c = at(tenant(cloud), version)
    a = at(admin(cloud), version)
    # from 3.64 shows and detail lists carry encryption_key_id (create and update do not)
    major, minor = (int(part) for part in version.split("."))
    reads = READS | ({"encryption_key_id"} if (major, minor) >= (3, 64) else set())
    created_body = c.post("/volumes", {"volume": {"size": 1}})
    assert created_body.status_code == 202
    created = created_body.json()["volume"]
    volume_id = created["id"]
    assert set(created) == BASE_VOLUME | member_extra  # a create answers no attribute extension
    assert shown(c, volume_id) == BASE_VOLUME | member_extra | reads
    assert shown(a, volume_id) == BASE_VOLUME | member_extra | admin_extra | ADMIN_READS | reads
    detail = c.get("/volumes/detail").json()["volumes"]
    assert {k for v in detail for k in v} == BASE_VOLUME | member_extra | reads
    admin_detail = a.get("/volumes/detail?all_tenants=1").json()["volumes"]
    mine = [v for v in admin_detail if v["id"] == volume_id]
    assert set(mine[0]) == BASE_VOLUME | member_extra | admin_extra | ADMIN_READS | reads
    updated = c.put(f"/volumes/{volume_id}", {"volume": {"name": "n"}}).json()["volume"]
    assert set(updated) == BASE_VOLUME | member_extra
    summary = c.get("/volumes").json()["volumes"]
    assert {k for v in summary for k in v} == {"id", "name", "links"}
    assert c.delete(f"/volumes/{volume_id}").status_code == 202


def test_admin_fields_hold_the_hidden_values(cloud: Cloud) -> None:
    c, a = tenant(cloud), at(admin(cloud), "3.70")
    volume_id = c.create()["id"]
    seen = a.show(volume_id)
    assert seen["os-vol-tenant-attr:tenant_id"] == c.project_id
    assert c.show(volume_id)["os-vol-tenant-attr:tenant_id"] == c.project_id
    assert seen["os-vol-host-attr:host"] == "souverain@local#qcow2"
    assert seen["shared_targets"] is False and seen["consumes_quota"] is True
    assert seen["volume_type_id"] == cloud.platform.volume.types.get(c.ctx(), "default").id


def test_image_metadata_only_on_reads_of_volumes_that_have_some(
    cloud: Cloud, tmp_path: Any
) -> None:
    c = at(tenant(cloud), "3.0")
    image_id = upload_image(cloud, c, tmp_path)
    from_image = c.create(imageRef=image_id)
    assert "volume_image_metadata" not in from_image
    assert c.show(from_image["id"])["volume_image_metadata"]["image_id"] == image_id
    blank = c.create()
    assert "volume_image_metadata" not in c.show(blank["id"])


@pytest.mark.parametrize(
    ("version", "extra"),
    [
        ("3.0", set()),
        ("3.14", {"group_snapshot_id"}),
        ("3.41", {"group_snapshot_id", "user_id"}),
        ("3.65", {"group_snapshot_id", "user_id", "consumes_quota"}),
    ],
)
def test_snapshot_fields_per_microversion(cloud: Cloud, version: str, extra: set[str]) -> None:
    c = at(tenant(cloud), version)
    volume_id = c.create()["id"]
    made = c.snapshot(volume_id)
    assert set(made) == BASE_SNAPSHOT | extra  # no links, no extended attributes on create
    one = c.get(f"/snapshots/{made['id']}").json()["snapshot"]
    assert set(one) == BASE_SNAPSHOT | extra | EXTENDED_SNAPSHOT
    assert one["os-extended-snapshot-attributes:project_id"] == c.project_id
    assert one["os-extended-snapshot-attributes:progress"] == "100%"
    detail = c.get("/snapshots/detail").json()["snapshots"]
    assert {k for s in detail for k in s} == BASE_SNAPSHOT | extra | EXTENDED_SNAPSHOT
    summary = c.get("/snapshots").json()["snapshots"]
    assert {k for s in summary for k in s} == BASE_SNAPSHOT  # the summary at every version
    put = c.put(f"/snapshots/{made['id']}", {"snapshot": {"name": "x"}}).json()["snapshot"]
    assert set(put) == BASE_SNAPSHOT | extra


def test_volume_type_fields_for_members_and_admins(cloud: Cloud) -> None:
    c, a = tenant(cloud), admin(cloud)
    body = {"volume_type": {"name": "gold-views", "extra_specs": {"multiattach": "<is> False"}}}
    made = a.post("/types", body).json()["volume_type"]
    assert set(made) == {
        "id",
        "name",
        "is_public",
        "description",
        "extra_specs",
        "os-volume-type-access:is_public",
    }  # fmt: skip  (create: Cinder's types_manage view, no qos_specs_id)
    assert "qos_specs_id" in a.get(f"/types/{made['id']}").json()["volume_type"]
    a.post(f"/types/{made['id']}/extra_specs", {"extra_specs": {"volume_backend_name": "x"}})
    member_view = c.get(f"/types/{made['id']}").json()["volume_type"]
    assert set(member_view) == {
        "id", "name", "is_public", "description", "extra_specs",
        "os-volume-type-access:is_public",
    }  # fmt: skip
    assert member_view["extra_specs"] == {"multiattach": "<is> False"}  # user-visible keys only
    listed = c.get("/types").json()["volume_types"]
    assert all("qos_specs_id" not in t for t in listed)
    updated = a.put(f"/types/{made['id']}", {"volume_type": {"description": "d"}})
    assert set(updated.json()["volume_type"]) == {
        "id", "name", "is_public", "description", "extra_specs",
    }  # fmt: skip


def test_extensions_list_what_is_implemented(cloud: Cloud) -> None:
    found = tenant(cloud).get("/extensions").json()["extensions"]
    names = {e["name"] for e in found}
    assert {"Hosts", "VolumeTypeAccess", "VolumeTransfer", "Qos_specs_manage"} <= names
    assert all(set(e) == {"name", "alias", "updated", "description", "links"} for e in found)
    assert {e["alias"] for e in found} == {alias for _, alias, _, _ in EXTENSIONS}


def test_a_path_with_an_empty_id_is_404_not_the_collection(cloud: Cloud) -> None:
    c = tenant(cloud)
    c.create()
    for method in ("GET", "PUT", "DELETE"):
        response = c.client.request(method, "/volume/v3/volumes/", headers=c._h())
        cinder_error(response, 404)
    assert c.get("/volumes").status_code == 200


def test_a_full_page_links_to_the_next_and_the_last_page_is_empty(cloud: Cloud) -> None:
    c = tenant(cloud)
    ids = {c.create()["id"] for _ in range(2)}
    first = c.get("/volumes?limit=1").json()
    second = c.get(f"/volumes?limit=1&marker={first['volumes'][0]['id']}").json()
    assert "volumes_links" in first and "volumes_links" in second  # both pages are full
    third = c.get(f"/volumes?limit=1&marker={second['volumes'][0]['id']}").json()
    assert third == {"volumes": []}
    assert {first["volumes"][0]["id"], second["volumes"][0]["id"]} == ids


def test_readonly_shows_in_the_metadata_once_set_true_or_false(cloud: Cloud) -> None:
    c = tenant(cloud)
    volume_id = c.create()["id"]
    assert "readonly" not in c.show(volume_id)["metadata"]
    for flag in (True, False):
        assert c.action(volume_id, "os-update_readonly_flag", {"readonly": flag}).status_code == 202
        assert c.show(volume_id)["metadata"]["readonly"] == str(flag)
