"""The Swift peer: OpenStack Swift from PyPI as a one-node, one-replica cluster on loopback.

Like the developers' "Swift All In One", scripted: account, container and object
rings with one device (a directory under the state dir, so it must take
user xattrs), the three storage servers, memcached for the proxy's cache, and a
proxy whose pipeline has the s3api middleware in front of tempauth. S3 user
`test:tester`, secret `testing`; region (s3api `location`) is the bench's.
Background daemons (replicators, auditors, updaters) are not started: with one
replica they have nothing to do during a run.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
from pathlib import Path

from processes import Server, free_port
from sigv4 import Credentials
from target import SWIFT, PeerUnavailable, Target
from venvs import PEERS, ensure_debian_package, ensure_venv, run_logged

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "swift-requirements.txt"
ACCESS_KEY = "test:tester"
SECRET_KEY = "testing"

PROXY_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats "
    "s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server"
)


def ensure_installed(log: Path) -> tuple[Path, str]:
    """The venv's bin dir and memcached's path, installing what is missing."""
    bin_dir = ensure_venv("swift", REQUIREMENTS, "swift.proxy.server, pyeclib", log)
    memcached = ensure_debian_package("memcached", "memcached", log)
    return bin_dir, memcached


def installed_version(bin_dir: Path) -> str:
    for dist in (bin_dir.parent / "lib").glob("python3*/site-packages/swift-*.dist-info"):
        return dist.name.removeprefix("swift-").removesuffix(".dist-info")
    return "?"


def _require_xattrs(directory: Path) -> None:
    probe = directory / ".xattr-probe"
    probe.touch()
    try:
        os.setxattr(probe, "user.bench", b"1")
    except OSError as error:
        raise PeerUnavailable(
            f"the filesystem under {directory} refuses user xattrs ({error}); "
            "Swift's object server stores its metadata there"
        ) from error
    finally:
        probe.unlink()


def _common(swift_dir: Path, port: int, workers: int) -> str:
    return f"""\
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = {workers}
swift_dir = {swift_dir}
user = {getpass.getuser()}
log_level = WARNING
"""


def _storage_config(kind: str, swift_dir: Path, devices: Path, port: int, workers: int) -> str:
    return (
        _common(swift_dir, port, workers)
        + f"""\
devices = {devices}
mount_check = false

[pipeline:main]
pipeline = healthcheck {kind}-server

[filter:healthcheck]
use = egg:swift#healthcheck

[app:{kind}-server]
use = egg:swift#{kind}
"""
    )


def _proxy_config(
    swift_dir: Path, port: int, workers: int, memcached_port: int, region: str
) -> str:
    simple_filters = ("catch_errors", "gatekeeper", "healthcheck", "listing_formats",
                      "copy", "slo", "dlo", "versioned_writes")  # fmt: skip
    sections = "".join(f"\n[filter:{name}]\nuse = egg:swift#{name}\n" for name in simple_filters)
    return (
        _common(swift_dir, port, workers)
        + f"""\

[pipeline:main]
pipeline = {PROXY_PIPELINE}

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached_port}

[filter:s3api]
use = egg:swift#s3api
location = {region}

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = {SECRET_KEY} .admin
{sections}"""
    )


def start(
    bin_dir: Path, memcached: str, state: Path, workers: int, region: str, log: Path
) -> Target:
    """Rings, configs and the five processes; returns once the proxy answers its healthcheck."""
    shutil.rmtree(state, ignore_errors=True)
    swift_dir, devices = state / "etc", state / "devices"
    (devices / "d1").mkdir(parents=True)
    swift_dir.mkdir()
    _require_xattrs(devices / "d1")

    (swift_dir / "swift.conf").write_text(
        "[swift-hash]\n"
        f"swift_hash_path_prefix = {secrets.token_hex(8)}\n"
        f"swift_hash_path_suffix = {secrets.token_hex(8)}\n\n"
        "[storage-policy:0]\nname = Policy-0\ndefault = yes\n"
    )
    ports = {kind: free_port() for kind in ("account", "container", "object")}
    builder = str(bin_dir / "swift-ring-builder")
    for kind, port in ports.items():
        ring = f"{kind}.builder"
        run_logged([builder, ring, "create", "8", "1", "1"], log, cwd=swift_dir)
        run_logged([builder, ring, "add", f"r1z1-127.0.0.1:{port}/d1", "1"], log, cwd=swift_dir)
        run_logged([builder, ring, "rebalance"], log, cwd=swift_dir)

    memcached_port = free_port()
    proxy_port = free_port()
    memcached_argv = [memcached, "-l", "127.0.0.1", "-p", str(memcached_port), "-U", "0",
                      "-m", "64", "-u", getpass.getuser()]  # fmt: skip
    servers = [Server("memcached", memcached_argv, log_path=state / "memcached.log")]
    for kind, port in ports.items():
        config = swift_dir / f"{kind}-server.conf"
        config.write_text(_storage_config(kind, swift_dir, devices, port, workers))
        servers.append(
            Server(
                f"swift-{kind}-server",
                [str(bin_dir / f"swift-{kind}-server"), str(config)],
                log_path=state / f"{kind}-server.log",
            )
        )
    proxy_config = swift_dir / "proxy-server.conf"
    proxy_config.write_text(_proxy_config(swift_dir, proxy_port, workers, memcached_port, region))
    servers.append(
        Server(
            "swift-proxy-server",
            [str(bin_dir / "swift-proxy-server"), str(proxy_config)],
            log_path=state / "proxy-server.log",
        )
    )
    try:
        for server in servers:
            server.start()
        for server, port in zip(servers[1:], [*ports.values(), proxy_port], strict=True):
            server.wait_ready(f"http://127.0.0.1:{port}/healthcheck")
    except BaseException:
        for server in reversed(servers):
            server.stop()
        raise
    return Target(
        SWIFT,
        f"127.0.0.1:{proxy_port}",
        servers,
        Credentials(ACCESS_KEY, SECRET_KEY, region),
        setup=(
            f"Swift {installed_version(bin_dir)} (s3api + tempauth, memcached; 1 replica on "
            f"{PEERS.name}/; proxy, account, container, object servers {workers} worker(s) each)"
        ),
    )
