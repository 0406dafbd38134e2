"""An encrypted (LUKS) volume in a real guest: hot-plugged with its passphrase as a QMP
secret, the guest writes a known plaintext and reads it back; the guest restarted with the
volume on its command line (the passphrase over a pipe) reads it again. The passphrase is
in no QEMU command line, and neither it nor the plaintext is anywhere in the data dirs,
while `qemu-img info` shows the file's LUKS encryption.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from souverain.compute.qemu import Disk, GuestSpec, QemuDriver
from souverain.volume.backend import VolumeBackend
from souverain.volume.luks import LuksFiles, LuksSpec, Passphrase

MIB = 1024**2
# The guest writes this line, repeated over 1 MiB; it is built from two halves in the guest
# so that the user-data on the config drive does not hold it whole.
PLAINTEXT_LINE = b"souverain-luks known-plaintext\n"
PATTERN = (PLAINTEXT_LINE * (MIB // len(PLAINTEXT_LINE) + 1))[:MIB]
PATTERN_MD5 = hashlib.md5(PATTERN).hexdigest()

USER_DATA = b"""#!/bin/sh
a=souverain-luks
b=known-plaintext
yes "$a $b" | head -c 1048576 > /tmp/pattern
want=$(md5sum < /tmp/pattern | cut -d ' ' -f 1)
(
had=""
while true; do
    if [ -b /dev/vdc ] && [ -z "$had" ]; then
        had=1
        got=$(dd if=/dev/vdc bs=65536 count=16 2>/dev/null | md5sum | cut -d ' ' -f 1)
        how=read
        if [ "$got" != "$want" ]; then
            dd if=/tmp/pattern of=/dev/vdc bs=65536 conv=fsync 2>/dev/null
            echo 3 > /proc/sys/vm/drop_caches
            got=$(dd if=/dev/vdc bs=65536 count=16 2>/dev/null | md5sum | cut -d ' ' -f 1)
            how=wrote
        fi
        echo "luks vdc md5=$got $how"
    elif [ ! -b /dev/vdc ] && [ -n "$had" ]; then
        had=""
        echo "luks vdc gone"
    fi
    sleep 0.2
done
) &
exit 0
"""
NETWORK_DATA = {"links": [], "networks": [], "services": []}
VOLUME_ID = "5ec0de00-1111-4222-8333-944455556666"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/qemu-system-x86_64").exists(),
    reason="needs root and qemu-system-x86_64 (scripts/install-system-packages)",
)

DRIVER_DIR = "luks"


def wait_console(driver: QemuDriver, server: str, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in driver.console_output(server):
        if time.monotonic() > deadline:
            tail = driver.console_output(server)[-2000:]
            raise AssertionError(f"no {text!r} on the console; it says:\n{tail}")
        time.sleep(0.2)


def files_holding(root: Path, needle: bytes) -> list[Path]:
    """Every file under `root` whose bytes hold `needle` (read in overlapping chunks)."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        tail = b""
        with path.open("rb") as f:
            while chunk := f.read(4 * MIB):
                if needle in tail + chunk:
                    found.append(path)
                    break
                tail = chunk[-len(needle) :]
    return found


def command_line(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_a_guest_writes_and_reads_an_encrypted_volume_the_disk_holds_ciphertext(
    driver: QemuDriver, image: Path, tmp_path: Path
) -> None:
    volumes = VolumeBackend(tmp_path / "volumes")
    volumes.setup()
    key = os.urandom(32)
    passphrase = Passphrase.of_key(key)
    LuksFiles(volumes).make_blank(VOLUME_ID, 1, LuksSpec(256), passphrase)
    path = volumes.volume_path(VOLUME_ID)
    disk = Disk(id=f"vol-{VOLUME_ID}", path=path, serial=VOLUME_ID[:20], passphrase=key.hex())
    assert key.hex() not in repr(disk) and key.hex() not in repr(passphrase)

    server = str(uuid.uuid4())
    base = driver.cache_base_image("tiny", image)
    meta = {"uuid": server, "name": "luks", "hostname": "luks"}
    spec = GuestSpec(
        uuid=server,
        name="luks guest",
        vcpus=1,
        memory_mib=256,
        disk=driver.create_root_disk(server, base, "qcow2", 1),
        config_drive=driver.write_config_drive(server, meta, USER_DATA, NETWORK_DATA),
        disks=(disk,),
    )
    # at boot: the volume on the command line, its passphrase read from an inherited pipe
    pid = driver.start(spec)
    cmdline = command_line(pid)
    assert key.hex().encode() not in cmdline
    assert any(a.startswith(b"secret,id=") and b"file=/dev/fd/" in a for a in cmdline.split(b"\0"))
    wait_console(driver, server, f"luks vdc md5={PATTERN_MD5} wrote")

    # hot-plugged again: the passphrase reaches QEMU as a QMP secret object; the guest reads
    # back through QEMU's decryption what it wrote
    assert driver.detach_disk(server, disk.id)
    wait_console(driver, server, "luks vdc gone")
    driver.attach_disk(server, disk)
    wait_console(driver, server, f"luks vdc md5={PATTERN_MD5} read")
    assert key.hex().encode() not in command_line(pid)
    driver.destroy(server)

    # what reached the disk: LUKS, and neither the plaintext nor the passphrase anywhere
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(path)], capture_output=True, check=True
    )
    encrypt = json.loads(info.stdout)["format-specific"]["data"]["encrypt"]
    assert encrypt["format"] == "luks" and encrypt["cipher-mode"] == "xts"
    for root in (volumes.root, driver.root):
        assert files_holding(root, PLAINTEXT_LINE * 4) == [], root
        assert files_holding(root, key.hex().encode()) == [], root
        assert files_holding(root, key) == [], root
