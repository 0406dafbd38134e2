"""`souverain serve`: listen, fork the workers, supervise them, stop them gracefully.

The listening socket is bound before bootstrap, so `--port 0` works and the
catalog always names the port clients can reach. Set-up runs in a child process
(its libraries never weigh on a worker), then the workers are forked and this
process becomes the supervisor. Shutdown on SIGTERM/SIGINT is uvicorn's graceful
one: stop accepting, let in-flight requests finish, then close the audit log
and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

from starlette.types import ASGIApp

from souverain import roles, tls
from souverain.app import SERVICES, by_port
from souverain.common.logbatch import BatchedStreamHandler
from souverain.config import ConfigError, Settings
from souverain.connections import guarded_protocol, handshake_bounded_loop
from souverain.db import migrate
from souverain.network.dataplane import DataplaneError
from souverain.server import (
    DataPaths,
    Platform,
    _paths,
    flush_logs,
    open_platform,
    set_up_data,
)
from souverain.transport import Limits, TransportGuard

log = logging.getLogger("souverain")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _RedactTokens(logging.Filter):
    """A console URL carries its token in the query (uvicorn logs websocket paths whole):
    the log gets the path without it."""

    TOKEN = re.compile(r"(token=)[^\s&\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = self.TOKEN.sub(r"\1...", message), ()
        return True


def configure_logging() -> BatchedStreamHandler:
    """Errors and notices to stderr at once; the access log to stderr in batches."""
    plain = logging.Formatter("%(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(plain)
    handler.addFilter(_RedactTokens())
    for name in ("souverain", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    batched = BatchedStreamHandler(sys.stderr)
    batched.setFormatter(plain)
    access = logging.getLogger("souverain.access")
    access.handlers[:] = [batched]
    access.setLevel(logging.INFO)
    access.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    return batched


def _banner(settings: Settings, paths: DataPaths, password_written: bool) -> None:
    base = settings.base_url
    workers = settings.server.workers
    print(
        f"Souverain is running in region {settings.server.region} "
        f"(data in {paths.root}, {workers} worker{'s' if workers > 1 else ''}; "
        f"roles: {roles.describe(settings)})"
    )
    if not roles.runs(settings, roles.API):
        print(f"  health     {base}/health (no API on this node)")
        sys.stdout.flush()
        return
    for service in SERVICES:
        print(f"  {service.type:<10} {base}{service.path}")
    print(f"  {'s3':<10} {settings.s3_url} (region {settings.server.region})")
    if password_written:
        print(f"Admin credentials: {paths.clouds_yaml} (cloud 'souverain')")
        print(
            f"  try: OS_CLIENT_CONFIG_FILE={paths.clouds_yaml} "
            "openstack --os-cloud souverain token issue"
        )
    else:
        print("Admin password unknown to this data dir; set SOUVERAIN_ADMIN_PASSWORD to reset it.")
    sys.stdout.flush()


def _run_worker(
    settings: Settings, socks: list[socket.socket], access: BatchedStreamHandler | None = None
) -> None:
    """Serve on the shared socket until SIGTERM/SIGINT, then close everything cleanly."""
    import uvicorn

    class _GracefulServer(uvicorn.Server):
        """Stops on SIGTERM/SIGINT and exits 0: a requested stop is not a failure."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
            if _EARLY_STOP:
                self.handle_exit(_EARLY_STOP[0], None)
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    class _Config(uvicorn.Config):
        def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
            return handshake_bounded_loop(settings.limits.header_timeout)

    _limit_malloc_arenas()
    platform = open_platform(settings, access_sink=access.write_line if access else None)
    # Everything built so far lives as long as the process: out of the cycle collector's
    # sight, a full collection scans only what requests make (a list of 5,000 servers no
    # longer pays for walking the whole application), and forked pages stay shared.
    gc.freeze()
    limits = settings.limits
    files = tls.tls_files(settings)
    config = _Config(
        _listener_app(platform, settings),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.server.graceful_timeout),
        lifespan="off",
        server_header=False,
        proxy_headers=False,  # X-Forwarded-* are client-controlled unless a trusted proxy is set
        http=guarded_protocol(limits),
        timeout_keep_alive=limits.keep_alive_timeout,
        limit_concurrency=limits.max_connections or None,
        ssl_certfile=str(files.cert) if files else None,
        ssl_context_factory=(lambda _config, _default: tls.server_context(files))
        if files
        else None,
    )
    server = _GracefulServer(config)
    platform.start_background()
    try:
        server.run(sockets=socks)
    finally:
        platform.close()


def _listener_app(platform: Platform, settings: Settings) -> ASGIApp:
    """The APIs on an api node; elsewhere only its health, on both listeners."""
    s3_port = settings.server.s3_port
    if roles.runs(settings, roles.API):
        app = by_port(platform.app, platform.s3_app, s3_port)
    else:
        app = roles.health_app(settings, platform.held_leases)
    return TransportGuard(app, Limits.from_settings(settings.limits), platform.render, s3_port)


_EARLY_STOP: list[int] = []
M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2


