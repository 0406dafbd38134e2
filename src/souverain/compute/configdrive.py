"""The config drive: an ISO 9660 image labelled `config-2` in the OpenStack metadata layout.

Guests (cloud-init, the tiny test image) read their metadata, user-data and network
configuration from it. This module only builds the file; it knows nothing of servers or QEMU.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pycdlib

VOLUME_LABEL = "config-2"
# "latest" plus one dated version, as Nova writes them; cloud-init accepts either.
VERSIONS = ("latest", "2018-08-27")


def build_config_drive(
    dest: Path,
    meta_data: dict[str, Any],
    user_data: bytes | None,
    network_data: dict[str, Any],
    vendor_data: dict[str, Any] | None = None,
) -> None:
    """Write the config drive to `dest` atomically (temporary file, fsync, rename)."""
    files: list[tuple[str, bytes]] = [
        ("meta_data.json", json.dumps(meta_data).encode()),
        ("network_data.json", json.dumps(network_data).encode()),
        ("vendor_data.json", json.dumps(vendor_data or {}).encode()),
    ]
    if user_data is not None:
        files.append(("user_data", user_data))

    import pycdlib  # here, not at the top: a serving process need not carry it

    iso = pycdlib.PyCdlib()
    # Level 4 (ISO 9660:1999) allows lower-case names and dashes in the ISO names themselves;
    # Rock Ridge and Joliet carry the same names for readers that prefer them.
    iso.new(interchange_level=4, rock_ridge="1.09", joliet=3, vol_ident=VOLUME_LABEL)
    try:
        _add_directory(iso, "/openstack")
        for version in VERSIONS:
            _add_directory(iso, f"/openstack/{version}")
            for name, data in files:
                path = f"/openstack/{version}/{name}"
                iso.add_fp(io.BytesIO(data), len(data), path, rr_name=name, joliet_path=path)
        _write_atomically(iso, dest)
    finally:
        iso.close()


def _add_directory(iso: pycdlib.PyCdlib, path: str) -> None:
    iso.add_directory(path, rr_name=path.rsplit("/", 1)[1], joliet_path=path)


def _write_atomically(iso: pycdlib.PyCdlib, dest: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            iso.write_fp(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
