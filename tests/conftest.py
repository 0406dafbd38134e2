"""Two session-wide rules.

A run of the suite leaves the host as it found it. The witness: the nftables tables
Souverain names (`souverain-<prefix>...`, three per cloud with a data plane, made beside
its bridge and namespaces) that exist after the last test existed before the first.

Where everything a test needs is present (root and the system packages, as on CI), a
skipped test fails the run: a skip there hides a test that no longer runs. `.ci/run`
sets `TESTS_FORBID_SKIPS=1`; without the variable the rule applies when this host
has root and the tools, and `TESTS_FORBID_SKIPS=0` turns it off. A developer
without root still runs the rest, skips allowed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

# What the skipping tests wait for (scripts/system-packages.txt installs them).
TOOLS = ("qemu-system-x86_64", "qemu-img", "dnsmasq", "nft", "ip", "rclone", "busybox")
_skipped: list[str] = []


def souverain_tables() -> set[str]:
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return {line for line in listed.stdout.splitlines() if " souverain-" in line}


def _is_worker(config: pytest.Config) -> bool:
    """A pytest-xdist worker: the controller alone judges the whole run."""
    return hasattr(config, "workerinput")


_tables_before: set[str] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0 and not _is_worker(session.config):
        _tables_before.update(souverain_tables())


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found() -> Iterator[None]:
    """Without workers, a table left behind fails the run's last test teardown (where it
    shows); with workers, the controller checks once every worker is done (below)."""
    yield
    if os.geteuid() != 0 or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    left = sorted(souverain_tables() - _tables_before)
    assert not left, f"the tests left {len(left)} nftables table(s) behind: {left[:6]}"


def forbid_skips() -> bool:
    flag = os.environ.get("TESTS_FORBID_SKIPS")
    if flag is not None:
        return flag not in ("", "0")
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in TOOLS)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def _tables_left(session: pytest.Session) -> None:
    """With pytest-xdist workers, the controller's check that no table stayed behind."""
    if os.geteuid() != 0 or _is_worker(session.config) or not _uses_workers(session.config):
        return
    left = sorted(souverain_tables() - _tables_before)
    if left:
        print(f"\nthe tests left {len(left)} nftables table(s) behind: {left[:6]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _uses_workers(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _tables_left(session)
    if _is_worker(session.config):
        return  # the controller sees every report, and judges skips once
    if _skipped and forbid_skips():
        names = ", ".join(_skipped[:5]) + (" ..." if len(_skipped) > 5 else "")
        print(f"\n{len(_skipped)} test(s) skipped where none may be: {names}")
        print(
            "Every tool is here (root, system packages): a skip hides a test that no longer runs."
        )
        print("Fix the cause the skip names; TESTS_FORBID_SKIPS=0 allows skips on a dev host.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
