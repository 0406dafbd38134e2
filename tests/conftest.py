"""Two session-wide rules.

A run of the suite leaves the host as it found it. The witnesses (tests/host_hygiene.py):
the nftables tables, links and namespaces Souverain names, and the processes this run
started (dnsmasq, QEMU, `souverain serve`, PostgreSQL, HAProxy, Ceph, told apart from other
people's by a run id in their environment), each compared after the last test with
before the first; the controller judges once under pytest-xdist.

Where everything a test needs is present (root and the system packages, as on CI), a
skipped test fails the run: a skip there hides a test that no longer runs. `.ci/run`
sets `TESTS_FORBID_SKIPS=1`; without the variable the rule applies when this host
has root and the tools, and `TESTS_FORBID_SKIPS=0` turns it off. A developer
without root still runs the rest, skips allowed."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import host_hygiene
from tests.ceph import ceph, ceph_module, ceph_session  # noqa: F401  (the Ceph fixtures, for every suite)
from tests.host_hygiene import RUN_ENV, HostState
from tests.softhsm import softhsm, softhsm_session  # noqa: F401  (SoftHSM2 tokens, for every suite)

# What the skipping tests wait for (scripts/system-packages.txt installs them).
TOOLS = ("qemu-system-x86_64", "qemu-img", "dnsmasq", "nft", "ip", "rclone", "busybox")
_skipped: list[str] = []


SETTLE_SECONDS = 3.0  # a process killed by the last teardown may still be exiting


def _is_worker(config: pytest.Config) -> bool:
    """A pytest-xdist worker: the controller alone judges the whole run."""
    return hasattr(config, "workerinput")


_before: list[HostState] = []
_temp_roots: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    """A fresh run id in the environment, before xdist starts its workers: every process
    the run starts inherits it."""
    if not _is_worker(config):
        os.environ[RUN_ENV] = uuid.uuid4().hex


# Where the long modules are: real guests, servers, clusters and clients first, in-process
# tests last. Workers take whole modules in this order (`--dist loadfile`), so the short
# ones fill the gaps at the end instead of a few long ones making a tail.
FIRST = ("vm", "platform", "e2e", "security", "api", "unit")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _keep_one_backend(config, items)

    def rank(item: pytest.Item) -> int:
        parts = Path(str(item.path)).parts
        place = parts.index("tests") + 1 if "tests" in parts else len(parts)
        top = parts[place] if place < len(parts) else ""
        return FIRST.index(top) if top in FIRST else len(FIRST)

    items[:] = [item for _, item in sorted(enumerate(items), key=lambda p: (rank(p[1]), p[0]))]


def _keep_one_backend(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `one_backend("sqlite")` in a module that runs on every database backend
    runs on that one only (deselected, not skipped, on the others): a long guest test whose
    subject is not the database need not run twice."""
    dropped = []
    for item in items:
        mark = item.get_closest_marker("one_backend")
        callspec = getattr(item, "callspec", None)
        if mark is None or callspec is None:
            continue
        # api and security modules take `database_backend`, platform servers `backend`
        chosen = callspec.params.get("database_backend", callspec.params.get("backend"))
        if chosen is not None and chosen != mark.args[0]:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0 and not _is_worker(session.config):
        _temp_roots.append(session.config._tmp_path_factory.getbasetemp())  # type: ignore[attr-defined]
        _before.append(_host_now())


def _host_now() -> HostState:
    return host_hygiene.snapshot(os.environ[RUN_ENV], _temp_roots)


def _left_behind() -> list[str]:
    """What this run left (after a short settle), with what other people's live clouds
    and labs made meanwhile set aside; empty without root or a first snapshot."""
    if not _before:
        return []
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        after = _host_now()
        left = host_hygiene.left_behind(_before[0], after)
        if left:  # someone else's cloud may have made some of it meanwhile
            left = host_hygiene.left_behind(_before[0], after, _foreign_prefixes())
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _foreign_prefixes() -> set[str]:
    from souverain.server import host_network

    return host_hygiene.foreign_prefixes(
        os.environ[RUN_ENV],
        _temp_roots,
        lambda data_dir: host_network(data_dir, make_run_dir=False).dataplane.prefix,
    )


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found() -> Iterator[None]:
    """Without workers, a leftover fails the run's last test teardown (where it shows);
    with workers, the controller checks once every worker is done (below)."""
    yield
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    left = _left_behind()
    assert not left, host_hygiene.report(left)


def forbid_skips() -> bool:
    flag = os.environ.get("TESTS_FORBID_SKIPS")
    if flag is not None:
        return flag not in ("", "0")
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in TOOLS)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def _host_left(session: pytest.Session) -> None:
    """With pytest-xdist workers, the controller's check that nothing stayed behind."""
    if _is_worker(session.config) or not _uses_workers(session.config):
        return
    left = _left_behind()
    if left:
        print("\n" + host_hygiene.report(left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _uses_workers(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _host_left(session)
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
