"""The overlay settings: today's single host by default, VXLAN's MTU when asked, bad values
refused at start with a message naming the setting."""

from __future__ import annotations

from typing import Any

import pytest

from souverain.config import ConfigError, NetworkSettings, load_settings


def _network(**network: Any) -> NetworkSettings:
    return load_settings(environ={}, overrides={"network": network}).network


def test_default_is_one_host_at_the_plain_mtu() -> None:
    network = load_settings(environ={}).network
    assert network.overlay == "none" and network.tenant_mtu == 1500
    assert (network.segment_min, network.segment_max) == (1, 65535)


def test_vxlan_leaves_fifty_bytes_of_the_underlay() -> None:
    assert _network(overlay="vxlan").tenant_mtu == 1450
    jumbo = _network(overlay="vxlan", underlay_mtu=9000)
    assert jumbo.tenant_mtu == 8950
    assert _network(underlay_mtu=9000, mtu=1400).tenant_mtu == 1400


def test_vxlan_from_the_environment() -> None:
    env = {"SOUVERAIN_NETWORK__OVERLAY": "vxlan", "SOUVERAIN_NETWORK__UNDERLAY_MTU": "1600"}
    settings = load_settings(environ=env)
    assert settings.network.overlay == "vxlan" and settings.network.tenant_mtu == 1550


@pytest.mark.parametrize(
    ("network", "named"),
    [
        ({"overlay": "geneve"}, "overlay"),
        ({"underlay_mtu": 600}, "underlay_mtu"),
        ({"segment_max": 70000}, "segment_max"),
        ({"segment_min": 0}, "segment_min"),
        ({"segment_min": 10, "segment_max": 9}, "segment_min"),
    ],
)
def test_bad_overlay_settings_stop_start_naming_them(
    network: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ={}, overrides={"network": network})
