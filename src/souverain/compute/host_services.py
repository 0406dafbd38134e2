"""The host's compute services as Nova's os-services shows them (conductor, scheduler,
compute), and what an operator sets on them: disabled (with a reason) or forced down.

A disabled or forced-down nova-compute takes no new server: its builds end with no
valid host, as Nova's scheduler skips such a host. Nothing here touches a guest.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.errors import BadRequest, NotFound
from souverain.compute.core import ComputeCore
from souverain.compute.models import ServiceState

COMPUTE = "nova-compute"
BINARIES = ("nova-conductor", "nova-scheduler", COMPUTE)


@dataclass(frozen=True)
class HostService:
    index: int  # the id before 2.53
    uuid: str  # the id from 2.53
    binary: str
    host: str
    disabled: bool
    disabled_reason: str | None
    forced_down: bool


@dataclass(frozen=True)
class ServiceChange:
    """What an update sets; None leaves a field as it is."""

    disabled: bool | None = None
    disabled_reason: str | None = None
    forced_down: bool | None = None


def service_uuid(host: str, binary: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"souverain-service:{host}/{binary}"))


def compute_takes_builds(s: Session, host: str) -> bool:
    """Whether the host's nova-compute is enabled and not forced down."""
    state = s.get(ServiceState, (host, COMPUTE))
    return state is None or not (state.disabled or state.forced_down)


class HostServices:
    def __init__(self, core: ComputeCore) -> None:
        self.core = core
        self.db = core.db
        self.host = core.host

    def list(self) -> list[HostService]:
        with self.db.session() as s:
            states = {
                st.binary: st
                for st in s.scalars(select(ServiceState).where(ServiceState.host == self.host))
            }
        out = []
        for index, binary in enumerate(BINARIES, start=1):
            st = states.get(binary)
            out.append(
                HostService(
                    index=index,
                    uuid=service_uuid(self.host, binary),
                    binary=binary,
                    host=self.host,
                    disabled=bool(st and st.disabled),
                    disabled_reason=st.disabled_reason if st else None,
                    forced_down=bool(st and st.forced_down),
                )
            )
        return out

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
