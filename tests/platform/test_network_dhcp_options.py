"""A port's extra DHCP options reach that port's guest, and only it: dnsmasq's files are
read, and a real DHCP client (busybox udhcpc) asks for the options and records them."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from souverain.network.dataplane import DataplaneError, DhcpHost

from . import test_dataplane
from .test_dataplane import _SKIP, BUSYBOX, SUBNET, Lab, _mac

pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")
lab = test_dataplane.lab  # the data plane tests' lab: its own prefix, cleaned up in full
RECORD = """#!/bin/sh
case "$1" in
  bound|renew)
    echo "$ip bootfile=$bootfile tftp=$tftp ntp=$ntpsrv" > "$LEASE_OUT"
    ;;
esac
"""
PXE = (("bootfile-name", "pxelinux.0"), ("tftp-server", "10.77.0.9"), ("ntp-server", "10.77.0.8"))


def _options_seen(lab: Lab, namespace: str) -> str | None:
    """What udhcpc was given, asking for the boot file, TFTP and NTP server options."""
    script = lab.run_dir / "record.sh"
    script.write_text(RECORD)
    script.chmod(0o755)
    out = lab.run_dir / f"{namespace}.options"
    argv = ["ip", "netns", "exec", namespace, BUSYBOX, "udhcpc", "-i", "eth0", "-n", "-q",
            "-f", "-t", "3", "-T", "1", "-A", "1", "-s", str(script),
            "-O", "bootfile", "-O", "tftp", "-O", "ntpsrv"]  # fmt: skip
    proc = subprocess.run(
        argv, env={**os.environ, "LEASE_OUT": str(out)}, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    return out.read_text().strip() if proc.returncode == 0 else None


def test_a_ports_options_reach_its_guest_only(lab: Lab) -> None:
    network = str(uuid.uuid4())
    lab.dataplane.ensure_network(network, mtu=1400)
    hosts = [
        DhcpHost(_mac(1), "10.77.0.11", "vm-one", options=PXE),
        DhcpHost(_mac(2), "10.77.0.12", "vm-two"),
    ]
    lab.dataplane.ensure_dhcp(network, SUBNET, hosts)
    directory = lab.dataplane._dhcp_dir(network)
    tag = "port-020000770001"
    assert f"{_mac(1)},set:{tag},10.77.0.11,vm-one" in (directory / "hosts").read_text()
    opts = (directory / "opts").read_text()
    assert f"tag:{tag},option:bootfile-name,pxelinux.0\n" in opts
    assert f"tag:{tag},option:tftp-server,10.77.0.9\n" in opts
    one, two = lab.client(network, _mac(1)), lab.client(network, _mac(2))
    assert _options_seen(lab, one) == "10.77.0.11 bootfile=pxelinux.0 tftp=10.77.0.9 ntp=10.77.0.8"
    assert _options_seen(lab, two) == "10.77.0.12 bootfile= tftp= ntp="

    # a change reaches dnsmasq (restarted: it dies on SIGHUP with tagged hosts); options
    # removed are no longer given, and the other guest keeps its lease
    moved = [DhcpHost(_mac(1), "10.77.0.11", "vm-one", options=(("bootfile-name", "ipxe.efi"),))]
    lab.dataplane.ensure_dhcp(network, SUBNET, [*moved, hosts[1]])
    assert _options_seen(lab, one) == "10.77.0.11 bootfile=ipxe.efi tftp= ntp="
    assert _options_seen(lab, two) == "10.77.0.12 bootfile= tftp= ntp="
    assert len(lab.dataplane.inventory()["dnsmasq"]) == 1, "one dnsmasq, alive"


def test_an_option_dnsmasq_would_choke_on_never_reaches_its_files(lab: Lab) -> None:
    network = str(uuid.uuid4())
    lab.dataplane.ensure_network(network)
    good = [DhcpHost(_mac(1), "10.77.0.11", "vm-one", options=PXE)]
    lab.dataplane.ensure_dhcp(network, SUBNET, good)
    before = (lab.dataplane._dhcp_dir(network) / "opts").read_text()
    for option in (("bootfile-name", "a\ndhcp-range=1"), ("no-such-option", "x"),
                   ("ntp-server", "not-an-address")):  # fmt: skip
        bad = [DhcpHost(_mac(1), "10.77.0.11", "vm-one", options=(option,))]
        with pytest.raises(DataplaneError):
            lab.dataplane.ensure_dhcp(network, SUBNET, bad)
    assert (lab.dataplane._dhcp_dir(network) / "opts").read_text() == before
