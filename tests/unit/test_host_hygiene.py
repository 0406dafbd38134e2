"""The end-of-run host check's comparison (tests/host_hygiene.py): what counts as left
behind by this run, and what belongs to someone else on a shared machine."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.host_hygiene import (
    RUN_ENV,
    HostState,
    Process,
    _is_ours,
    foreign_prefixes,
    is_watched,
    left_behind,
    link_prefix,
    namespace_prefix,
    prefixes_used,
    report,
    snapshot,
)

NET = "0b7c9a52-5d8e-4f8e-9d1e-2a7c1f0e9b11"


def proc(pid: int, *argv: str, ours: bool = True, started: int = 100) -> Process:
    return Process(pid, started, tuple(argv), ours)


def state(**parts: object) -> HostState:
    processes = parts.pop("processes", [])
    built = HostState(**parts)  # type: ignore[arg-type]
    built.processes = {p.key: p for p in processes}  # type: ignore[attr-defined]
    return built


def test_the_names_souverain_gives_links_and_namespaces_are_recognised() -> None:
    assert link_prefix("k3x9b0a1b2c3d4e") == "k3x9"  # bridge of cloud k3x9
    assert link_prefix("k3x9t0a1b2c3d4e") == "k3x9"  # tap
    assert link_prefix("k3x9q0a1b2c3d4e") == "k3x9"  # router interface veth
    assert link_prefix("eth0") is None
    assert link_prefix("vethf0a1b2c3d4e") is None  # 15 characters, not ours
    assert namespace_prefix(f"k3x9dhcp-{NET}") == "k3x9"
    assert namespace_prefix(f"k3x9r-{NET}") == "k3x9"
    assert namespace_prefix("cni-1234") is None


def test_watched_processes_are_the_ones_a_cloud_or_its_tests_start() -> None:
    assert is_watched(("dnsmasq", "--conf-file=/dev/null"))
    assert is_watched(("/usr/bin/qemu-system-x86_64", "-name", "x"))
    assert is_watched(("/usr/lib/postgresql/15/bin/postgres", "-D", "/tmp/x"))
    assert is_watched(("haproxy", "-W", "-f", "/tmp/x/haproxy.cfg"))
    assert is_watched(("ceph-osd", "-f", "-c", "/tmp/x/ceph.conf", "-i", "1"))
    assert is_watched(("/usr/bin/ceph-mon", "-f", "-c", "/tmp/x/ceph.conf", "-i", "a"))
    assert is_watched(("/venv/bin/python", "/venv/bin/souverain", "serve", "--data-dir", "/d"))
    assert not is_watched(("/venv/bin/python", "-m", "pytest", "tests"))
    assert not is_watched(())


def test_a_host_as_it_was_found_has_nothing_left() -> None:
    before = state(tables={"table inet souverain-abcd-fw"}, links={"k3x9b0a1b2c3d4e"})
    assert left_behind(before, before) == []


def test_everything_the_run_added_is_named_by_kind() -> None:
    before = state()
    after = state(
        tables={"table inet souverain-k3x9-fw"},
        links={"k3x9b0a1b2c3d4e", "k3x9t0a1b2c3d4f"},
        namespaces={f"k3x9dhcp-{NET}"},
        processes=[proc(42, "dnsmasq", "--pid-file=/run/souverain-net/x/dnsmasq.pid")],
    )
    left = left_behind(before, after)
    assert [line.split(":")[0] for line in left] == [
        "1 nftables tables",
        "2 links",
        "1 namespaces",
        "1 processes",
    ]
    assert "souverain host decommission" in report(left)


def test_other_peoples_processes_and_live_clouds_are_not_ours_to_report() -> None:
    after = state(
        links={"zz99b0a1b2c3d4e"},
        namespaces={f"zz99r-{NET}"},
        processes=[
            proc(7, "qemu-system-x86_64", "-name", "theirs", ours=False),
            proc(8, "souverain", "serve", "--data-dir", "/home/dev/cloud", ours=False),
        ],
    )
    assert left_behind(state(), after, foreign_prefixes={"zz99"}) == []
    # without knowing the live cloud, its kernel objects would count; its processes never
    assert [line.split(":")[0] for line in left_behind(state(), after)] == [
        "1 links",
        "1 namespaces",
    ]


def test_a_cloud_present_before_the_run_may_grow_during_it() -> None:
    before = state(links={"zz99b0a1b2c3d4e"})
    after = state(links={"zz99b0a1b2c3d4e", "zz99t0a1b2c3d4f"})
    assert left_behind(before, after) == []


def test_a_pid_reused_by_a_process_of_this_run_still_counts() -> None:
    before = state(processes=[proc(42, "dnsmasq", ours=False, started=100)])
    after = state(processes=[proc(42, "dnsmasq", ours=True, started=900)])
    assert left_behind(before, after) == ["1 processes: ['42 dnsmasq']"]


def test_foreign_prefixes_come_from_what_another_cloud_shows_of_itself() -> None:
    def prefix_of(data_dir: Path) -> str:
        return {"/home/dev/cloud": "dev1", "/tmp/t/data": "tst2"}[str(data_dir)]

    serve = ("souverain", "serve", "--data-dir", "/home/dev/cloud")
    assert prefixes_used(serve, [], prefix_of) == {"dev1"}
    in_process = ("python", "-m", "pytest")  # a test process holding a cloud's audit log
    assert prefixes_used(in_process, ["/tmp/t/data/audit.log", "/dev/null"], prefix_of) == {"tst2"}
    dnsmasq = ("dnsmasq", "--conf-file=/run/x/ab12dhcp/0b7c9a52/dnsmasq.conf")
    assert prefixes_used(dnsmasq, [], prefix_of) == {"ab12"}
    qemu = ("qemu-system-x86_64", "-netdev", "tap,id=n0,ifname=cd34t0a1b2c3d4e,script=no")
    assert prefixes_used(qemu, [], prefix_of) == {"cd34"}
    assert prefixes_used(("souverain", "serve", "--data-dir"), [], prefix_of) == set()


def test_tables_of_a_foreign_cloud_are_set_aside_and_odd_names_still_count() -> None:
    after = state(
        tables={
            "table inet souverain-dev1",
            "table ip souverain-dev1-public-0b7c9a52",
            "table inet souverain-0t123",
        }
    )
    assert left_behind(state(), after, {"dev1"}) == [
        "1 nftables tables: ['table inet souverain-0t123']"
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="reads other processes' environments as root")
def test_snapshot_tells_this_runs_processes_from_others_by_environment(tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex
    mine = subprocess.Popen(
        ["dnsmasq-lookalike", "30"], executable="sleep", env={**os.environ, RUN_ENV: run_id}
    )
    theirs = subprocess.Popen(
        ["dnsmasq-lookalike", "31"], executable="sleep", env={**os.environ, RUN_ENV: "other"}
    )
    named = subprocess.Popen(  # argv[0] is what the check reads; python sleeps
        ["dnsmasq-lookalike", "-c", "import time; time.sleep(32)", str(tmp_path / "x")],
        executable=sys.executable,
        env={},
    )
    try:
        found = {p.pid: p for p in snapshot(run_id, [tmp_path]).processes.values()}
        assert found[mine.pid].ours
        assert not found[theirs.pid].ours
        assert found[named.pid].ours  # names this run's temp dir
    finally:
        for child in (mine, theirs, named):
            child.kill()
            child.wait()


def test_a_temp_root_claims_paths_below_it_not_siblings_that_start_alike() -> None:
    root = "/tmp/pytest-of-root/pytest-54"
    assert _is_ours(("dnsmasq", f"--conf-file={root}/x/conf"), b"", "id", [root])
    assert not _is_ours(("dnsmasq", f"--conf-file={root}5/x/conf"), b"", "id", [root])
    assert _is_ours(("dnsmasq",), f"A=1\0{RUN_ENV}=id\0".encode(), "id", [])
    assert not _is_ours(("dnsmasq",), f"{RUN_ENV}=idx".encode(), "id", [])


@pytest.mark.skipif(os.geteuid() != 0, reason="reads other processes' open files as root")
def test_a_cloud_held_open_by_another_process_is_foreign_but_not_one_held_here(
    tmp_path: Path,
) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    for data_dir in (here, there):
        data_dir.mkdir()
    held_here = (here / "audit.log").open("w")
    holder = subprocess.Popen(  # someone else's test process with a cloud open
        [
            sys.executable,
            "-c",
            "import sys, time; f = open(sys.argv[1], 'w'); print(1, flush=True); time.sleep(30)",
            str(there / "audit.log"),
        ],
        env={**os.environ, RUN_ENV: "someone-else"},
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline()  # the file is open
        names = {str(here): "here", str(there): "thre"}
        found = foreign_prefixes(uuid.uuid4().hex, [], lambda d: names.get(str(d), "othr"))
        assert "thre" in found
        assert "here" not in found
    finally:
        holder.kill()
        holder.wait()
        held_here.close()
