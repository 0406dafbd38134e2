"""Metering labels and label rules (Neutron's metering extension): an admin's API, with
Neutron's shapes, checks and messages; projects neither see nor touch them."""

from __future__ import annotations

from typing import Any

from . import neutron_callers
from .support import Cloud
from .test_networks import Neutron, neutron_error

admin, me = neutron_callers.admin, neutron_callers.me  # the shared fixtures

LABELS, RULES = "/metering/metering-labels", "/metering/metering-label-rules"


def _label(admin: Neutron, **fields: Any) -> dict[str, Any]:
    made = admin.post(LABELS, {"metering_label": fields})
    assert made.status_code == 201, made.text
    label: dict[str, Any] = made.json()["metering_label"]
    return label


def test_label_and_rule_lifecycle_in_neutrons_shape(admin: Neutron) -> None:
    aliases = {e["alias"] for e in admin.get("/extensions").json()["extensions"]}
    assert {"metering", "metering_source_and_destination_fields"} <= aliases
    label = _label(admin, name="web", description="to the web")
    assert set(label) == {"id", "name", "description", "shared", "tenant_id", "project_id"}
    assert label["shared"] is False and label["project_id"] == admin.project_id
    body = {"metering_label_id": label["id"], "remote_ip_prefix": "10.0.0.0/8"}
    rule = admin.post(RULES, {"metering_label_rule": body})
    assert rule.status_code == 201, rule.text
    shown = rule.json()["metering_label_rule"]
    assert shown == {
        "id": shown["id"],
        "metering_label_id": label["id"],
        "direction": "ingress",
        "excluded": False,
        "remote_ip_prefix": "10.0.0.0/8",
        "source_ip_prefix": None,
        "destination_ip_prefix": None,
    }
    assert admin.get(f"{RULES}/{shown['id']}").json()["metering_label_rule"] == shown
    assert shown["id"] in {r["id"] for r in admin.get(RULES).json()["metering_label_rules"]}
    assert admin.get(f"{LABELS}/{label['id']}").json()["metering_label"] == label
    put = admin.put(f"{LABELS}/{label['id']}", {"metering_label": {"name": "x"}})
    neutron_error(put, 405, "HTTPMethodNotAllowed")
    assert admin.delete(f"{LABELS}/{label['id']}").status_code == 204
    neutron_error(admin.get(f"{RULES}/{shown['id']}"), 404, "MeteringLabelRuleNotFound")
    neutron_error(admin.get(f"{LABELS}/{label['id']}"), 404, "MeteringLabelNotFound")


def test_rules_are_checked(admin: Neutron) -> None:
    label = _label(admin, name="checked")

    def bad(body: dict[str, Any], status: int, kind: str) -> str:
        response = admin.post(RULES, {"metering_label_rule": body})
        return neutron_error(response, status, kind)

    lid = label["id"]
    bad({"remote_ip_prefix": "10.0.0.0/8"}, 400, "HTTPBadRequest")
    bad({"metering_label_id": "nope", "remote_ip_prefix": "10.0.0.0/8"}, 404,
        "MeteringLabelNotFound")  # fmt: skip
    assert "at least one" in bad({"metering_label_id": lid}, 400, "HTTPBadRequest")
    both = {"metering_label_id": lid, "remote_ip_prefix": "10.0.0.0/8",
            "source_ip_prefix": "10.1.0.0/16"}  # fmt: skip
    assert "in conjunction" in bad(both, 400, "HTTPBadRequest")
    bad({"metering_label_id": lid, "remote_ip_prefix": "nope"}, 400, "InvalidInput")
    bad({"metering_label_id": lid, "remote_ip_prefix": "fd00::/8"}, 400, "InvalidInput")
    bad({"metering_label_id": lid, "remote_ip_prefix": "10.0.0.0/8", "direction": "up"}, 400,
        "InvalidInput")  # fmt: skip
    ok = {"metering_label_id": lid, "remote_ip_prefix": "10.0.0.0/8", "direction": "egress"}
    assert admin.post(RULES, {"metering_label_rule": ok}).status_code == 201
    overlap = {**ok, "remote_ip_prefix": "10.2.0.0/16"}
    assert "overlaps" in bad(overlap, 409, "MeteringLabelRuleOverlaps")
    other_way = {**overlap, "direction": "ingress"}
    assert admin.post(RULES, {"metering_label_rule": other_way}).status_code == 201
    admin.delete(f"{LABELS}/{lid}")


def test_projects_neither_see_nor_touch_metering(
    me: Neutron, admin: Neutron, shared_cloud: Cloud
) -> None:
    label = _label(admin, name="secret", shared=True)
    try:
        for path in (LABELS, f"{LABELS}/{label['id']}", RULES):
            assert me.get(path).status_code == 403, path
        made = me.post(LABELS, {"metering_label": {"name": "mine"}})
        assert made.status_code == 403
        assert me.delete(f"{LABELS}/{label['id']}").status_code == 403
        body = {"metering_label_id": label["id"], "remote_ip_prefix": "0.0.0.0/0"}
        assert me.post(RULES, {"metering_label_rule": body}).status_code == 403
        reader = shared_cloud.member(role="reader")
        as_reader = Neutron(shared_cloud, reader.token, reader.project_id)
        assert as_reader.get(LABELS).status_code == 403
    finally:
        assert admin.delete(f"{LABELS}/{label['id']}").status_code == 204