def _limit_malloc_arenas() -> None:
    """At most MALLOC_ARENAS malloc arenas in this process, before its threads start.

    glibc gives each thread that meets contention an arena of its own (up to eight per
    core), and memory freed in one is not reused by another: with tens of request
    threads, a serving process's RSS grew by a dozen MiB under load for nothing. Python
    allocates small objects in its own pools under the GIL, so fewer arenas cost no
    measurable speed. Not glibc: nothing to do."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):
        return


def _remember_early_stop(sig: int, _frame: object) -> None:
    _EARLY_STOP.append(sig)


def _stop_with_parent() -> None:
    """Ask Linux to send us SIGTERM if the supervisor dies, even by SIGKILL: no orphans."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's own stop still works
        return
    if os.getppid() == 1:  # the supervisor died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(settings: Settings, socks: list[socket.socket], access: BatchedStreamHandler) -> int:
    """Fork one serving process from this one (which holds the application already)."""
    pid = os.fork()
    if pid == 0:  # the worker
        code = 0
        try:
            _stop_with_parent()
            for sig in STOP_SIGNALS:  # a stop before serving starts is kept, not fatal
                signal.signal(sig, _remember_early_stop)
            _run_worker(settings, socks, access)
        except BaseException:
            log.exception("worker failed")
            code = 1
        finally:
            logging.shutdown()  # os._exit skips atexit: flush the logs by hand
            os._exit(code)
    return pid


def _supervise(
    settings: Settings, socks: list[socket.socket], access: BatchedStreamHandler
) -> None:
    """Fork the workers, then become the small supervisor (`souverain.supervisor`)."""
    workers = {
        str(_worker(settings, socks, access)): slot for slot in range(settings.server.workers)
    }
    state = {
        "workers": workers,
        "fds": [sock.fileno() for sock in socks],
        "settings": settings.model_dump(mode="json"),
        "stop": _EARLY_STOP[0] if _EARLY_STOP else None,
    }
    flush_logs()
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "souverain.supervisor", json.dumps(state)]
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter, no shell, no user input


def worker_main(state_json: str) -> int:
    """A replacement worker started by the supervisor: the settings and sockets it is given."""
    state = json.loads(state_json)
    settings = Settings.model_validate(state["settings"])
    os.umask(0o077)
    access = configure_logging()
    socks = [socket.socket(fileno=fd) for fd in state["fds"]]
    _stop_with_parent()
    for sig in STOP_SIGNALS:
        signal.signal(sig, _remember_early_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a stop sent while we started
    try:
        _run_worker(settings, socks, access)
    except BaseException:
        log.exception("worker failed")
        return 1
    finally:
        logging.shutdown()
    return 0


def _set_up_apart(settings: Settings) -> bool:
    """`set_up_data` in a child process; whether it wrote the admin password file.

    Set-up imports what serving never needs (Alembic for migrations, pyroute2 to
    reconcile the data plane: about 22 MiB of modules). Done here, every serving
    process forked afterwards would carry them; done in a child, they leave with it.
    What it raised is raised here again, as the CLI reports it (SchemaTooNew, OSError).
    """
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the set-up child
        os.close(reader)
        outcome: dict[str, Any]
        try:
            outcome = {"written": set_up_data(settings)}
        except migrate.SchemaTooNew as exc:
            outcome = {"error": "schema", "message": str(exc)}
        except (OSError, DataplaneError) as exc:  # the host refuses: the operator's to fix
            outcome = {"error": "os", "message": str(exc)}
        except ConfigError as exc:  # a setting the start found wrong (an HSM's token, PIN)
            outcome = {"error": "config", "message": str(exc)}
        except BaseException as exc:
            log.exception("set-up failed")
            outcome = {"error": "other", "message": f"set-up failed: {exc!r}"}
        try:
            with os.fdopen(writer, "w") as out:
                out.write(json.dumps(outcome))
        finally:
            logging.shutdown()
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as answer:
        told = answer.read()
    os.waitpid(pid, 0)
    outcome = json.loads(told) if told else {"error": "other", "message": "set-up died"}
    if outcome.get("error") == "schema":
        raise migrate.SchemaTooNew(outcome["message"])
    if outcome.get("error") == "os":
        raise OSError(outcome["message"])
    if outcome.get("error") == "config":
        raise ConfigError(outcome["message"])
    if "error" in outcome:
        raise RuntimeError(outcome["message"])
    return bool(outcome["written"])


def serve(settings: Settings) -> int:
    """Run `souverain serve` in the foreground; the exit code to return."""
    os.umask(0o077)  # everything the cloud writes (database, logs, keys) is the operator's alone
    roles.apply(settings)  # before set-up: a node without `network` makes no kernel object
    access = configure_logging()
    sock = bind(settings.server.host, settings.server.port)
    settings.server.port = sock.getsockname()[1]
    s3_sock = bind(settings.server.host, settings.server.s3_port)
    settings.server.s3_port = s3_sock.getsockname()[1]
    for sig in STOP_SIGNALS:
        signal.signal(sig, _remember_early_stop)
    written = _set_up_apart(settings)
    _banner(settings, _paths(settings), written)
    if settings.server.workers > 1:
        _supervise(settings, [sock, s3_sock], access)  # does not return: the process is replaced
    _run_worker(settings, [sock, s3_sock], access)
    print("Souverain stopped cleanly.")
    return 0
