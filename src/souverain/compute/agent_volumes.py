"""Volumes of servers on agent hosts. With volumes on RBD every host reaches the same
bytes, so an attach or a detach is the server's host's to do, as Nova's compute does it.

The API moves the volume (available -> attaching, with its device and attachment id; or
in-use -> detaching) and wakes the host. The host's assignment names, on each of its
servers, the volumes its guest should hold (attaching or in-use), and only those: a host
never learns of another host's volumes. The agent plugs or unplugs them and reports what
its guest holds; only that report moves the volume on (attaching -> in-use, detaching ->
available), so a detach ends once the host has let go, and no other server can take the
volume before. Volumes in files on the control plane's disk reach no agent host: 409.

Must not: open a volume itself, or hand a host anything secret (the agent reaches the
cluster with its own `[ceph]` settings).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.compute.core import ComputeCore
from souverain.compute.models import InstanceAction, Server

log = logging.getLogger("souverain.compute")

# The volume statuses whose volume the server's guest should hold.
WANTED = ("attaching", "in-use")
MAX_REPORTED = 64  # volumes one report may name (a guest has at most 24 vdX)


def shared_storage_needed(volume_id: str, host: str | None) -> Conflict:
    return Conflict(
        f"Volume {volume_id} is a file on the control plane's disk, which host {host} cannot "
        'reach: volumes of servers on agent hosts need shared storage (volume.backend = "rbd").'
    )


def refuse_move_with_volumes(core: ComputeCore, server_id: str, move: str) -> None:
    """Moves between agent hosts take local disks only: the destination would open the
    same volumes before the source let go."""
    held = [a["volume_id"] for a in core.volumes.attachments_of(server_id)]
    if held:
        raise Conflict(
            f"Cannot '{move}' instance {server_id} while volumes are attached to it "
            f"({', '.join(held[:4])}): detach them first, then attach them again on arrival."
        )


class AgentVolumes:
    def __init__(self, core: ComputeCore, wake: Callable[[Session, str | None], None]) -> None:
        self.core = core
        self._wake = wake  # agents.bump: the host's watch wakes up
        self.db = core.db
        self.volumes = core.volumes

    # ------------------------------------------------------------------ the API's side

    def attach(
        self, ctx: RequestContext, row: Server, volume_id: str, device: str, delete: bool
    ) -> dict[str, Any]:
        """Reserve the volume for the server (its device and attachment id kept on it) and
        wake the host; the volume is in-use once the host reports its guest holds it."""
        if self.volumes.settings.backend != "rbd":
            self.volumes.get(ctx, volume_id)  # another project's volume stays a 404
            raise shared_storage_needed(volume_id, row.host)
        attachment_id = str(uuid.uuid4())
        handle = self.volumes.reserve(
            ctx,
            volume_id,
            row.id,
            device=device,
            attachment_id=attachment_id,
            delete_on_termination=delete,
        )
        if handle.rbd is None:  # a volume of another backend than the one set now
            self.volumes.unreserve(handle.id)
            raise shared_storage_needed(volume_id, row.host)
        if handle.passphrase is not None:  # a host is handed no secret
            self.volumes.unreserve(handle.id)
            raise Conflict(
                f"Volume {volume_id} is encrypted: its key is not handed to host {row.host}; "
                "attach it to a server of the control plane's own host."
            )
        self._hand_to_host(ctx, row, "attach_volume")
        return {
            "volume_id": handle.id,
            "server_id": row.id,
            "device": device,
            "attachment_id": attachment_id,
            "delete_on_termination": delete,
        }

    def detach(self, ctx: RequestContext, row: Server, volume_id: str) -> None:
        """detaching, and the host woken: available once it reports its guest let go."""
        self.volumes.begin_detach(ctx, volume_id, row.id)
        self._hand_to_host(ctx, row, "detach_volume")

    def _hand_to_host(self, ctx: RequestContext, row: Server, action: str) -> None:
        with self.db.session() as s:
            self.core.record_action(s, ctx, row.id, row.project_id, action)
            self._wake(s, row.host)

    # ------------------------------------------------------------------ the host's side

    def assign(self, servers: list[dict[str, Any]]) -> None:
        """Each server's `volumes`: what its guest should hold, as QEMU opens them (pool
        and image; the serial and device the all-in-one gives)."""
        if not servers or self.volumes is None:  # a compute built without volumes (tests)
            return
        found = self.volumes.volumes_of_servers([str(s["id"]) for s in servers])
        for server in servers:
            server["volumes"], server["releasing"] = [], []
            if not found.get(str(server["id"])):
                continue
            for a in self.volumes.attachments_of(str(server["id"])):
                if a.get("status") == "detaching":  # its host's report ends the detach
                    server["releasing"].append(a["volume_id"])
                rbd = a.get("rbd")
                if a.get("status") not in WANTED or rbd is None:
                    continue
                server["volumes"].append(
                    {
                        "id": a["volume_id"],
                        "device": a.get("device"),
                        "serial": str(a["volume_id"])[:20],
                        "readonly": bool(a.get("readonly")),
                        "rbd": {"pool": rbd.pool, "image": rbd.image},
                    }
                )

    def report(self, host: str, server_id: str, held: list[str], failed: dict[str, str]) -> None:
        """What the guest of a server of `host` holds (and the attaches its host could not
        do): attaching -> in-use when held, detaching -> available when not; a failed
        attach gives the volume back (available), the reason in the instance action."""
        check_held(held, failed)
        with self.db.session() as s:
            row = s.get(Server, server_id) if len(server_id) <= 36 else None
            if row is None or row.deleted or row.host != host:
                raise NotFound(f"Server {server_id} is not assigned to host {host}.")
        for a in self.volumes.attachments_of(server_id):
            volume_id, status = str(a["volume_id"]), a.get("status")
            if status == "attaching" and volume_id in held:
                self.volumes.attached(
                    volume_id,
                    server_id,
                    str(a.get("device")),
                    str(a.get("attachment_id") or uuid.uuid4()),
                    bool(a.get("delete_on_termination")),
                )
                self._finish(server_id, "attach_volume", None)
            elif status == "attaching" and volume_id in failed:
                self.volumes.unreserve(volume_id)
                reason = f"Host {host} could not attach volume {volume_id}: {failed[volume_id]}"
                self._finish(server_id, "attach_volume", reason[:255])
            elif status == "detaching" and volume_id not in held:
                self.volumes.detached(volume_id)
                self._finish(server_id, "detach_volume", None)

    def _finish(self, server_id: str, action: str, error: str | None) -> None:
        with self.db.session() as s:
            action_id = s.scalar(
                select(InstanceAction.id)
                .where(
                    InstanceAction.server_id == server_id,
                    InstanceAction.action == action,
                    InstanceAction.finish_time.is_(None),
                )
                .order_by(InstanceAction.id)
                .limit(1)
            )
        if action_id is not None:
            self.core.finish_action(action_id, error)


def held_report(body: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """A host's volume report (`held`, `failed`), checked."""
    held, failed = body.get("held"), body.get("failed", {})
    check_held(held, failed)
    return [str(v) for v in held or []], {str(k): str(v) for k, v in failed.items()}


def check_held(held: Any, failed: Any) -> None:
    """A report's lists: volume ids (at most MAX_REPORTED), reasons of at most 255 chars."""
    if not isinstance(held, list) or len(held) > MAX_REPORTED:
        raise BadRequest(f"'held' must be a list of at most {MAX_REPORTED} volume ids.")
    if not all(isinstance(v, str) and 0 < len(v) <= 36 for v in held):
        raise BadRequest("'held' must name volumes by their ids.")
    if not isinstance(failed, dict) or len(failed) > MAX_REPORTED:
        raise BadRequest(f"'failed' must map at most {MAX_REPORTED} volume ids to reasons.")
    for key, reason in failed.items():
        if not 0 < len(key) <= 36 or not isinstance(reason, str) or len(reason) > 255:
            raise BadRequest("'failed' maps volume ids to reasons of at most 255 characters.")
