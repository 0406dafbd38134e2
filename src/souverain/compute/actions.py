"""Server actions: each begins with the compare-and-set of `states.py` (409 when the
server's state does not allow it), then its host work runs on a worker thread under the
server's lock and ends by writing the vm_state the table names (or `error`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.compute import console_tails, states
from souverain.compute.agents import HostAgents, is_agent_host
from souverain.compute.core import NO_VALID_HOST, ComputeCore, check_unlocked
from souverain.compute.flavors import Flavors
from souverain.compute.guests import Guests, new_admin_password
from souverain.compute.keypairs import keypair_of
from souverain.compute.models import Server
from souverain.compute.qemu import DriverError, PowerState
from souverain.compute.scheduler import PlacementRequest
from souverain.compute.servers import Servers
from souverain.compute.states import MOVES, Move
from souverain.image.service import BootImage, ListQuery

log = logging.getLogger("souverain.compute")

Work = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Backup:
    """A createBackup request: the image's name, the backup type and how many to keep."""

    name: str
    backup_type: str
    rotation: int
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


def _power(vm_state: str) -> int:
    return int(PowerState.RUNNING if vm_state == "active" else PowerState.SHUTDOWN)


class Actions:
    def __init__(
        self,
        core: ComputeCore,
        flavors: Flavors,
        guests: Guests,
        servers: Servers,
        agents: HostAgents,
    ) -> None:
        self.core = core
        self.db = core.db
        self.driver = core.driver
        self.images = core.images
        self.settings = core.settings
        self.flavors = flavors
        self.guests = guests
        self.servers = servers
        self.agents = agents

    # ------------------------------------------------------------------ the two halves

    def begin(
        self,
        ctx: RequestContext,
        server_id: str,
        move: Move,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Server, int]:
        """Compare-and-set the server into the move's task; 409 if its state does not
        allow it. The row as it is now, and the instance action recorded."""
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            check_unlocked(ctx, row)
            self.agents.refuse_unless_supported(s, row, move.name)
            values = {"updated_at": self.core.now(), **(extra or {})}
            if not states.begin(s, server_id, move, values):
                raise states.refusal(move, server_id, row.vm_state, row.task_state)
            action_id = self.core.record_action(s, ctx, server_id, row.project_id, move.name)
            s.refresh(row)
            return row, action_id

    def run(self, move: Move, action_id: int, server_id: str, work: Work) -> None:
        """Run host work for one action; its result (or the error) ends the task. On a
        host with an agent, the agent does the work and its report ends the task."""
        if self.agents.hand_over(server_id):
            return

        def task() -> None:
            with self.core.server_lock(server_id):
                try:
                    values = work()
                    end = values.get("vm_state")
                    if end is not None and end not in move.ends:
                        raise AssertionError(f"{move.name} may not end in {end}")
                except Exception as exc:
                    self._failed(action_id, server_id, exc)
                    return
                values.setdefault("task_state", None)
                self.core.set(server_id, **values)
                self.core.finish_action(action_id)

        self.core.submit(task)

    def _failed(self, action_id: int, server_id: str, exc: Exception) -> None:
        if isinstance(exc, DriverError | OSError):
            message = str(exc)
        else:
            log.exception("server %s: unexpected error", server_id)
            message = "An internal error stopped this action; an operator was told."
        log.warning("server %s: %s", server_id, message)
        state = self.driver.power_state(server_id)
        self.core.set(
            server_id,
            task_state=None,
            power_state=int(state),
            fault=self.core.fault(message),
            vm_state="error",
        )
        self.core.finish_action(action_id, message)

    def _simple(self, ctx: RequestContext, server_id: str, name: str, work: Work) -> None:
        move = MOVES[name]
        _, action_id = self.begin(ctx, server_id, move)
        self.run(move, action_id, server_id, work)

    # ------------------------------------------------------------------ power

    def delete_server(self, ctx: RequestContext, server_id: str) -> None:
        row, action_id = self.begin(ctx, server_id, MOVES["delete"])
        shelved_image = row.shelved_image_id
        if self.agents.hand_over(server_id, local_delete=True):
            return

        def task() -> None:
            with self.core.server_lock(server_id):
                self.guests.destroy_everything(server_id)
            if shelved_image is not None:  # a shelved server's snapshot goes with it
                with contextlib.suppress(NotFound):
                    self.images.delete(ctx, shelved_image)
            self.core.finish_action(action_id)

        self.core.submit(task)

    def stop(self, ctx: RequestContext, server_id: str) -> None:
        def work() -> dict[str, Any]:
            self.driver.shutdown(server_id, self.settings.shutdown_timeout)
            return {"vm_state": MOVES["stop"].end(), "power_state": int(PowerState.SHUTDOWN)}

        self._simple(ctx, server_id, "stop", work)

    def start(self, ctx: RequestContext, server_id: str) -> None:
        def work() -> dict[str, Any]:
            self.driver.start(self.guests.current_spec(server_id))
            return {
                "vm_state": MOVES["start"].end(),
                "power_state": int(PowerState.RUNNING),
                "fault": None,
            }

        self._simple(ctx, server_id, "start", work)

    def reboot(self, ctx: RequestContext, server_id: str, hard: bool) -> None:
        name = "reboot_hard" if hard else "reboot"

        def work() -> dict[str, Any]:
            if hard:
                self.driver.destroy(server_id)
            else:
                clean = self.driver.shutdown(server_id, self.settings.shutdown_timeout)
                if not clean:
                    log.info("server %s ignored the ACPI shutdown; rebooted by force", server_id)
            suspended = self.driver.instance_dir(server_id) / "suspended.state"
            suspended.unlink(missing_ok=True)
            self.driver.start(self.guests.current_spec(server_id))
            return {
                "vm_state": MOVES[name].end(),
                "power_state": int(PowerState.RUNNING),
                "fault": None,
            }

        self._simple(ctx, server_id, name, work)

    def pause(self, ctx: RequestContext, server_id: str) -> None:
        def work() -> dict[str, Any]:
            self.driver.pause(server_id)
            return {"vm_state": MOVES["pause"].end(), "power_state": int(PowerState.PAUSED)}

        self._simple(ctx, server_id, "pause", work)

    def unpause(self, ctx: RequestContext, server_id: str) -> None:
        def work() -> dict[str, Any]:
            self.driver.unpause(server_id)
            return {"vm_state": MOVES["unpause"].end(), "power_state": int(PowerState.RUNNING)}

        self._simple(ctx, server_id, "unpause", work)

    def suspend(self, ctx: RequestContext, server_id: str) -> None:
        def work() -> dict[str, Any]:
            self.driver.suspend(server_id)
            return {"vm_state": MOVES["suspend"].end(), "power_state": int(PowerState.SUSPENDED)}

        self._simple(ctx, server_id, "suspend", work)

    def resume(self, ctx: RequestContext, server_id: str) -> None:
        def work() -> dict[str, Any]:
            self.driver.resume(self.guests.current_spec(server_id))
            return {"vm_state": MOVES["resume"].end(), "power_state": int(PowerState.RUNNING)}

        self._simple(ctx, server_id, "resume", work)

    # ------------------------------------------------------------------ images

    def create_image(
        self, ctx: RequestContext, server_id: str, name: str, metadata: dict[str, str]
    ) -> str:
        properties = {"image_type": "snapshot", **metadata}
        return self._snapshot(ctx, server_id, name, properties, MOVES["createImage"])

    def create_backup(self, ctx: RequestContext, server_id: str, backup: Backup) -> str:
        """A snapshot marked as a backup of its type; once it is made, only the newest
        `rotation` backups of that type of the server are kept (Nova's createBackup)."""
        properties = {
            **backup.metadata,
            "image_type": "backup",
            "backup_type": backup.backup_type,
        }

        def rotate(image_id: str) -> None:
            self.rotate_backups(ctx, server_id, backup, image_id)

        return self._snapshot(
            ctx, server_id, backup.name, properties, MOVES["createBackup"], then=rotate
        )

    def _snapshot(
        self,
        ctx: RequestContext,
        server_id: str,
        name: str,
        properties: dict[str, str],
        move: Move,
        then: Callable[[str], None] | None = None,
    ) -> str:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            if row.root_volume_id:
                raise BadRequest(
                    f"Server {server_id} boots from volume {row.root_volume_id}: make an image "
                    "of the volume instead (openstack image create --volume)."
                )
            flavor_disk = int(row.flavor.get("disk") or 0)
            source_image = row.image_id
        # as Nova: the source image's minimums, the flavor's disk where it has one;
        # the caller's metadata may name the image type, never which server it came from
        source_min_disk, min_ram = self._source_minimums(ctx, source_image)
        properties = {**properties, "instance_uuid": server_id, "base_image_ref": source_image}
        image = self.images.create_snapshot_record(
            ctx, name, properties, flavor_disk or source_min_disk, min_ram
        )
        image_id = str(image["id"])
        try:
            _, action_id = self.begin(ctx, server_id, move)
        except Exception:
            self.images.fail_image(image_id, "the server could not be snapshotted")
            raise

        def work() -> dict[str, Any]:
            dest = self.driver.root / "snapshots" / f"{image_id}.qcow2"
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.driver.snapshot_disk(server_id, dest)
                self.images.import_file(image_id, dest)
            except Exception as exc:
                dest.unlink(missing_ok=True)
                self.images.fail_image(image_id, str(exc))
                log.warning("snapshot of %s failed: %s", server_id, exc)
                return {}
            if then is not None:
                then(image_id)
            return {}

        self.run(move, action_id, server_id, work)
        return image_id

    def rotate_backups(
        self, ctx: RequestContext, server_id: str, backup: Backup, newest: str
    ) -> None:
        """Delete the server's backups of this type beyond the newest `rotation`."""
        filters = {
            "instance_uuid": server_id,
            "image_type": "backup",
            "backup_type": backup.backup_type,
        }
        rows, _ = self.images.list_images(ctx, ListQuery(filters))  # newest first
        ids = [str(r.id) for r in rows]
        ordered = [newest, *(i for i in ids if i != newest)] if newest in ids else ids
        for image_id in ordered[backup.rotation :]:
            try:
                self.images.delete(ctx, image_id)
            except Exception as exc:  # a protected image stays; the rest still rotate
                log.warning("backup %s of server %s not rotated out: %s", image_id, server_id, exc)

    def _source_minimums(self, ctx: RequestContext, image_id: str) -> tuple[int, int]:
        """The min_disk and min_ram of the image a server booted from (0, 0 once gone)."""
        try:
            image = self.images.image_for_boot(ctx, image_id)
        except (NotFound, BadRequest):
            return 0, 0
        return int(image.min_disk or 0), int(image.min_ram or 0)

    def rebuild(
        self, ctx: RequestContext, server_id: str, image_ref: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            if self.core.server_row(s, ctx, server_id).root_volume_id:
                raise BadRequest(
                    f"Server {server_id} boots from a volume; rebuild works on image-backed "
                    "servers only."
                )
        try:
            image = self.images.image_for_boot(ctx, image_ref, self.driver.rbd_disks is None)
        except NotFound:
            raise BadRequest(f"Image {image_ref} could not be found.") from None
        extra = {"image_id": image.id, **self._rebuilt_columns(ctx, changes)}
        admin_pass = changes.get("admin_pass") or new_admin_password()
        move = MOVES["rebuild"]
        row, action_id = self.begin(ctx, server_id, move, extra)
        running = row.vm_state != "stopped"
        if self.agents.hand_over(server_id, task="rebuild_spawning"):  # built anew there
            return {**self.servers.get_server(ctx, server_id), "admin_pass": admin_pass}
        self.run(
            move, action_id, server_id, self._rebuild_work(server_id, image, running, admin_pass)
        )
        # shown once, in the rebuild's answer; the guest reads it from its new config drive
        return {**self.servers.get_server(ctx, server_id), "admin_pass": admin_pass}

    def _rebuilt_columns(self, ctx: RequestContext, changes: dict[str, Any]) -> dict[str, Any]:
        """The row's new values a rebuild asks for (its key pair looked up by name)."""
        values: dict[str, Any] = {}
        if "key_name" in changes:
            if changes["key_name"] is None:
                values = {"key_name": None, "key_data": None}
            else:
                with self.db.session() as s:
                    key = keypair_of(s, ctx.user_id, changes["key_name"])
                    if key is None:
                        raise BadRequest(f"Invalid key_name provided: {changes['key_name']}.")
                    values = {"key_name": key.name, "key_data": key.public_key}
        for field, column in (
            ("name", "name"),
            ("description", "description"),
            ("user_data", "user_data"),
            ("metadata", "server_metadata"),
            ("access_ip_v4", "access_ip_v4"),
            ("access_ip_v6", "access_ip_v6"),
        ):
            if field in changes:
                values[column] = changes[field]
        return values

    def _rebuild_work(
        self, server_id: str, image: BootImage, running: bool, admin_pass: str
    ) -> Work:
        def work() -> dict[str, Any]:
            self.driver.destroy(server_id)
            self.driver.remove_root_disk(server_id)  # a new clone or overlay below
            for name in ("disk.config", "suspended.state"):
                (self.driver.instance_dir(server_id) / name).unlink(missing_ok=True)
            with self.db.session() as s:
                current = s.get(Server, server_id)
                assert current is not None
                spec = self.guests.prepare_disks(current, image, admin_pass)
            end = MOVES["rebuild"].end(running)
            if not running:  # a stopped server stays stopped
                return {"vm_state": end, "power_state": _power(end), "fault": None}
            self.driver.start(spec)
            return {
                "vm_state": end,
                "power_state": _power(end),
                "fault": None,
                "launched_at": self.core.now(),
            }

        return work

    # ------------------------------------------------------------------ resize

    def resize(self, ctx: RequestContext, server_id: str, flavor_ref: str) -> None:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            flavor = self.flavors.flavor_doc(s, ctx, flavor_ref)
            old = dict(row.flavor)
            if flavor["id"] == old.get("id"):
                raise BadRequest("When resizing, instances must change flavor!")
            volume_backed = bool(row.root_volume_id)
            if not volume_backed and flavor["disk"] and flavor["disk"] < row.disk_gib:
                raise BadRequest(
                    "Resize error: Unable to resize disk down: the new flavor's disk "
                    f"({flavor['disk']} GiB) is smaller than the server's ({row.disk_gib} GiB)."
                )
        new_disk = 0 if volume_backed else max(flavor["disk"], row.disk_gib)
        move = MOVES["resize"]
        row, action_id = self.begin(ctx, server_id, move)
        with self.db.session() as s:  # on the server's own host: the resize runs there
            fits = row.host is not None and self.core.scheduler.claim_in_place(
                s,
                PlacementRequest(
                    server_id=server_id,
                    vcpus=max(flavor["vcpus"], old["vcpus"]),
                    memory_mib=max(flavor["ram"], old["ram"]),
                    disk_gib=new_disk,
                    host=row.host,
                ),
            )
        if not fits:
            self.core.set(server_id, task_state=None)
            self.core.finish_action(action_id, NO_VALID_HOST)
            raise BadRequest(NO_VALID_HOST)
        old_flavor = {**old, "root_gb": row.disk_gib}
        running = row.vm_state != "stopped"
        work = self._resize_work(server_id, flavor, old_flavor, new_disk, volume_backed, running)
        self.run(move, action_id, server_id, work)

    def _resize_work(
        self,
        server_id: str,
        flavor: dict[str, Any],
        old_flavor: dict[str, Any],
        new_disk: int,
        volume_backed: bool,
        running: bool,
    ) -> Work:
        def work() -> dict[str, Any]:
            self.driver.shutdown(server_id, self.settings.shutdown_timeout)
            if not volume_backed:  # a volume keeps its size: only CPU and memory change
                self.driver.keep_root_for_revert(server_id)
                self.driver.resize_root_disk(server_id, new_disk)
            self.core.set(
                server_id, flavor=flavor, old_flavor=old_flavor, task_state="resize_finish"
            )
            if running:
                self.driver.start(self.guests.current_spec(server_id))
            return {
                "vm_state": MOVES["resize"].end(running),
                "power_state": int(PowerState.RUNNING if running else PowerState.SHUTDOWN),
            }

        return work

    def confirm_resize(self, ctx: RequestContext, server_id: str) -> None:
        move = MOVES["confirmResize"]
        row, action_id = self.begin(ctx, server_id, move)
        flavor = row.flavor

        def work() -> dict[str, Any]:
            self.driver.drop_root_revert(server_id)
            running = self.driver.power_state(server_id) == PowerState.RUNNING
            with self.db.session() as s:
                s.execute(
                    update(Server)
                    .where(Server.id == server_id)
                    .values(vcpus=flavor["vcpus"], memory_mib=flavor["ram"], old_flavor=None)
                )
            end = move.end(running)
            return {"vm_state": end, "power_state": _power(end)}

        self.run(move, action_id, server_id, work)

    def revert_resize(self, ctx: RequestContext, server_id: str) -> None:
        move = MOVES["revertResize"]
        row, action_id = self.begin(ctx, server_id, move)
        old = dict(row.old_flavor or row.flavor)
        old_disk = int(old.pop("root_gb", row.disk_gib))

        def work() -> dict[str, Any]:
            running = self.driver.power_state(server_id) == PowerState.RUNNING
            self.driver.shutdown(server_id, self.settings.shutdown_timeout)
            self.driver.revert_root(server_id)
            self.core.update_metered(
                server_id,
                update(Server)
                .where(Server.id == server_id)
                .values(
                    flavor=old,
                    old_flavor=None,
                    vcpus=old["vcpus"],
                    memory_mib=old["ram"],
                    disk_gib=old_disk,
                ),
            )
            if running:
                self.driver.start(self.guests.current_spec(server_id))
            end = move.end(running)
            return {"vm_state": end, "power_state": _power(end)}

        self.run(move, action_id, server_id, work)

    # ------------------------------------------------------------------ the rest

    def lock(self, ctx: RequestContext, server_id: str, locked: bool) -> None:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            row.locked = locked
            row.updated_at = self.core.now()
            action = "lock" if locked else "unlock"
            self.core.record_action(s, ctx, server_id, row.project_id, action)

    def reset_state(self, ctx: RequestContext, server_id: str, vm_state: str) -> None:
        """An admin's os-resetState: the row says `active` or `error` and no task, whatever
        the guest does (an operator's repair after a failure)."""
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            row.vm_state, row.task_state = vm_state, None
            row.updated_at = self.core.now()

    @contextlib.contextmanager
    def disk_writes_held(self, server_id: str) -> Iterator[None]:
        """The server's disk writes held (guest paused, its I/O flushed) for a copy of one
        of its volumes; under the server's lock, so no action starts or resumes it meanwhile.
        """
        with self.core.server_lock(server_id), self.driver.writes_held(server_id):
            yield

    def console_output(self, ctx: RequestContext, server_id: str, length: int | None) -> str:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            if row.vm_state == "building" and row.task_state == "scheduling":
                raise Conflict(f"Instance {server_id} is not ready yet: try again in a moment.")
            if is_agent_host(s, row.host):  # its host's agent sends it
                return console_tails.read(s, server_id, length)
        return self.driver.console_output(server_id, length)
