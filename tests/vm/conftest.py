"""Fixtures for the tiny guest tests: the image, built once per session (and cached on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vm.guest_support import build_tiny_image, missing_requirements


@pytest.fixture(scope="session")
def tiny_image() -> Path:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"tiny guest image unavailable: {reason}")
    return build_tiny_image()
