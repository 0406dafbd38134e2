"""A cloud with overlay vxlan, as its customers and operator see it through the openstack
CLI and openstacksdk: tenant networks at the segment's MTU, the VNI shown to the admin only."""

from __future__ import annotations

from tests.e2e.conftest import CloudFactory, unique


def test_overlay_cloud_gives_1450_and_shows_the_vni_to_the_admin_only(
    start_cloud: CloudFactory,
) -> None:
    cloud = start_cloud(
        "overlay", SOUVERAIN_NETWORK__OVERLAY="vxlan", SOUVERAIN_NETWORK__SEGMENT_MIN="7000"
    )
    tenant = cloud.make_tenant("overlay")
    name = unique("vx-net")
    net = cloud.cli_json("network", "create", name, cloud=tenant.cloud_name)
    assert net["mtu"] == 1450, net
    assert net.get("provider:network_type") is None, net  # a customer sees no provider fields
    err = cloud.cli_fails(
        "network", "create", "--mtu", "1500", unique("big"), cloud=tenant.cloud_name
    )
    assert "1450" in err

    shown = cloud.cli_json("network", "show", net["id"])  # the admin
    assert shown["provider:network_type"] == "vxlan", shown
    assert shown["provider:segmentation_id"] >= 7000, shown

    owner = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    try:
        mine = owner.network.get_network(net["id"])
        assert mine.mtu == 1450 and mine.provider_network_type is None
    finally:
        owner.close()
    as_admin = cloud.admin.network.get_network(net["id"])
    assert as_admin.provider_network_type == "vxlan"
    assert as_admin.provider_segmentation_id == shown["provider:segmentation_id"]
    cloud.cli_ok("network", "delete", name, cloud=tenant.cloud_name)
    cloud.stop_and_check()
