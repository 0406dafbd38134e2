"""The cloud's compute services and hypervisors as Nova's os-services and os-hypervisors
show them: nova-compute on every host of `compute_hosts` (up while it reports, see
`Hosts.is_up`), nova-conductor and nova-scheduler on this process's own host, each
hypervisor with its capacity and what its servers hold; and what an operator sets on
a service: disabled (with a reason) or forced down.

A disabled or forced-down nova-compute takes no new server: the scheduler skips it, as
Nova's does. Nothing here touches a guest.
"""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.errors import BadRequest, NotFound
from souverain.compute import scheduler
from souverain.compute.core import ComputeCore
from souverain.compute.models import ComputeHost, Server, ServiceState
from souverain.compute.qemu_host import cpu_info
from souverain.compute.scheduler import COMPUTE

__all__ = ["COMPUTE", "HostService", "HostServices", "ServiceChange"]

CONTROL = ("nova-conductor", "nova-scheduler")  # this process's, on its own host
BINARIES = (*CONTROL, COMPUTE)


@dataclass(frozen=True)
class HostService:
    index: int  # the id before 2.53
    uuid: str  # the id from 2.53
    binary: str
    host: str
    disabled: bool
    disabled_reason: str | None
    forced_down: bool
    up: bool = True  # reported within compute.service_down_time
    zone: str = "internal"
    updated_at: dt.datetime | None = None


@dataclass(frozen=True)
class ServiceChange:
    """What an update sets; None leaves a field as it is."""

    disabled: bool | None = None
    disabled_reason: str | None = None
    forced_down: bool | None = None


def service_uuid(host: str, binary: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"souverain-service:{host}/{binary}"))


def hypervisor_uuid(host: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, host))


def _hosts(s: Session) -> list[ComputeHost]:
    """Every host, the oldest first: its place is its integer id before 2.53."""
    return list(s.scalars(select(ComputeHost).order_by(ComputeHost.created_at, ComputeHost.name)))


class HostServices:
    def __init__(self, core: ComputeCore) -> None:
        self.core = core
        self.db = core.db
        self.host = core.host

    def list(self) -> list[HostService]:
        """The control services of this host, then nova-compute of every host."""
        with self.db.session() as s:
            states = {(st.host, st.binary): st for st in s.scalars(select(ServiceState))}
            hosts = _hosts(s)
            member_of = scheduler.memberships(s)
        now = self.core.hosts.now()
        out = [
            self._service(index, self.host, binary, states, True, "internal", now)
            for index, binary in enumerate(CONTROL, start=1)
        ]
        for index, row in enumerate(hosts, start=len(CONTROL) + 1):
            zone = self.core.scheduler.zone_of(member_of.get(row.name))
            up = self.core.hosts.is_up(row, now)
            seen = now if row.name == self.host else row.last_seen_at
            out.append(self._service(index, row.name, COMPUTE, states, up, zone, seen))
        return out

    @staticmethod
    def _service(
        index: int,
        host: str,
        binary: str,
        states: dict[tuple[str, str], ServiceState],
        up: bool,
        zone: str,
        seen: dt.datetime | None,
    ) -> HostService:
        st = states.get((host, binary))
        return HostService(
            index=index,
            uuid=service_uuid(host, binary),
            binary=binary,
            host=host,
            disabled=bool(st and st.disabled),
            disabled_reason=st.disabled_reason if st else None,
            forced_down=bool(st and st.forced_down),
            up=up and not (st and st.forced_down),
            zone=zone,
            updated_at=seen,
        )

    def hypervisors(self) -> builtins.list[dict[str, Any]]:
        """Every host as os-hypervisors shows it: its report, state and usage."""
        computes = {svc.host: svc for svc in self.list() if svc.binary == COMPUTE}
        with self.db.session() as s:
            hosts = _hosts(s)
            used = scheduler.usages(s)
        reserved = self.core.settings.reserved_host_memory_mib
        out = []
        for index, row in enumerate(hosts, start=1):
            load = used.get(row.name, scheduler.Usage(0, 0, 0, 0))
            svc = computes.get(row.name)
            if svc is None:  # registered since the services were read: next time
                continue
            local = row.name == self.host
            out.append(
                {
                    "index": index,
                    "id": hypervisor_uuid(row.name),
                    "hypervisor_hostname": row.name,
                    "host": row.name,
                    "state": "up" if svc.up else "down",
                    "status": "disabled" if svc.disabled else "enabled",
                    "disabled_reason": svc.disabled_reason,
                    "service_id": svc.index,
                    "service_uuid": svc.uuid,
                    "host_ip": row.address or "127.0.0.1",
                    "hypervisor_type": row.hypervisor_type or "QEMU",
                    "hypervisor_version": row.hypervisor_version or 7002000,
                    "accelerator": self.core.driver.accelerator() if local else None,
                    "cpu_info": cpu_info() if local else {},
                    "vcpus": row.physical_vcpus,
                    "memory_mb": row.physical_memory_mib,
                    "local_gb": row.physical_disk_gib,
                    "vcpus_used": load.vcpus,
                    "memory_mb_used": load.memory_mib + reserved,
                    "local_gb_used": load.disk_gib,
                    "running_vms": load.servers,
                    "capacity": scheduler.capacity_from_row(row),
                }
            )
        return out

    def servers_on(self, host: str) -> builtins.list[dict[str, str]]:
        """The servers a host holds (Nova's hypervisor servers), oldest first."""
        with self.db.session() as s:
            rows = s.execute(
                select(Server.id, Server.name)
                .where(Server.host == host, Server.deleted.is_(False))
                .order_by(Server.created_at, Server.id)
            ).all()
        return [{"uuid": str(server_id), "name": str(name)} for server_id, name in rows]

    def find(
        self, *, host: str | None = None, binary: str | None = None, service_id: str | None = None
    ) -> HostService:
        """One service by host and binary, or by its id (2.53's UUID); 404 otherwise."""
        for service in self.list():
            if service_id is not None and service.uuid == service_id:
                return service
            if service_id is None and service.host == host and service.binary == binary:
                return service
        what = service_id if service_id is not None else f"{binary} on host {host}"
        raise NotFound(f"Service {str(what)[:255]} could not be found.")

    def update(self, service: HostService, change: ServiceChange) -> HostService:
        if change.forced_down is not None and service.binary != COMPUTE:
            raise BadRequest(f"Only {COMPUTE} can be forced down, not {service.binary}.")
        with self.db.session() as s:
            state = s.get(ServiceState, (service.host, service.binary))
            if state is None:
                state = ServiceState(
                    host=service.host,
                    binary=service.binary,
                    disabled=False,
                    disabled_reason=None,
                    forced_down=False,
                )
                s.add(state)
            if change.disabled is not None:
                state.disabled = change.disabled
                state.disabled_reason = change.disabled_reason if change.disabled else None
            if change.forced_down is not None:
                state.forced_down = change.forced_down
        return self.find(service_id=service.uuid)
