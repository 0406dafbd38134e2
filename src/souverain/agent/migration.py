"""The agent's halves of a move between hosts (compute/migrations.py says the steps): what
this host does when its assignment names it the source or the destination of a migration,
and the report that moves the migration on.

Live: the destination starts QEMU waiting for the guest (qemu_migration.prepare_incoming,
on this host's underlay address, ports it picks), the source mirrors the disk and sends the
memory (send_guest), the destination takes over (finish_incoming). Cold: the source stops
the guest and exports its root disk read-only with qemu-nbd on its underlay address (one
client, then qemu-nbd exits), the destination pulls it with `qemu-img convert -B` onto its
own copy of the image, so only what the guest changed crosses the network, as in the live
path's mirror (sync "top"); there is no shared storage to lean on. With root disks on RBD
(`compute.disk_backend = "rbd"` on both hosts) the disk is shared: live, only memory moves
(no NBD export, no mirror); cold, the destination opens the same RBD image (no copy).

Each step is done once per process and reported; an agent restarted mid-way does its step
again from the start (the destination first removes what an earlier try left), or the
other side's failure report ends the move. Whatever fails is reported as `failed`; the
control plane then gives the server back to its source. Must not: decide anything the
control plane decides (where, when), nor touch a guest it is not assigned.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from souverain.agent.client import ControlPlaneError, InternalClient
from souverain.agent.qemu_host import QemuHostDriver
from souverain.agent.runner import DriverFailure
from souverain.compute import qemu_migration as moving
from souverain.compute.configdrive import build_config_drive
from souverain.compute.qemu import DriverError, PowerState
from souverain.compute.qemu_monitor import QEMU_IMG_COPY_TIMEOUT

log = logging.getLogger("souverain.agent")

GIB = 1024**3
CONSOLE_MAX = 64 * 1024
EXPORT_PID = "nbd-export.pid"
Half = Callable[["MigrationHalves", dict[str, Any], dict[str, Any]], dict[str, Any]]


class MigrationHalves:
    def __init__(self, host: QemuHostDriver, client: InternalClient, address: str | None) -> None:
        self.host = host
        self.qemu = host.qemu
        self.client = client
        self.address = address
        self._done: set[tuple[int, str]] = set()
        self._sent: set[str] = set()  # guests this process sent away live, paused here
        self._sending: dict[str, threading.Thread] = {}  # live sends under way
        self._forced: set[str] = set()  # sends told to complete (the guest paused)

    def handle(self, server: dict[str, Any]) -> bool:
        """Do this host's part of the server's move, if it has one; True when the move
        decides what becomes of the guest here (the usual converge must not run)."""
        server_id = str(server["id"])
        mig = server.get("migration")
        if not isinstance(mig, dict) or server.get("desired") == "absent":  # deleted: goes
            self._settle(server_id)
            return False
        role, status = mig.get("role"), mig.get("status")
        if status == "finished":  # cold, not yet confirmed: the source keeps its copy
            if role == "source":
                self._stop_export(server_id)
            return role == "source"
        if role == "source" and status == "running":
            self._force_if_asked(server_id, mig)
        half = HALVES.get((str(mig.get("type")), str(role), str(status)))
        key = (int(mig["id"]), str(status))
        if half is None or key in self._done:
            return True  # the other side's turn
        step, work, background = half
        if background:  # the copy takes a while: the host's other guests must not wait
            self._done.add(key)
            thread = threading.Thread(
                target=self._take, args=(step, work, server, mig, 3), daemon=True
            )
            self._sending[server_id] = thread
            thread.start()
            return True
        self._take(step, work, server, mig, 1)
        self._done.add(key)
        return True

    def _take(
        self, step: str, work: Half, server: dict[str, Any], mig: dict[str, Any], tries: int
    ) -> None:
        """Do one half and report it (or its failure); `tries` reports before giving up
        (the agent's loop retries its own on its next watch)."""
        try:
            fields = work(self, server, mig)
        except (
            DriverError, DriverFailure, OSError, ControlPlaneError, subprocess.SubprocessError
        ) as exc:  # fmt: skip
            log.warning("server %s: migration %s failed here: %s", server["id"], mig["id"], exc)
            step, fields = "failed", {"message": str(exc)[:1000]}
        finally:
            self._sending.pop(str(server["id"]), None)
        for attempt in range(1, tries + 1):
            try:
                self.client.report_migration(int(mig["id"]), step, fields)
                return
            except ControlPlaneError as exc:
                if tries == 1:
                    raise  # in the agent's loop: its next watch does the step again
                if attempt == tries:  # beside it: the other side's report or an abort ends it
                    log.warning("migration %s: %s not reported: %s", mig["id"], step, exc)
                    return
                time.sleep(2.0 * attempt)

    def _force_if_asked(self, server_id: str, mig: dict[str, Any]) -> None:
        """force_complete: pause the guest while it is sent, so the last memory pass
        catches up with it; the destination lets it run again."""
        asked = bool((mig.get("endpoint") or {}).get("force_complete"))
        if asked and server_id in self._sending and server_id not in self._forced:
            self._forced.add(server_id)
            with contextlib.suppress(DriverError):
                self.qemu._qmp(server_id, "stop")

    def _settle(self, server_id: str) -> None:
        """No move any more: an export left behind stops, and a guest this process sent
        away but that came back (the destination failed to take over) runs again."""
        self._stop_export(server_id)
        if server_id in self._sent:
            self._sent.discard(server_id)
            with contextlib.suppress(DriverError):
                moving.rollback_source(self.qemu, server_id, was_running=True)

    def _address(self) -> str:
        if not self.address:
            raise DriverFailure(
                "this agent has no underlay address (agent.address): set it so the other "
                "host can reach the guest's disk and memory"
            )
        return self.address

    def _free_port(self) -> int:
        family = socket.AF_INET6 if ":" in self._address() else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((self._address(), 0))
            return int(probe.getsockname()[1])

    # ------------------------------------------------------------------ live

    def prepare(self, server: dict[str, Any], mig: dict[str, Any]) -> dict[str, Any]:
        server_id = str(server["id"])
        moving.abort_incoming(self.qemu, server_id)  # whatever an earlier try left
        spec = replace(self.host._spec(server), config_drive=None)
        drive = self._config_drive(mig)
        if drive is not None:
            spec = replace(spec, config_drive=self.qemu.instance_dir(server_id) / "disk.config")
        address = self._address()
        stream = self._free_port()
        if self.qemu.rbd_disks is not None:  # the root disk is shared: memory only
            base, base_format, size, nbd = Path("/"), "raw", 0, 0
        else:
            base, base_format = self._base(server, mig)
            size = max(int(server["disk_gib"]) * GIB, _virtual_size(self.qemu, base, base_format))
            nbd = self._free_port()
        moving.prepare_incoming(
            self.qemu, spec, base=base, base_format=base_format, disk_size=size,
            config_drive=drive, slots={}, nbd=moving.Endpoint(address, nbd) if nbd else None,
            stream=moving.Endpoint(address, stream),
        )  # fmt: skip
        return {"nbd_port": nbd, "stream_port": stream}

    def send(self, server: dict[str, Any], mig: dict[str, Any]) -> dict[str, Any]:
        server_id = str(server["id"])
        end = _endpoint(mig)
        address = str(end["address"])
        nbd = int(end.get("nbd_port") or 0)  # 0: the destination shares the RBD disk
        if not nbd and self.qemu.rbd_disks is None:
            raise DriverFailure("the destination has no disk export: is it on RBD alone?")
        incoming = moving.IncomingMigration(
            self.host._spec(server),
            moving.Endpoint(address, nbd) if nbd else None,
            moving.Endpoint(address, int(end["stream_port"])),
        )
        moving.send_guest(self.qemu, server_id, incoming)
        self._sent.add(server_id)
        log_file = self.qemu._console(server_id)
        tail = log_file.read_bytes()[-CONSOLE_MAX:] if log_file.exists() else b""
        return {"console": base64.b64encode(tail).decode()}

    def finish(self, server: dict[str, Any], mig: dict[str, Any]) -> dict[str, Any]:
        server_id = str(server["id"])
        if self.qemu.power_state(server_id) == PowerState.RUNNING:
            return {"running": True}  # taken over before a restart cut the report short
        try:
            history = base64.b64decode(str(_endpoint(mig).get("console", "")), validate=True)
        except (binascii.Error, ValueError):
            history = b""
        moving.finish_incoming(self.qemu, server_id, run=True, console_history=history)
        return {"running": True}

    # ------------------------------------------------------------------ cold

    def export(self, server: dict[str, Any], mig: dict[str, Any]) -> dict[str, Any]:
        server_id = str(server["id"])
        timeout = self.host.settings.shutdown_timeout
        if self.qemu.pid(server_id) is not None and not self.qemu.shutdown(server_id, timeout):
            self.qemu.destroy(server_id)
        self._stop_export(server_id)
        if self.qemu.rbd_disks is not None:
            return {"port": 0}  # the disk is shared: the destination opens it, no export
        port = self._free_port()
        directory = self.qemu.instance_dir(server_id)
        subprocess.run(  # a fixed argv, no shell; --fork returns once it listens
            [
                "qemu-nbd", "--read-only", "--fork", "--format", "qcow2",
                "--bind", self._address(), "--port", str(port),
                "--export-name", moving.NBD_EXPORT,
                "--pid-file", str(directory / EXPORT_PID), str(directory / "disk.qcow2"),
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return {"port": port}

    def pull(self, server: dict[str, Any], mig: dict[str, Any]) -> dict[str, Any]:
        server_id = str(server["id"])
        moving.abort_incoming(self.qemu, server_id)
        directory = self.qemu.instance_dir(server_id)
        if self.qemu.rbd_disks is not None:  # the same RBD image: nothing to copy
            self.qemu.rbd_disks.adopt(directory, server_id)
        else:
            self._pull_disk(server, mig, directory)
        drive = self._config_drive(mig)
        if drive is not None:
            (directory / "disk.config").write_bytes(drive)
        running = server.get("desired") == "running"
        if running:
            self.qemu.start(self.host._spec(server))
        return {"running": running}

    def _pull_disk(self, server: dict[str, Any], mig: dict[str, Any], directory: Path) -> None:
        """The source's overlay, read over NBD onto this host's copy of the image."""
        base, base_format = self._base(server, mig)
        end = _endpoint(mig)
        host = f"[{end['address']}]" if ":" in str(end["address"]) else str(end["address"])
        source = f"nbd://{host}:{int(end['port'])}/{moving.NBD_EXPORT}"
        directory.mkdir(parents=True, exist_ok=True)
        tmp, disk = directory / ".disk.qcow2.tmp", directory / "disk.qcow2"
        self.qemu._qemu_img(
            "convert", "-f", "raw", "-O", "qcow2", "-B", str(base.resolve()), "-F", base_format,
            source, str(tmp), timeout=QEMU_IMG_COPY_TIMEOUT,
        )  # fmt: skip
        os.replace(tmp, disk)

    def _stop_export(self, server_id: str) -> None:
        pidfile = self.qemu.instance_dir(server_id) / EXPORT_PID
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if _is_qemu_nbd(pid):
                os.kill(pid, signal.SIGTERM)
        pidfile.unlink(missing_ok=True)

    # ------------------------------------------------------------------ what both need

    def _base(self, server: dict[str, Any], mig: dict[str, Any]) -> tuple[Path, str]:
        build = mig.get("build") or {}
        base_format = str(build.get("disk_format") or "")
        if base_format not in moving.DISK_FORMATS:
            raise DriverFailure("only servers booted from a raw or qcow2 image move between hosts")
        image_id = str(server["image_id"])
        return self.qemu.cache_base_image(image_id, self.host._image(image_id)), base_format

    @staticmethod
    def _config_drive(mig: dict[str, Any]) -> bytes | None:
        """The server's config drive made again from its documents (the same ones)."""
        build = mig.get("build") or {}
        if not build.get("meta_data"):
            return None
        user_data = None
        if build.get("user_data"):
            try:
                user_data = base64.b64decode(build["user_data"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise DriverFailure("its user data is not base64") from exc
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "disk.config"
            build_config_drive(path, build["meta_data"], user_data, build["network_data"])
            return path.read_bytes()


def _endpoint(mig: dict[str, Any]) -> dict[str, Any]:
    end = mig.get("endpoint")
    if not isinstance(end, dict) or not end.get("address"):
        raise DriverFailure("the control plane named no endpoint for the other host")
    return end


def _virtual_size(qemu: Any, image: Path, fmt: str) -> int:
    return int(qemu._img_info(image, fmt)["virtual-size"])


def _is_qemu_nbd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "qemu-nbd"
    except OSError:
        return False


# (migration type, this host's role, the move's status) -> the step it reports, the work,
# whether it runs beside the agent's loop (it takes long) or in it
HALVES: dict[tuple[str, str, str], tuple[str, Half, bool]] = {
    ("live-migration", "destination", "preparing"): ("listening", MigrationHalves.prepare, False),
    ("live-migration", "source", "running"): ("sent", MigrationHalves.send, True),
    ("live-migration", "destination", "post-migrating"): (
        "arrived",
        MigrationHalves.finish,
        False,
    ),
    ("migration", "source", "migrating"): ("exported", MigrationHalves.export, False),
    ("migration", "destination", "post-migrating"): ("arrived", MigrationHalves.pull, False),
}
