"""Port extended attributes: extra DHCP options (extra_dhcp_opt) as Neutron merges them,
checked so dnsmasq never sees an option it would refuse, and the host binding (binding:*)
shown to admins only."""

from __future__ import annotations

import pytest

from . import neutron_callers
from .support import Cloud
from .test_networks import Neutron, neutron_error

admin, me = neutron_callers.admin, neutron_callers.me  # the shared fixtures

BINDING_FOR_ADMINS = {
    "binding:host_id",
    "binding:vif_type",
    "binding:vif_details",
    "binding:profile",
}


def test_extra_dhcp_opts_are_kept_merged_and_removed(me: Neutron) -> None:
    aliases = {e["alias"] for e in me.get("/extensions").json()["extensions"]}
    assert "extra_dhcp_opt" in aliases
    net, _ = me.network_with_subnet("10.0.0.0/24")
    opts = [
        {"opt_name": "bootfile-name", "opt_value": "pxelinux.0"},
        {"opt_name": "tftp-server", "opt_value": "10.0.0.9", "ip_version": 4},
    ]
    port = me.create("port", network_id=net, extra_dhcp_opts=opts)
    assert port["extra_dhcp_opts"] == [
        {"opt_name": "bootfile-name", "opt_value": "pxelinux.0", "ip_version": 4},
        {"opt_name": "tftp-server", "opt_value": "10.0.0.9", "ip_version": 4},
    ]
    change = [
        {"opt_name": "bootfile-name", "opt_value": "ipxe.efi"},
        {"opt_name": "tftp-server", "opt_value": None},
        {"opt_name": "42", "opt_value": "10.0.0.8, 10.0.0.7"},
    ]
    updated = me.put(f"/ports/{port['id']}", {"port": {"extra_dhcp_opts": change}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["port"]["extra_dhcp_opts"] == [
        {"opt_name": "bootfile-name", "opt_value": "ipxe.efi", "ip_version": 4},
        {"opt_name": "42", "opt_value": "10.0.0.8,10.0.0.7", "ip_version": 4},
    ]
    kept = me.put(f"/ports/{port['id']}", {"port": {"name": "renamed"}}).json()["port"]
    assert len(kept["extra_dhcp_opts"]) == 2


@pytest.mark.parametrize(
    "option",
    [
        {"opt_name": "no-such-option", "opt_value": "x"},
        {"opt_name": "bootfile-name", "opt_value": "a\ndhcp-range=10.0.0.0,static"},
        {"opt_name": "bootfile-name", "opt_value": "a,b"},
        {"opt_name": "ntp-server", "opt_value": "ntp.example"},
        {"opt_name": "server-ip-address", "opt_value": "10.0.0.1,10.0.0.2"},
        {"opt_name": "mtu", "opt_value": "20"},
        {"opt_name": "bootfile-name", "opt_value": "x", "ip_version": 5},
        {"opt_name": "bootfile-name", "opt_value": "x", "extra": 1},
        {"opt_value": "x"},
    ],
)
def test_an_option_dnsmasq_could_not_take_is_refused_and_makes_nothing(
    me: Neutron, option: dict[str, object]
) -> None:
    net, _ = me.network_with_subnet("10.0.0.0/24")
    response = me.post("/ports", {"port": {"network_id": net, "extra_dhcp_opts": [option]}})
    neutron_error(response, 400, "InvalidInput")
    assert me.get("/ports", params={"network_id": net}).json()["ports"] == []


def test_too_many_or_repeated_options_are_refused(me: Neutron) -> None:
    net, _ = me.network_with_subnet("10.0.0.0/24")
    twice = [{"opt_name": "bootfile-name", "opt_value": "a"}] * 2
    neutron_error(me.post("/ports", {"port": {"network_id": net, "extra_dhcp_opts": twice}}),
                  400, "InvalidInput")  # fmt: skip
    many = [{"opt_name": "bootfile-name", "opt_value": "a"}] * 17
    neutron_error(me.post("/ports", {"port": {"network_id": net, "extra_dhcp_opts": many}}),
                  400, "InvalidInput")  # fmt: skip


def test_the_host_binding_is_for_admins_only(me: Neutron, admin: Neutron) -> None:
    net, _ = me.network_with_subnet("10.0.0.0/24")
    port = me.create("port", network_id=net)
    assert not BINDING_FOR_ADMINS & set(port) and port["binding:vnic_type"] == "normal"
    listed = me.get("/ports", params={"network_id": net}).json()["ports"]
    assert not BINDING_FOR_ADMINS & set(listed[0])
    shown = admin.get(f"/ports/{port['id']}").json()["port"]
    assert set(shown) >= BINDING_FOR_ADMINS and shown["binding:vif_type"] == "unbound"


def test_a_reader_and_another_project_cannot_set_options(me: Neutron, shared_cloud: Cloud) -> None:
    net, _ = me.network_with_subnet("10.0.0.0/24")
    port = me.create("port", network_id=net)
    body = {"port": {"extra_dhcp_opts": [{"opt_name": "bootfile-name", "opt_value": "x"}]}}
    reader = shared_cloud.member(role="reader", project_id=me.project_id)
    assert (
        Neutron(shared_cloud, reader.token, me.project_id)
        .put(f"/ports/{port['id']}", body)
        .status_code
        == 403
    )
    stranger = shared_cloud.member()
    other = Neutron(shared_cloud, stranger.token, stranger.project_id)
    neutron_error(other.put(f"/ports/{port['id']}", body), 404, "PortNotFound")
    assert me.get(f"/ports/{port['id']}").json()["port"]["extra_dhcp_opts"] == []
