"""A server's diagnostics (admin only): its power state, size, uptime, NICs and the I/O
counters QEMU keeps for its disks, as one record `views` shapes per microversion.

Reads only; nothing here changes a guest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from souverain.common.clock import as_utc
from souverain.common.context import RequestContext
from souverain.common.errors import Conflict
from souverain.compute.core import ComputeCore
from souverain.compute.guests import Guests
from souverain.compute.qemu import PowerState

# Nova's diagnostics state names by power state.
STATES = {
    PowerState.NOSTATE: "pending",
    PowerState.RUNNING: "running",
    PowerState.PAUSED: "paused",
    PowerState.SHUTDOWN: "shutdown",
    PowerState.CRASHED: "crashed",
    PowerState.SUSPENDED: "suspended",
}


@dataclass(frozen=True)
class Diagnosis:
    state: str
    hypervisor: str  # "kvm" or "qemu" (TCG)
    uptime: int | None  # seconds since the guest was launched, while it runs
    config_drive: bool
    vcpus: int
    memory_mib: int
    macs: list[str] = field(default_factory=list)
    disks: list[dict[str, int]] = field(default_factory=list)  # root first, then volumes


class Diagnostics:
    def __init__(self, core: ComputeCore, guests: Guests) -> None:
        self.core = core
        self.guests = guests
        self.driver = core.driver

    def diagnose(self, ctx: RequestContext, server_id: str) -> Diagnosis:
        with self.core.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            if row.vm_state == "building" or row.host is None:
                raise Conflict(
                    f"Cannot 'get_diagnostics' instance {server_id} while it is in vm_state "
                    f"{row.vm_state}: wait until it is built."
                )
            launched = as_utc(row.launched_at) if row.launched_at else None
            vcpus, memory = int(row.flavor["vcpus"]), int(row.flavor["ram"])
            config_drive, root_volume = bool(row.config_drive), row.root_volume_id
            macs = (
                [row.mac] if not isinstance(row.networks, list) and row.networks != "none" else []
            )
        power = self.driver.power_state(server_id)
        if isinstance(row.networks, list):
            macs = [p["mac_address"] for p in self.guests.ports(server_id)]
        stats = self.driver.block_stats(server_id)
        disks = [stats.get("root", _zero_disk())] if stats else []
        for disk in self.guests.volume_disks(server_id, root_volume):
            disks.append(stats.get(disk.id or "", _zero_disk()))
        uptime = None
        if power == PowerState.RUNNING and launched is not None:
            uptime = max(0, int((self.core.clock.now() - launched).total_seconds()))
        return Diagnosis(
            state=STATES.get(power, "pending"),
            hypervisor=self.driver.accelerator(),
            uptime=uptime,
            config_drive=config_drive,
            vcpus=vcpus,
            memory_mib=memory,
            macs=macs,
            disks=disks,
        )


def _zero_disk() -> dict[str, int]:
    return dict.fromkeys(
        ("read_bytes", "read_requests", "write_bytes", "write_requests", "errors_count"), 0
    )
