"""Shelve and unshelve: a shelved server gives its host back. Its root disk becomes a
private snapshot image (`<name>-shelved`), its guest and files go and its claim is
released (Nova's shelved_offloaded, offloaded at once); its ports and volumes stay
with it. Unshelve claims room again, boots a new root disk from the snapshot and deletes
the snapshot. A server booted from a volume keeps its volume and needs no snapshot.

Each is one move of `states.MOVES`; the host work runs in `Actions.run`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.compute import scheduler, states
from souverain.compute.actions import Actions
from souverain.compute.core import NO_VALID_HOST, ComputeCore
from souverain.compute.guests import Guests
from souverain.compute.models import Server
from souverain.compute.qemu import DriverError, GuestSpec, PowerState
from souverain.compute.scheduler import PlacementRequest
from souverain.compute.states import MOVES


class Shelving:
    def __init__(self, core: ComputeCore, guests: Guests, actions: Actions) -> None:
        self.core = core
        self.driver = core.driver
        self.images = core.images
        self.guests = guests
        self.actions = actions

    def shelve(self, ctx: RequestContext, server_id: str) -> None:
        move = MOVES["shelve"]
        row, action_id = self.actions.begin(ctx, server_id, move)
        name, image_backed = row.name, not row.root_volume_id
        min_disk, min_ram = int(row.flavor.get("disk") or 0), 0

        def work() -> dict[str, Any]:
            self.driver.shutdown(server_id, self.core.settings.shutdown_timeout)
            self.driver.destroy(server_id)
            image_id = None
            if image_backed:
                image_id = self._snapshot(ctx, server_id, f"{name}-shelved", min_disk, min_ram)
            self.driver.delete_files(server_id)
            with self.core.db.session() as s:
                scheduler.release(s, server_id)
            return {
                "vm_state": "shelved_offloaded",
                "power_state": int(PowerState.SHUTDOWN),
                "shelved_image_id": image_id,
            }

        self.actions.run(move, action_id, server_id, work)

    def shelve_offload(self, ctx: RequestContext, server_id: str) -> None:
        """Nova's shelveOffload gives the host back for a server left in SHELVED. Shelve
        offloads at once here (Nova's shelved_offload_time 0), so no server is ever left
        there: every server gets the 409 Nova gives outside SHELVED, naming its state."""
        with self.core.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            vm_state, task_state = row.vm_state, row.task_state
        raise states.refusal(MOVES["shelveOffload"], server_id, vm_state, task_state)

    def _snapshot(
        self, ctx: RequestContext, server_id: str, name: str, min_disk: int, min_ram: int
    ) -> str:
        """The root disk as a private image, its data imported before the disk goes."""
        properties = {"image_type": "snapshot", "instance_uuid": server_id}
        record = self.images.create_snapshot_record(ctx, name, properties, min_disk, min_ram)
        image_id = str(record["id"])
        dest = self.driver.root / "snapshots" / f"{image_id}.qcow2"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.driver.snapshot_disk(server_id, dest)
            self.images.import_file(image_id, dest)
        except Exception as exc:
            dest.unlink(missing_ok=True)
            self.images.fail_image(image_id, str(exc))
            raise
        return image_id

    def unshelve(self, ctx: RequestContext, server_id: str, zone: str | None = None) -> None:
        """Back from the shelf, in `zone` when one is asked for (2.77): the default zone
        or an aggregate's, else a 400 before anything changes."""
        if zone is not None:
            with self.core.db.session() as s:
                known = self.core.scheduler.zones(s)
            if zone not in known:
                raise BadRequest(f"The requested availability zone is not available: {zone[:255]}")
        move = MOVES["unshelve"]
        _, action_id = self.actions.begin(ctx, server_id, move)

        def work() -> dict[str, Any]:
            spec, image_id = self._respawn(ctx, server_id, zone)
            self.driver.start(spec)
            if image_id is not None:
                with contextlib.suppress(NotFound):
                    self.images.delete(ctx, image_id)
            return {
                "vm_state": "active",
                "power_state": int(PowerState.RUNNING),
                "shelved_image_id": None,
                "launched_at": self.core.now(),
            }

        self.actions.run(move, action_id, server_id, work)

    def _respawn(
        self, ctx: RequestContext, server_id: str, zone: str | None
    ) -> tuple[GuestSpec, str | None]:
        """Room claimed on this host again (through every filter of the scheduler: the
        guest boots here), and the guest as it will boot."""
        with self.core.db.session() as s:
            row = s.get(Server, server_id)
            assert row is not None
            request = PlacementRequest(
                server_id=server_id,
                vcpus=row.vcpus,
                memory_mib=row.memory_mib,
                disk_gib=row.disk_gib,
                zone=zone,
                host=self.core.host,
                extra_specs=dict((row.flavor or {}).get("extra_specs") or {}),
            )
            placed = self.core.scheduler.select_and_claim(s, request)
            if placed is not None:
                row.availability_zone = self.core.scheduler.zone_of_host(s, placed)
        if placed is None:
            raise DriverError(NO_VALID_HOST)
        with self.core.db.session() as s:
            row = s.get(Server, server_id)
            assert row is not None
            image_id = row.shelved_image_id
            if image_id is None:  # boots from its volume
                drive = self.guests.write_config_drive(row)
                return self.guests.spec(row, self.guests.root_disk(row), drive), None
            image = self.images.image_for_boot(ctx, image_id)
            return self.guests.prepare_disks(row, image), image_id
