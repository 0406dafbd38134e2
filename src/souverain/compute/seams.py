"""What compute asks of the services around it, as protocols mypy checks every call
against. `server.py` passes the real services in; compute never imports them to call
them, only the value types they hand back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from souverain.common.ceph import RbdRef
from souverain.common.context import RequestContext
from souverain.config import VolumeSettings
from souverain.image.service import BootImage, ListQuery
from souverain.volume.service import ServerVolume, VolumeHandle


class GuestNetworking(Protocol):
    """The network service as a guest's ports need it: made, bound to this host, wired
    into a tap, and let go when the server goes."""

    @property
    def dataplane(self) -> object:
        """None when this cloud runs no network data plane (no bridges, no taps)."""
        ...

    def get_network(self, ctx: RequestContext, network_id: str) -> dict[str, Any]: ...

    def get_or_create_auto_network(self, ctx: RequestContext) -> dict[str, Any]: ...

    def get_port(self, ctx: RequestContext, port_id: str) -> dict[str, Any]: ...

    def get_subnet(self, ctx: RequestContext, subnet_id: str) -> dict[str, Any]: ...

    def create_port_for_server(
        self,
        ctx: RequestContext,
        network_id: str | None = None,
        port_id: str | None = None,
        fixed_ip: str | None = None,
        *,
        server_id: str,
        project_id: str | None = None,
        security_groups: list[str] | None = None,
    ) -> dict[str, Any]: ...

    def bind_port(self, port_id: str, server_id: str, host: str) -> dict[str, Any]: ...

    def ports_of(self, server_id: str, project_id: str) -> list[dict[str, Any]]:
        """The ports compute bound to the server, of the server's project only."""
        ...

    def floating_ips_of_ports(self, port_ids: list[str]) -> dict[str, list[str]]: ...

    def wire_port(self, port_id: str) -> str: ...

    def unwire_port(self, port_id: str, network_id: str) -> None: ...

    def release_port(self, port_id: str) -> None: ...

    def release_ports_of(self, server_id: str, project_id: str) -> None: ...

    def security_groups_of_servers(self, servers: dict[str, str]) -> dict[str, list[str]]:
        """Server id -> its ports' security group names, for {server id: its project}."""
        ...

    def set_server_security_group(
        self, server_id: str, project_id: str, name: str, member: bool
    ) -> None:
        """Every port of the server joins (or leaves) the project's group `name`."""
        ...


class GuestVolumes(Protocol):
    """The volume service as a server's disks need it: a volume is reserved, attached,
    detached or rolled back, each a move of the volume's own state machine."""

    @property
    def settings(self) -> VolumeSettings: ...

    def get(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]: ...

    def handle(self, volume_id: str) -> VolumeHandle: ...

    def create_for_boot(
        self, ctx: RequestContext, image_id: str, size_gib: int, volume_type: str | None = None
    ) -> VolumeHandle: ...

    def check_volume_type(self, ctx: RequestContext, type_ref: str) -> None:
        """NotFound unless the caller may make volumes of the type (id or name)."""
        ...

    def reserve(
        self, ctx: RequestContext, volume_id: str, server_id: str, **held: Any
    ) -> VolumeHandle: ...

    def attached(
        self,
        volume_id: str,
        server_id: str,
        device: str,
        attachment_id: str,
        delete_on_termination: bool = False,
    ) -> None: ...

    def unreserve(self, volume_id: str) -> None: ...

    def begin_detach(
        self, ctx: RequestContext, volume_id: str, server_id: str
    ) -> dict[str, Any]: ...

    def detached(self, volume_id: str) -> None: ...

    def roll_back_detach(self, volume_id: str) -> None: ...

    def delete_internal(self, volume_id: str) -> None: ...

    def attachments_of(self, server_id: str) -> list[dict[str, Any]]: ...

    def volumes_of_servers(self, server_ids: Sequence[str]) -> dict[str, list[ServerVolume]]: ...


class GuestImages(Protocol):
    """The image service as booting, snapshotting and Nova's image proxy need it."""

    def image_for_boot(
        self, ctx: RequestContext, image_id: str, local_copy: bool = True
    ) -> BootImage: ...

    def clone_parent(self, ctx: RequestContext, image_id: str) -> RbdRef | None:
        """The RBD snapshot root disks of an active image clone (images on RBD), else None."""
        ...

    def get(self, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        """The image as Glance shows it, if the caller may see it (else NotFound)."""
        ...

    def delete(self, ctx: RequestContext, image_id: str) -> None: ...

    def list_images(self, ctx: RequestContext, query: ListQuery) -> tuple[Sequence[Any], bool]:
        """One page of the images the caller may list (each with its `id`); whether more
        follow."""
        ...

    def create_snapshot_record(
        self,
        ctx: RequestContext,
        name: str,
        properties: dict[str, str],
        min_disk: int = 0,
        min_ram: int = 0,
        disk_format: str = "qcow2",
        container_format: str = "bare",
    ) -> dict[str, Any]: ...

    def import_file(self, image_id: str, source: Path) -> None: ...

    def fail_image(self, image_id: str, reason: str) -> None: ...
