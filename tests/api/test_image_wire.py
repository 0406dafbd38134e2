"""Glance's wire details real clients depend on: both JSON-patch dialects, empty ids."""

from __future__ import annotations

import json
from typing import Any

from .support import Cloud
from .test_images import Glance, glance_error, tenant

PATCH_V20 = {"Content-Type": "application/openstack-images-v2.0-json-patch"}
PATCH_V21 = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


def _patch(g: Glance, image_id: str, ops: Any, headers: dict[str, str]) -> Any:
    return g.patch(f"/v2/images/{image_id}", ops, headers)


def test_v20_patch_takes_the_draft4_dialect(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create(name="before", color="red")
    ops = [
        {"replace": "/name", "value": "after"},
        {"add": "/os_distro", "value": "debian"},
        {"remove": "/color"},
    ]
    response = _patch(g, image["id"], ops, PATCH_V20)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "after" and body["os_distro"] == "debian" and "color" not in body


def test_v21_patch_takes_rfc6902_operations(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create(name="before")
    ops = [{"op": "replace", "path": "/name", "value": "after"}]
    response = _patch(g, image["id"], ops, PATCH_V21)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "after"


def test_a_dialect_sent_under_the_other_media_type_is_400_and_changes_nothing(
    shared_cloud: Cloud,
) -> None:
    g = tenant(shared_cloud)
    image = g.create(name="kept")
    rfc = [{"op": "replace", "path": "/name", "value": "lost"}]
    draft4 = [{"replace": "/name", "value": "lost"}]
    assert "exactly one member" in glance_error(_patch(g, image["id"], rfc, PATCH_V20), 400)
    assert "op add, replace or remove" in glance_error(
        _patch(g, image["id"], draft4, PATCH_V21), 400
    )
    two = [{"replace": "/name", "add": "/name", "value": "x"}]
    glance_error(_patch(g, image["id"], two, PATCH_V20), 400)
    glance_error(_patch(g, image["id"], ["replace"], PATCH_V20), 400)
    glance_error(_patch(g, image["id"], [{"remove": 7}], PATCH_V20), 400)
    assert g.get(f"/v2/images/{image['id']}").json()["name"] == "kept"


def test_empty_image_id_is_404_for_get_and_delete(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create(name="stays")
    glance_error(g.get("/v2/images/"), 404)
    glance_error(g.delete("/v2/images/"), 404)
    assert g.get(f"/v2/images/{image['id']}").status_code == 200
    listed = g.get("/v2/images").json()["images"]
    assert image["id"] in [i["id"] for i in listed]


def test_patch_body_that_is_not_json_is_400(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create()
    response = g.client.patch(
        f"/image/v2/images/{image['id']}",
        content=b"{not json",
        headers={"X-Auth-Token": g.token, **PATCH_V20},
    )
    glance_error(response, 400)
    assert json.loads(g.get(f"/v2/images/{image['id']}").text)["status"] == "queued"


def test_list_filters_on_exact_size_and_checksum(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    small, large = g.create(name="small"), g.create(name="large")
    assert g.upload(small["id"], b"a" * 1500).status_code == 204
    assert g.upload(large["id"], b"b" * 3000).status_code == 204
    by_size = g.get("/v2/images", params={"size": "1500"}).json()["images"]
    assert [i["id"] for i in by_size] == [small["id"]]
    checksum = g.get(f"/v2/images/{large['id']}").json()["checksum"]
    by_sum = g.get("/v2/images", params={"checksum": checksum}).json()["images"]
    assert [i["id"] for i in by_sum] == [large["id"]]
    glance_error(g.get("/v2/images", params={"size": "big"}), 400)
