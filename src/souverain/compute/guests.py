"""What a guest is made of on this host: its disks, its config drive, its NICs (the
network's ports wired into taps), and letting all of it go when the server goes.

Here the database meets the driver; no state machine rule is decided here.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select

from souverain.common.errors import BadRequest
from souverain.compute import console_tails
from souverain.compute.consoles import revoke_tokens
from souverain.compute.core import SYSTEM, ComputeCore
from souverain.compute.models import Server
from souverain.compute.qemu import Disk, DriverError, GuestSpec, Nic, PowerState
from souverain.image.service import BootImage

log = logging.getLogger("souverain.compute")


def nic_id(port_id: str) -> str:
    return f"nic-{port_id}"


def disk_id(volume_id: str) -> str:
    return f"vol-{volume_id}"


def disk_of(attachment: dict[str, Any]) -> Disk:
    return Disk(
        id=disk_id(attachment["volume_id"]),
        path=attachment.get("path"),
        format=attachment.get("format", "qcow2"),
        readonly=bool(attachment.get("readonly")),
        serial=str(attachment["volume_id"])[:20],
        rbd=attachment.get("rbd"),
        ceph=attachment.get("ceph"),
        passphrase=attachment.get("passphrase"),
    )


def copy_file(src: Path, dest: Path) -> None:
    """A durable copy: the disk kept for a resize revert must survive a crash."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)


# letters and digits a person can read back without confusing them (no 0/O, 1/l/I)
PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105
PASSWORD_LENGTH = 16


