"""Nova's wire format without HTTP: request bodies (`schemas`), response shapes (`views`),
and the routes, each naming a policy action the table knows."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any, cast

import pytest

from souverain.common import policy
from souverain.common.errors import BadRequest
from souverain.compute import api, schemas, views
from souverain.compute.service import ComputeService
from souverain.openstack.routing import EdgeRoute, unnamed_routes

BASE = "http://cloud/compute"
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _server(**overrides: Any) -> dict[str, Any]:
    server: dict[str, Any] = {
        "id": "a9f1a2b8-0c1d-4e5f-8a9b-0c1d2e3f4a5b",
        "name": "web",
        "status": "ACTIVE",
        "project_id": "p" * 32,
        "user_id": "u" * 32,
        "metadata": {},
        "host": "node-1",
        "image_id": "img",
        "flavor": {"id": "m1", "name": "m1", "vcpus": 1, "ram": 512, "disk": 1},
        "created_at": NOW,
        "updated_at": NOW,
        "addresses": {},
        "availability_zone": "nova",
        "config_drive": True,
        "key_name": None,
        "launched_at": NOW,
        "terminated_at": None,
        "task_state": None,
        "vm_state": "active",
        "power_state": 1,
        "fault": None,
        "reservation_id": "r-1",
        "launch_index": 0,
        "user_data": None,
        "hostname": "web",
        "locked": False,
        "description": None,
        "tags": [],
    }
    server.update(overrides)
    return server


def test_a_server_create_without_a_flavor_is_refused_in_novas_words() -> None:
    with pytest.raises(BadRequest, match="flavorRef: it is required"):
        schemas.server_request({"name": "web", "imageRef": "img", "networks": "none"}, (2, 1))


def test_networks_are_required_from_2_37_and_auto_before() -> None:
    body = {"name": "web", "imageRef": "img", "flavorRef": "m1"}
    assert schemas.server_request(body, (2, 36)).networks == "auto"
    with pytest.raises(BadRequest, match=r"it is required from 2\.37"):
        schemas.server_request(body, (2, 37))


def test_a_bad_name_is_reported_before_any_other_field() -> None:
    with pytest.raises(BadRequest, match="field/attribute name"):
        schemas.server_request({"name": " web", "flavorRef": 7}, (2, 1))


def test_an_image_link_stands_for_its_id() -> None:
    body = {"name": "w", "imageRef": "http://x/images/img-1/", "flavorRef": "m1"}
    assert schemas.server_request(body, (2, 1)).image_ref == "img-1"


@pytest.mark.parametrize("length", ["x", -2])
def test_console_length_must_be_an_integer_from_minus_one(length: Any) -> None:
    with pytest.raises(BadRequest, match="field/attribute length"):
        schemas.console_length({"length": length})


def test_console_length_minus_one_means_everything() -> None:
    assert schemas.console_length({"length": -1}) is None
    assert schemas.console_length({"length": "5"}) == 5


def test_a_quota_change_names_only_known_resources() -> None:
    assert schemas.quota_changes({"quota_set": {"cores": "4", "force": "True"}}) == (
        {"cores": 4},
        True,
    )
    with pytest.raises(BadRequest, match="'bogus' was unexpected"):
        schemas.quota_changes({"quota_set": {"bogus": 1}})


def test_the_flavor_is_a_link_before_2_47_and_embedded_from_it() -> None:
    server = _server()
    assert set(views.server_body(BASE, server, (2, 46), False)["flavor"]) == {"id", "links"}
    embedded = views.server_body(BASE, server, (2, 47), False)["flavor"]
    assert embedded["original_name"] == "m1"
    assert embedded["vcpus"] == 1


def test_only_an_admin_sees_where_a_server_runs() -> None:
    server = _server()
    assert "OS-EXT-SRV-ATTR:host" not in views.server_body(BASE, server, (2, 90), False)
    admin = views.server_body(BASE, server, (2, 90), True)
    assert admin["OS-EXT-SRV-ATTR:host"] == "node-1"
    assert admin["host_status"] == "UP"


def test_later_fields_follow_in_novas_order() -> None:
    body = views.server_body(BASE, _server(), (2, 100), True)
    keys = list(body)
    assert keys.index("locked") < keys.index("host_status") < keys.index("description")
    assert keys[-2:] == ["pinned_availability_zone", "scheduler_hints"]  # 2.96, then 2.100


def test_a_volume_attachment_has_an_attachment_id_from_2_89() -> None:
    attachment = {"volume_id": "v", "server_id": "s", "device": "/dev/vdc", "attachment_id": "a"}
    assert views.attachment_body(attachment, (2, 88))["id"] == "v"
    later = views.attachment_body(attachment, (2, 89))
    assert "id" not in later
    assert later["attachment_id"] == "a"


def test_every_compute_route_names_an_action_in_the_compute_rules() -> None:
    service = cast(ComputeService, SimpleNamespace(identity=object()))
    routes = api.routes(service)
    assert unnamed_routes(routes) == []
    for route in routes:
        assert isinstance(route, EdgeRoute)
        for action in route.actions.values():
            if route.public:
                assert policy.PUBLIC_RULES[action] is policy.Rule.PUBLIC
            else:
                assert action in policy.COMPUTE_RULES, action
