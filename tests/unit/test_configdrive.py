"""The config drive reads back as an OpenStack `config-2` ISO with the JSON we gave it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pycdlib

from souverain.compute.configdrive import build_config_drive

HOSTILE_NAME = "web \"prod\"\n'01' ünïcødé ☃ </script>"


def read_file(iso: pycdlib.PyCdlib, path: str, *, facade: str) -> bytes:
    out = io.BytesIO()
    kwargs = {"rr_path": path} if facade == "rr" else {"joliet_path": path}
    iso.get_file_from_iso_fp(out, **kwargs)
    return out.getvalue()


def open_iso(path: Path) -> pycdlib.PyCdlib:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    return iso


def test_config_drive_has_openstack_layout_label_and_json(tmp_path: Path) -> None:
    dest = tmp_path / "disk.config"
    meta = {"uuid": "1d3a8f6e-0000-4000-8000-000000000001", "name": HOSTILE_NAME}
    network = {"links": [], "networks": [], "services": []}
    build_config_drive(dest, meta, b"#!/bin/sh\necho hi\n", network, {"k": "v"})

    iso = open_iso(dest)
    try:
        assert iso.pvd.volume_identifier.rstrip(b" ") == b"config-2"
        assert iso.has_rock_ridge() and iso.has_joliet()
        for version in ("latest", "2018-08-27"):
            base = f"/openstack/{version}"
            for facade in ("rr", "joliet"):
                raw = read_file(iso, f"{base}/meta_data.json", facade=facade)
                assert raw == json.dumps(meta).encode()
                assert b"\n" not in raw
                assert json.loads(raw) == meta
                assert read_file(iso, f"{base}/user_data", facade=facade).endswith(b"echo hi\n")
                assert json.loads(read_file(iso, f"{base}/network_data.json", facade=facade)) == (
                    network
                )
                assert json.loads(read_file(iso, f"{base}/vendor_data.json", facade=facade)) == {
                    "k": "v"
                }
    finally:
        iso.close()


def test_user_data_file_is_absent_when_not_given(tmp_path: Path) -> None:
    dest = tmp_path / "disk.config"
    build_config_drive(dest, {"uuid": "x"}, None, {})
    iso = open_iso(dest)
    try:
        names = {
            child.rock_ridge.name().decode()
            for child in iso.list_children(rr_path="/openstack/latest")
            if child.rock_ridge is not None
        }
        assert {"meta_data.json", "network_data.json", "vendor_data.json"} <= names
        assert "user_data" not in names
        assert json.loads(read_file(iso, "/openstack/latest/vendor_data.json", facade="rr")) == {}
    finally:
        iso.close()


def test_rewrite_replaces_the_file_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "disk.config"
    build_config_drive(dest, {"v": 1}, None, {})
    build_config_drive(dest, {"v": 2}, b"x", {})
    assert [p.name for p in tmp_path.iterdir()] == ["disk.config"]
    iso = open_iso(dest)
    try:
        assert json.loads(read_file(iso, "/openstack/latest/meta_data.json", facade="rr")) == {
            "v": 2
        }
    finally:
        iso.close()
