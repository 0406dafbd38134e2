"""The subnet pool quota through the openstack CLI: `openstack quota set --subnetpools`,
`quota show --network`, and the refusal a customer sees past the limit."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Cloud

pytestmark = pytest.mark.e2e


def test_openstack_quota_set_subnetpools_limits_a_project(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("poolquota")
    cloud.cli_ok("quota", "set", "--subnetpools", "1", tenant.project_id)
    shown = cloud.cli_json("quota", "show", "--network", tenant.project_id)
    limits = {row["Resource"]: row["Limit"] for row in shown}
    assert limits["subnet_pools"] == 1
    as_tenant = tenant.cloud_name
    cloud.cli_ok("subnet", "pool", "create", "--pool-prefix", "10.70.0.0/16", "p1", cloud=as_tenant)
    refused = cloud.cli_fails(
        "subnet", "pool", "create", "--pool-prefix", "10.71.0.0/16", "p2", cloud=as_tenant
    )
    assert "Quota exceeded" in refused and "subnetpool" in refused
    pools = cloud.cli_json("subnet", "pool", "list", cloud=as_tenant)
    assert [p["Name"] for p in pools] == ["p1"]
    used = cloud.cli_json("quota", "show", "--usage", "--network", tenant.project_id)
    row = next(r for r in used if r["Resource"] == "subnet_pools")
    assert row["In Use"] == 1
