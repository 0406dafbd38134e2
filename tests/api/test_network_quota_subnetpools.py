"""Neutron's `subnetpool` quota: listed with the others, counted per project, enforced at
create with Neutron's 409 OverQuota, changed only by the admin, and isolated per project."""

from __future__ import annotations

from typing import Any

from . import neutron_callers
from .test_networks import Neutron, neutron_error

admin, me, other = (
    neutron_callers.admin,
    neutron_callers.me,
    neutron_callers.other,
)  # the shared fixtures


def _pool(caller: Neutron, prefix: str) -> Any:
    return caller.post("/subnetpools", {"subnetpool": {"name": "p", "prefixes": [prefix]}})


def test_subnetpool_is_listed_with_the_other_quotas_unlimited_by_default(me: Neutron) -> None:
    quota = me.get(f"/quotas/{me.project_id}").json()["quota"]
    assert quota["subnetpool"] == -1
    default = me.get(f"/quotas/{me.project_id}/default").json()["quota"]
    assert default["subnetpool"] == -1
    details = me.get(f"/quotas/{me.project_id}/details.json").json()["quota"]
    assert details["subnetpool"] == {"limit": -1, "used": 0, "reserved": 0}


def test_subnet_pools_are_counted_and_refused_past_the_limit(
    me: Neutron, other: Neutron, admin: Neutron
) -> None:
    changed = admin.put(f"/quotas/{me.project_id}", {"quota": {"subnetpool": 2}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["quota"]["subnetpool"] == 2
    made = [_pool(me, f"10.{60 + i}.0.0/16") for i in range(2)]
    assert [r.status_code for r in made] == [201, 201]
    refused = _pool(me, "10.62.0.0/16")
    message = neutron_error(refused, 409, "OverQuota")
    assert "subnetpool" in message
    details = me.get(f"/quotas/{me.project_id}/details").json()["quota"]["subnetpool"]
    assert details == {"limit": 2, "used": 2, "reserved": 0}
    # the refusal left nothing behind; another project is not counted against mine
    assert len([p for p in me.get("/subnetpools").json()["subnetpools"]
                if p["project_id"] == me.project_id]) == 2  # fmt: skip
    assert _pool(other, "10.63.0.0/16").status_code == 201
    first = made[0].json()["subnetpool"]["id"]
    assert me.delete(f"/subnetpools/{first}").status_code == 204
    assert _pool(me, "10.62.0.0/16").status_code == 201


def test_only_the_admin_sets_the_subnetpool_quota(me: Neutron, admin: Neutron) -> None:
    refused = me.put(f"/quotas/{me.project_id}", {"quota": {"subnetpool": 100}})
    assert refused.status_code == 403, refused.text
    assert me.get(f"/quotas/{me.project_id}").json()["quota"]["subnetpool"] == -1
    bad = admin.put(f"/quotas/{me.project_id}", {"quota": {"subnetpool": -2}})
    neutron_error(bad, 400, "InvalidInput")
    zero = admin.put(f"/quotas/{me.project_id}", {"quota": {"subnetpool": 0}})
    assert zero.status_code == 200, zero.text
    neutron_error(_pool(me, "10.64.0.0/16"), 409, "OverQuota")
    assert admin.delete(f"/quotas/{me.project_id}").status_code == 204
    assert me.get(f"/quotas/{me.project_id}").json()["quota"]["subnetpool"] == -1


def test_another_project_cannot_read_my_subnetpool_usage(me: Neutron, other: Neutron) -> None:
    assert _pool(me, "10.65.0.0/16").status_code == 201
    peek = other.get(f"/quotas/{me.project_id}/details")
    assert peek.status_code in (403, 404), peek.text
    assert "subnetpool" not in peek.text or "disallowed" in peek.text
