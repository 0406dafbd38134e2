"""Boot the tiny guest image under a bare QEMU and watch its serial console.

For tests only (tests/vm now, tests/e2e later): builds the image with scripts/build-tiny-image,
writes OpenStack config drives, starts QEMU with TCG and speaks just enough QMP to reset and
power the guest off. It must not depend on Souverain's own compute code: it is the reference
those tests are checked against.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_IMAGE = REPO_ROOT / "build" / "tiny" / "tiny.qcow2"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-tiny-image"
MARKER = "souverain-guest: "


def missing_requirements() -> str | None:
    """Why the tiny guest cannot be built or booted here, or None when it can."""
    for tool in ("qemu-system-x86_64", "qemu-img", "apt-get", "mkfs.vfat", "mcopy", "syslinux"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run scripts/install-system-packages)"
    if os.geteuid() != 0:
        return "building the tiny guest image needs root (apt-get download, dpkg -x)"
    return None


def build_tiny_image(output: Path = TINY_IMAGE) -> Path:
    """The tiny image at `output`, built if missing or stale (the script keeps its own stamp)."""
    done = subprocess.run(
        [str(BUILD_SCRIPT), "--output", str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/build-tiny-image failed:\n{done.stderr}")
    return output


def write_config_drive(
    path: Path,
    *,
    meta_data: dict[str, Any],
    user_data: str | None = None,
    network_data: dict[str, Any] | None = None,
) -> Path:
    """An OpenStack config drive: iso9660 labelled config-2, with Joliet and Rock Ridge names."""
    import pycdlib

    files: dict[str, bytes] = {"meta_data.json": json.dumps(meta_data).encode()}
    if user_data is not None:
        files["user_data"] = user_data.encode()
    if network_data is not None:
        files["network_data.json"] = json.dumps(network_data).encode()
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="config-2")
    iso.add_directory("/OPENSTAC", rr_name="openstack", joliet_path="/openstack")
    iso.add_directory("/OPENSTAC/LATEST", rr_name="latest", joliet_path="/openstack/latest")
    for index, (name, data) in enumerate(sorted(files.items())):
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"/OPENSTAC/LATEST/FILE{index}.;1",
            rr_name=name,
            joliet_path=f"/openstack/latest/{name}",
        )
    iso.write(str(path))
    iso.close()
    return path


class Qmp:
    """Just enough of the QEMU Machine Protocol: one command at a time, events skipped."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.connect(str(path))
                break
            except OSError:
                self._sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._sock.settimeout(timeout)
        self._file = self._sock.makefile("rwb")
        json.loads(self._file.readline())  # the greeting
        self.execute("qmp_capabilities")

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._file.write(json.dumps(request).encode() + b"\n")
        self._file.flush()
        while True:
            line = self._file.readline()
            if not line:
                raise ConnectionError(f"QMP closed while waiting for {command}")
            reply = json.loads(line)
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")
            if "return" in reply:
                return reply["return"]

    def close(self) -> None:
        self._file.close()
        self._sock.close()


@dataclass
class Guest:
    """A running QEMU: its serial log, its QMP socket and its overlay disk."""

    process: subprocess.Popen[bytes]
    serial_log: Path
    qmp_socket: Path
    disk: Path
    _qmp: Qmp | None = field(default=None, repr=False)

    def serial(self) -> str:
        return self.serial_log.read_bytes().decode(errors="replace").replace("\r\n", "\n")

    def markers(self, start: int = 0) -> list[str]:
        """The souverain-guest markers printed since `start` (an offset into serial())."""
        return [
            line.split(MARKER, 1)[1]
            for line in self.serial()[start:].splitlines()
            if MARKER in line
        ]

    def wait_for(self, text: str, *, timeout: float = 30.0, start: int = 0) -> int:
        """Wait until `text` appears in the serial log after `start`; the offset past it."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.serial()
            found = output.find(text, start)
            if found >= 0:
                return found + len(text)
            if self.process.poll() is not None:
                raise AssertionError(f"QEMU exited before {text!r}; console:\n{output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout} s; console:\n{output}")
            time.sleep(0.05)

    def qmp(self, command: str, **arguments: Any) -> Any:
        if self._qmp is None:
            self._qmp = Qmp(self.qmp_socket)
        return self._qmp.execute(command, **arguments)

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class Nic:
    """A virtio NIC: on QEMU's user network (with DHCP) or alone on a hub (no DHCP)."""

    mac: str
    dhcp: bool = True
    restrict: bool = True  # no route to the outside; QEMU's DHCP then offers no router or DNS


@contextmanager
def boot(
    image: Path,
    *,
    disk_size: str = "1G",
    config_drive: Path | None = None,
    nics: tuple[Nic, ...] = (Nic("52:54:00:12:34:56"),),
    memory_mib: int = 128,
) -> Iterator[Guest]:
    """Boot `image` through a qcow2 overlay of `disk_size`, as the cloud does; stop on exit."""
    # Short paths: a unix socket path must fit in 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="tiny-", dir="/tmp"))
    overlay = workdir / "disk.qcow2"
    create = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2"]
    subprocess.run([*create, str(overlay), disk_size], check=True)
    serial_log = workdir / "serial.log"
    qmp_socket = workdir / "qmp.sock"
    args = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(memory_mib), "-nodefaults"]
    args += ["-display", "none", "-serial", f"file:{serial_log}"]
    args += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    args += ["-drive", f"file={overlay},format=qcow2,if=none,id=root"]
    args += ["-device", "virtio-blk-pci,drive=root"]
    if config_drive is not None:
        args += ["-drive", f"file={config_drive},format=raw,if=none,id=config,readonly=on"]
        args += ["-device", "virtio-blk-pci,drive=config"]
    for index, nic in enumerate(nics):
        if nic.dhcp:
            restrict = "on" if nic.restrict else "off"
            args += ["-netdev", f"user,id=n{index},restrict={restrict}"]
        else:
            args += ["-netdev", f"hubport,id=n{index},hubid={index}"]
        args += ["-device", f"virtio-net-pci,netdev=n{index},mac={nic.mac}"]
    serial_log.touch()
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    guest = Guest(process=process, serial_log=serial_log, qmp_socket=qmp_socket, disk=overlay)
    try:
        yield guest
    finally:
        guest.stop()
        shutil.rmtree(workdir, ignore_errors=True)
