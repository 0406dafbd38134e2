"""The `swift` command (python-swiftclient) against Swift: upload (plain, segmented as a
dynamic and as a static large object), list, post, stat, download and delete.

The `swift` of the project's virtual environment (python-swiftclient, a test dependency)
logs in as a customer does: Keystone v3 with the user's name, password and project, then
finds its storage URL in the catalog.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import CLI_TIMEOUT, REGION, Cloud, child_env

pytestmark = pytest.mark.e2e

SWIFT = Path(sys.executable).parent / "swift"


def test_swift_cli_round_trip_with_large_objects(cloud: Cloud, tmp_path: Path) -> None:
    assert SWIFT.exists(), f"{SWIFT} is missing: `make install` installs python-swiftclient"
    tenant = cloud.make_tenant("swiftcli")
    env = child_env(
        OS_AUTH_URL=f"{cloud.auth_url}/v3",
        OS_IDENTITY_API_VERSION="3",
        OS_USERNAME=tenant.user_name,
        OS_PASSWORD=tenant.password,
        OS_PROJECT_NAME=tenant.project_name,
        OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default",
        OS_REGION_NAME=REGION,
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
