"""The `swift` command (python-swiftclient) against Swift: upload (plain, segmented as a
dynamic and as a static large object), list, post, stat, download and delete.

python-swiftclient is not in the project's venv; Tempest's venv (build/tempest-venv, made
by `make conformance`) has it, and this test runs that copy by its path. It logs in with
a token and the storage URL, as `swift` does once it has asked Keystone.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import CLI_TIMEOUT, Cloud, child_env

pytestmark = pytest.mark.e2e

SWIFT = Path(__file__).resolve().parents[2] / "build" / "tempest-venv" / "bin" / "swift"


def test_swift_cli_round_trip_with_large_objects(cloud: Cloud, tmp_path: Path) -> None:
    assert SWIFT.exists(), f"{SWIFT} is made by `make conformance` (Tempest's venv)"
    tenant = cloud.make_tenant("swiftcli")
    env = child_env(
        OS_AUTH_TOKEN=cloud.token_for(tenant),
        OS_STORAGE_URL=f"{cloud.base_url}/object-storage/v1/AUTH_{tenant.project_id}",
    )
    big = os.urandom(2_500_000)
    (tmp_path / "a.txt").write_text("hello swift cli\n")
    (tmp_path / "big.bin").write_bytes(big)

    def swift(*args: str) -> str:
        result = subprocess.run(
            [str(SWIFT), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert result.returncode == 0, f"swift {' '.join(args)}\n{result.stderr}"
        return result.stdout

    swift("upload", "docs", "a.txt")
    swift("upload", "--segment-size", "1000000", "docs", "big.bin")
    swift("upload", "--use-slo", "--segment-size", "1000000", "slo", "big.bin")
    assert swift("list").split() == ["docs", "docs_segments", "slo", "slo_segments"]
    assert swift("list", "docs").split() == ["a.txt", "big.bin"]
    swift("post", "-m", "color:blue", "docs", "a.txt")
    assert "Meta Color: blue" in swift("stat", "docs", "a.txt")
    assert "Objects: 2" in swift("stat", "docs")
    swift("download", "docs", "big.bin", "-o", "dlo.bin")
    swift("download", "slo", "big.bin", "-o", "slo.bin")
    assert (tmp_path / "dlo.bin").read_bytes() == big
    assert (tmp_path / "slo.bin").read_bytes() == big
    swift("delete", "slo", "big.bin")
    assert swift("list", "slo_segments").split() == []
    swift("delete", "--all")
    assert swift("list").split() == []