def new_admin_password() -> str:
    """A strong random administrator password for a guest (about 93 bits)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _metadata_doc(row: Server, admin_pass: str | None) -> dict[str, Any]:
    keys = {}
    key_list = []
    if row.key_name and row.key_data:
        keys[row.key_name] = row.key_data
        key_list.append({"name": row.key_name, "type": "ssh", "data": row.key_data})
    return {
        "uuid": row.id,
        "name": row.name,
        "hostname": row.hostname,
        "availability_zone": row.availability_zone,
        "project_id": row.project_id,
        "launch_index": row.launch_index,
        "public_keys": keys,
        "keys": key_list,
        "meta": dict(row.server_metadata or {}),
        "devices": [],
    } | ({"admin_pass": admin_pass} if admin_pass is not None else {})


def _user_mode_network_doc(row: Server) -> dict[str, Any]:
    return {
        "links": [
            {
                "id": "tap0",
                "type": "phy",
                "ethernet_mac_address": row.mac,
                "mtu": 1500,
                "vif_id": row.id,
            }
        ],
        "networks": [{"id": "network0", "type": "ipv4_dhcp", "link": "tap0", "network_id": "auto"}],
        "services": [],
    }


class Guests:
    def __init__(self, core: ComputeCore) -> None:
        self.core = core
        self.db = core.db
        self.driver = core.driver
        self.volumes = core.volumes
        self.network = core.network

    # ------------------------------------------------------------------ ports

    def project_of(self, server_id: str) -> str:
        with self.db.session() as s:
            return s.scalar(select(Server.project_id).where(Server.id == server_id)) or ""

    def ports(self, server_id: str) -> list[dict[str, Any]]:
        """The server's ports, asked with its project: another project's port naming
        this server as its device is never one of them."""
        project_id = self.project_of(server_id)
        return self.network.ports_of(server_id, project_id) if project_id else []

    def plug_ports(self, server_id: str, host: str | None = None) -> dict[str, Any]:
        """Bind the server's ports to its host (this one unless told); the addresses the
        server shows."""
        for port in self.ports(server_id):
            self.network.bind_port(port["id"], server_id, host or self.core.host)
        return self.addresses(server_id)

    def addresses(self, server_id: str, without: str | None = None) -> dict[str, Any]:
        """Nova's `addresses`: each port's fixed IPs, then the floating IPs pointing at them
        (`without`: a port being unplugged, left out before it is let go)."""
        addresses: dict[str, list[dict[str, Any]]] = {}
        ports = [p for p in self.ports(server_id) if p["id"] != without]
        floating = self.network.floating_ips_of_ports([p["id"] for p in ports])
        for port in ports:
            name = self.network.get_network(SYSTEM, port["network_id"])["name"]
            entries = addresses.setdefault(name or port["network_id"], [])
            kinds = [("fixed", f["ip_address"]) for f in port["fixed_ips"]]
            kinds += [("floating", ip) for ip in floating.get(port["id"], [])]
            for kind, addr in kinds:
                entries.append(
                    {
                        "addr": addr,
                        "version": 6 if ":" in addr else 4,
                        "OS-EXT-IPS:type": kind,
                        "OS-EXT-IPS-MAC:mac_addr": port["mac_address"],
                    }
                )
        return addresses

    def let_go_of_ports(self, server_id: str) -> None:
        project_id = self.project_of(server_id)
        ports = self.network.ports_of(server_id, project_id) if project_id else []
        if not ports:
            return
        self.network.release_ports_of(server_id, project_id)
        for port in ports:
            try:
                self.network.unwire_port(port["id"], port["network_id"])
            except Exception:
                log.exception("could not unplug port %s of server %s", port["id"], server_id)

    # ------------------------------------------------------------------ volumes

    def volume_disks(self, server_id: str, root_volume_id: str | None) -> tuple[Disk, ...]:
        """The volumes a (re)started guest gets on its command line, by their device names."""
        attached = [
            a
            for a in self.volumes.attachments_of(server_id)
            if a["volume_id"] != root_volume_id and a.get("status") in ("in-use", "detaching")
        ]
        attached.sort(key=lambda a: (len(a["device"]), a["device"]))
        # an encrypted volume's passphrase comes with its handle, read now, kept in memory
        return tuple(
            disk_of({**a, "passphrase": self.volumes.handle(a["volume_id"]).passphrase})
            for a in attached
        )

    def let_go_of_volumes(self, server_id: str) -> None:
        """The server is gone: its volumes are free again, or deleted if it asked so."""
        for attachment in self.volumes.attachments_of(server_id):
            volume_id = attachment["volume_id"]
            try:
                if attachment.get("status") == "attaching":
                    self.volumes.unreserve(volume_id)
                    continue
                if attachment.get("status") == "in-use":
                    self.volumes.begin_detach(SYSTEM, volume_id, server_id)
                self.volumes.detached(volume_id)
                if attachment.get("delete_on_termination"):
                    self.volumes.delete_internal(volume_id)
            except Exception:
                log.exception("could not release volume %s of server %s", volume_id, server_id)

    def next_device(self, server_id: str) -> str:
        """The name the guest's kernel gives the next disk: the lowest free vdX after vdb."""
        used = {a["device"] for a in self.volumes.attachments_of(server_id)}
        for index in range(2, 26):
            name = f"/dev/vd{chr(ord('a') + index)}"
            if name not in used:
                return name
        raise BadRequest("This server has no free device name left for another volume.")

    # ------------------------------------------------------------------ the guest

    def spec(self, row: Server, disk: Path, config_drive: Path | None) -> GuestSpec:
        nics: tuple[Nic, ...] = ()
        if isinstance(row.networks, list):
            nics = tuple(
                self._port_nic(port) for port in self.network.ports_of(row.id, row.project_id)
            )
        elif row.networks != "none":
            nics = (Nic(mac=row.mac, kind="user"),)
        return GuestSpec(
            uuid=row.id,
            name=row.name,
            vcpus=int(row.flavor["vcpus"]),
            memory_mib=int(row.flavor["ram"]),
            disk=disk,
            config_drive=config_drive,
            nics=nics,
            disks=self.volume_disks(row.id, row.root_volume_id),
            disk_passphrase=self.root_passphrase(row),
        )

    def root_passphrase(self, row: Server) -> str | None:
        """A root volume's LUKS passphrase (from its handle, kept in memory); None when the
        root disk is not encrypted."""
        if not row.root_volume_id:
            return None
        return self.volumes.handle(row.root_volume_id).passphrase

    def _port_nic(self, port: dict[str, Any]) -> Nic:
        """The guest's NIC for one port: its tap on the port's network, or, on a cloud
        without a network data plane, an isolated user-mode NIC with the port's MAC (the
        port keeps its addresses; the guest reaches nothing)."""
        if self.network.dataplane is None:
            return Nic(mac=port["mac_address"], kind="user", id=nic_id(port["id"]))
        ifname = self.network.wire_port(port["id"])
        return Nic(mac=port["mac_address"], kind="tap", ifname=ifname, id=nic_id(port["id"]))

    def root_disk(self, row: Server) -> Path:
        if row.root_volume_id:
            handle = self.volumes.handle(row.root_volume_id)
            if handle.path is not None:
                return handle.path
            if handle.rbd is None or handle.ceph is None:  # the server's fault says so
                raise DriverError(f"Volume {row.root_volume_id} has no data to boot from.")
            return self.driver.volume_root(row.id, handle.rbd, handle.ceph)
        return self.driver.root_disk_path(row.id)

    def config_drive_docs(
        self, row: Server, admin_pass: str | None = None
    ) -> tuple[dict[str, Any], bytes | None, dict[str, Any]]:
        user_data = base64.b64decode(row.user_data) if row.user_data else None
        if row.networks == "none":
            network: dict[str, Any] = {"links": [], "networks": [], "services": []}
        elif isinstance(row.networks, list):
            network = self._ports_network_doc(row.id, row.project_id)
        else:
            network = _user_mode_network_doc(row)
        return _metadata_doc(row, admin_pass), user_data, network

    def _ports_network_doc(self, server_id: str, project_id: str) -> dict[str, Any]:
        """One link per port, in the guest's NIC order; as Nova writes it, an address by DHCP
        where the port's IPv4 subnet has it, else the port's own address, written out."""
        ports = self.network.ports_of(server_id, project_id)
        networks = [self._port_network(index, port) for index, port in enumerate(ports)]
        dns = [
            {"type": "dns", "address": server}
            for entry in networks
            for server in entry.pop("dns", [])
        ]
        return {
            "links": [
                {
                    "id": f"tap{index}",
                    "type": "phy",
                    "ethernet_mac_address": port["mac_address"],
                    "mtu": self.network.get_network(SYSTEM, port["network_id"])["mtu"],
                    "vif_id": port["id"],
                }
                for index, port in enumerate(ports)
            ],
            "networks": networks,
            "services": dns,
        }

    def _port_network(self, index: int, port: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": f"network{index}",
            "type": "ipv4_dhcp",
            "link": f"tap{index}",
            "network_id": port["network_id"],
        }
        for fixed in port["fixed_ips"]:
            subnet = self.network.get_subnet(SYSTEM, fixed["subnet_id"])
            if subnet["ip_version"] != 4:
                continue
            if not subnet["enable_dhcp"]:
                entry.update(_static_ipv4(fixed["ip_address"], subnet))
            break
        return entry

    def write_config_drive(self, row: Server, admin_pass: str | None = None) -> Path:
        """The guest's config drive; `admin_pass` (a new build's or rebuild's password)
        lives nowhere else once written."""
        meta, user_data, network = self.config_drive_docs(row, admin_pass)
        return self.driver.write_config_drive(row.id, meta, user_data, network)

    def prepare_disks(
        self, row: Server, image: BootImage, admin_pass: str | None = None
    ) -> GuestSpec:
        disk = self.driver.make_root_disk(
            row.id, (image.id, image.path, image.disk_format), row.disk_gib, image.rbd
        )
        return self.spec(row, disk, self.write_config_drive(row, admin_pass))

    def current_spec(self, server_id: str) -> GuestSpec:
        with self.db.session() as s:
            row = s.get(Server, server_id)
            assert row is not None
            disk = self.root_disk(row)
            drive = self.driver.instance_dir(server_id) / "disk.config"
            return self.spec(row, disk, drive if drive.exists() else None)

    def destroy_everything(self, server_id: str) -> None:
        self.driver.destroy(server_id)
        self.driver.delete_files(server_id)
        self.forget(server_id)

    def forget(self, server_id: str) -> None:
        """The database's half of a delete, once no host runs the guest any more: its
        volumes and ports let go of, its console tokens revoked, the row deleted."""
        self.let_go_of_volumes(server_id)
        self.let_go_of_ports(server_id)
        with self.db.session() as s:
            revoke_tokens(s, server_id)
            console_tails.forget(s, server_id)
        now = self.core.now()
        self.core.set(
            server_id,
            vm_state="deleted",
            task_state=None,
            power_state=int(PowerState.NOSTATE),
            deleted=True,
            terminated_at=now,
            updated_at=now,
        )


def _static_ipv4(address: str, subnet: dict[str, Any]) -> dict[str, Any]:
    """network_data.json's static IPv4 entry (Nova's "ipv4"): address, mask, routes, DNS."""
    net = ipaddress.ip_network(subnet["cidr"])
    routes = [
        {
            "network": str(ipaddress.ip_network(r["destination"]).network_address),
            "netmask": str(ipaddress.ip_network(r["destination"]).netmask),
            "gateway": r["nexthop"],
        }
        for r in subnet.get("host_routes") or []
    ]
    if subnet.get("gateway_ip"):
        anywhere = str(ipaddress.IPv4Address(0))  # the default route
        routes.append({"network": anywhere, "netmask": anywhere, "gateway": subnet["gateway_ip"]})
    return {
        "type": "ipv4",
        "ip_address": address,
        "netmask": str(net.netmask),
        "routes": routes,
        "dns": list(subnet.get("dns_nameservers") or []),
    }
