"""The tiny guest image boots under bare QEMU (TCG) and does what the cloud relies on.

One guest with a config drive and two NICs (one on QEMU's user network with DHCP, one alone on
a hub so only network_data.json can configure it) is shared by the tests that only read its
console; the reset and power-button tests act on it last, in file order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.guest_support import Guest, Nic, boot, write_config_drive

UUID = "4a1b6c1e-8f0e-4d43-9a61-0c2f6f1d2e3a"
HOSTNAME = "tiny-one"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq7 alice@laptop"
DISK_SIZE = 1024**3
DHCP_MAC = "52:54:00:12:34:56"
STATIC_MAC = "fa:16:3e:00:00:02"

USER_DATA = """\
#!/bin/sh
echo "user-data: hello from $(hostname)"
echo "user-data: key $(cat /root/.ssh/authorized_keys)"
echo "user-data: route $(ip route show default)"
echo "user-data: resolv $(grep nameserver /etc/resolv.conf)"
if [ -f /mnt/root-disk/persist.txt ]; then
    echo "user-data: persisted $(cat /mnt/root-disk/persist.txt)"
fi
echo "written by the first boot" > /mnt/root-disk/persist.txt
exit 3
"""

META_DATA = {
    "uuid": UUID,
    "name": "tiny one",
    "hostname": HOSTNAME,
    "public_keys": {"alice": SSH_KEY},
    "meta": {"name": "not-the-hostname", "hostname": "not-this-either"},
}

NETWORK_DATA = {
    "links": [
        {"id": "tap-dhcp", "type": "phy", "ethernet_mac_address": DHCP_MAC, "mtu": 1500},
        {"id": "tap-static", "type": "phy", "ethernet_mac_address": STATIC_MAC, "mtu": 1500},
    ],
    "networks": [
        {"id": "network0", "type": "ipv4_dhcp", "link": "tap-dhcp"},
        {
            "id": "network1",
            "type": "ipv4",
            "link": "tap-static",
            "ip_address": "192.168.50.7",
            "netmask": "255.255.255.0",
            "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.168.50.1"}],
        },
    ],
    "services": [{"type": "dns", "address": "192.168.50.53"}],
}


@pytest.fixture(scope="module")
def guest(tiny_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    drive = write_config_drive(
        tmp_path_factory.mktemp("config") / "config.iso",
        meta_data=META_DATA,
        user_data=USER_DATA,
        network_data=NETWORK_DATA,
    )
    nics = (Nic(DHCP_MAC), Nic(STATIC_MAC, dhcp=False))
    with boot(tiny_image, disk_size=str(DISK_SIZE), config_drive=drive, nics=nics) as running:
        running.wait_for("souverain-guest: ready", timeout=120)
        yield running


def test_guest_boots_and_reports_ready(guest: Guest) -> None:
    markers = guest.markers()
    assert markers[0] == "booted"
    assert markers[-1] == "ready"


def test_hostname_and_uuid_come_from_meta_data(guest: Guest) -> None:
    markers = guest.markers()
    assert f"hostname={HOSTNAME}" in markers
    assert f"uuid={UUID}" in markers
    assert f"user-data: hello from {HOSTNAME}" in guest.serial()


def test_public_keys_land_in_root_authorized_keys(guest: Guest) -> None:
    assert f"user-data: key {SSH_KEY}" in guest.serial()


def test_nic_with_dhcp_gets_its_lease(guest: Guest) -> None:
    # restrict=on: QEMU's DHCP then offers neither router nor DNS; see the test below.
    assert "ip=10.0.2.15/24 on eth0" in guest.markers()


def test_nic_without_dhcp_takes_the_address_network_data_writes(guest: Guest) -> None:
    assert "ip=192.168.50.7/24 on eth1" in guest.markers()
    console = guest.serial()
    assert "user-data: route default via 192.168.50.1 dev eth1" in console
    assert "user-data: resolv nameserver 192.168.50.53" in console


def test_user_data_script_runs_with_output_on_console(guest: Guest) -> None:
    markers = guest.markers()
    assert "user-data exit=3" in markers
    assert markers.index("user-data exit=3") < markers.index("ready")


def test_disk_marker_shows_the_overlay_size(guest: Guest) -> None:
    assert f"disk=/dev/vda size={DISK_SIZE}" in guest.markers()


def test_file_written_by_user_data_survives_a_hard_reset(guest: Guest) -> None:
    assert "user-data: persisted" not in guest.serial()
    first_boot_end = len(guest.serial())
    guest.qmp("system_reset")
    guest.wait_for("souverain-guest: ready", timeout=120, start=first_boot_end)
    second_boot = guest.serial()[first_boot_end:]
    assert "user-data: persisted written by the first boot" in second_boot
    assert guest.markers(first_boot_end)[0] == "booted"


def test_acpi_power_button_powers_the_guest_off(guest: Guest) -> None:
    guest.qmp("system_powerdown")
    assert guest.wait_exit(timeout=60) == 0
    assert "powering off" in guest.markers()


def test_guest_without_config_drive_still_boots(tiny_image: Path) -> None:
    with boot(tiny_image) as bare:
        bare.wait_for("souverain-guest: ready", timeout=120)
        markers = bare.markers()
    assert markers[0] == "booted"
    assert "no config drive" in markers
    assert "no user-data" in markers
    assert "ip=10.0.2.15/24 on eth0" in markers


def test_dhcp_router_and_dns_become_default_route_and_resolver(
    tiny_image: Path, tmp_path: Path
) -> None:
    script = '#!/bin/sh\necho "route: $(ip route show default)"\ncat /etc/resolv.conf\n'
    drive = write_config_drive(
        tmp_path / "config.iso", meta_data={"uuid": UUID, "hostname": "open"}, user_data=script
    )
    nics = (Nic(DHCP_MAC, restrict=False),)
    with boot(tiny_image, config_drive=drive, nics=nics) as open_guest:
        open_guest.wait_for("souverain-guest: ready", timeout=120)
        console = open_guest.serial()
    assert "route: default via 10.0.2.2 dev eth0" in console
    assert "nameserver 10.0.2.3" in console


def test_cloud_config_user_data_is_skipped(tiny_image: Path, tmp_path: Path) -> None:
    drive = write_config_drive(
        tmp_path / "config.iso",
        meta_data={"uuid": UUID, "hostname": "cloudy"},
        user_data="#cloud-config\nruncmd: [echo hi]\n",
    )
    with boot(tiny_image, config_drive=drive) as cloudy:
        cloudy.wait_for("souverain-guest: ready", timeout=120)
        markers = cloudy.markers()
    assert "user-data skipped (not a script)" in markers
    assert "hostname=cloudy" in markers


def test_reboot_from_inside_boots_the_guest_again(tiny_image: Path, tmp_path: Path) -> None:
    script = (
        "#!/bin/sh\n"
        "if [ ! -f /mnt/root-disk/rebooted ]; then\n"
        "    touch /mnt/root-disk/rebooted; echo 'rebooting from inside'; reboot; sleep 60\n"
        "fi\n"
        "echo 'second boot'\n"
    )
    drive = write_config_drive(
        tmp_path / "config.iso", meta_data={"uuid": UUID, "hostname": "again"}, user_data=script
    )
    with boot(tiny_image, config_drive=drive) as again:
        again.wait_for("second boot", timeout=120)  # two boots under TCG, on a loaded host
        again.wait_for("souverain-guest: ready", timeout=30)
        markers = again.markers()
    assert markers.count("booted") == 2
    assert markers.count("ready") == 1
