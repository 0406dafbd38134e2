"""Rescue and unrescue: a server boots a fresh disk of a rescue image (its own image by
default) with its own root disk attached beside it, so its owner can repair that disk;
unrescue boots it from its own disk again and drops the rescue disk.

The rescue guest gets a config drive of its own carrying the rescue password, which is
shown once in the answer and kept nowhere else. Each is one move of `states.MOVES`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.compute.actions import Actions
from souverain.compute.core import ComputeCore
from souverain.compute.guests import Guests, new_admin_password
from souverain.compute.models import Server
from souverain.compute.qemu import Disk, PowerState
from souverain.compute.rbd_disks import is_rbd
from souverain.compute.states import MOVES
from souverain.image.service import BootImage

RESCUE_DISK = "disk.rescue"
RESCUE_DRIVE = "disk.rescue.config"


class Rescue:
    def __init__(self, core: ComputeCore, guests: Guests, actions: Actions) -> None:
        self.core = core
        self.driver = core.driver
        self.guests = guests
        self.actions = actions

    def rescue(
        self,
        ctx: RequestContext,
        server_id: str,
        image_ref: str | None,
        admin_pass: str | None,
    ) -> str:
        """Start the rescue; the rescue guest's password (the one given, or a new one)."""
        with self.core.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            if row.root_volume_id:
                raise BadRequest(
                    f"Server {server_id} boots from a volume; rescue works on image-backed "
                    "servers only."
                )
            image_ref = image_ref or row.image_id
            if is_rbd(self.guests.root_disk(row)):
                raise Conflict(
                    f"Server {server_id}'s root disk is on RBD: rescue is not available for "
                    "it yet; rebuild the server or snapshot it (createImage) instead."
                )
        try:
            image = self.core.images.image_for_boot(ctx, image_ref)
        except NotFound:
            raise BadRequest(f"Rescue image {image_ref[:64]} could not be found.") from None
        password = admin_pass or new_admin_password()
        move = MOVES["rescue"]
        _, action_id = self.actions.begin(ctx, server_id, move)
        self.actions.run(move, action_id, server_id, self._rescue_work(server_id, image, password))
        return password

    def _rescue_work(self, server_id: str, image: BootImage, password: str) -> Any:
        def work() -> dict[str, Any]:
            self.driver.destroy(server_id)
            with self.core.db.session() as s:
                row = s.get(Server, server_id)
                assert row is not None
                normal = self.guests.spec(row, self.guests.root_disk(row), None)
                meta, user_data, network = self.guests.config_drive_docs(row, password)
            base = self.driver.cache_base_image(image.id, image.path)
            disk = self.driver.create_root_disk(
                server_id, base, image.disk_format, 1, name=RESCUE_DISK
            )
            drive = self.driver.write_config_drive(
                server_id, meta, user_data, network, name=RESCUE_DRIVE
            )
            # the server's own disk follows the rescue disk, as a disk to repair
            own = Disk(id="rescued-root", path=normal.disk, serial="rescued-root")
            self.driver.start(
                replace(normal, disk=disk, config_drive=drive, disks=(own, *normal.disks))
            )
            return {"vm_state": "rescued", "power_state": int(PowerState.RUNNING)}

        return work

    def unrescue(self, ctx: RequestContext, server_id: str) -> None:
        move = MOVES["unrescue"]
        _, action_id = self.actions.begin(ctx, server_id, move)

        def work() -> dict[str, Any]:
            self.driver.destroy(server_id)
            for name in (RESCUE_DISK, RESCUE_DRIVE):
                (self.driver.instance_dir(server_id) / name).unlink(missing_ok=True)
            self.driver.start(self.guests.current_spec(server_id))
            return {"vm_state": "active", "power_state": int(PowerState.RUNNING)}

        self.actions.run(move, action_id, server_id, work)
