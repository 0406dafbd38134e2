"""Fixtures for the tiny guest tests: the image, built once per session (and cached on disk)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from souverain.compute.qemu import QemuDriver
from tests.vm.guest_support import TINY_IMAGE, build_tiny_image, missing_requirements


@pytest.fixture(scope="session")
def tiny_image() -> Path:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"tiny guest image unavailable: {reason}")
    return build_tiny_image()


@pytest.fixture(scope="module")
def image() -> Path:
    """The tiny guest image: the cached one, else built now (skipped without the tools)."""
    if TINY_IMAGE.exists():
        return TINY_IMAGE
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"tiny guest image unavailable: {reason}")
    return build_tiny_image()


@pytest.fixture(scope="module")
def driver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QemuDriver]:
    """A QEMU driver on a data dir of the module's own, its guests destroyed after.

    A module sets `DRIVER_DIR` to name that dir (the driver tests want a long path)."""
    name = getattr(request.module, "DRIVER_DIR", "guests")
    qemu = QemuDriver(tmp_path_factory.mktemp(name) / "compute")
    yield qemu
    for server in qemu.running():
        qemu.destroy(server)
    shutil.rmtree(qemu.run_dir, ignore_errors=True)
