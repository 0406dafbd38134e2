"""A real PostgreSQL server for the tests: Debian's initdb and pg_ctl in a temporary directory.

One server per pytest session and xdist worker, listening on 127.0.0.1 on a free port and on a
unix socket in its own directory. A commit writes its WAL before it answers, so a killed
server loses nothing acknowledged; nothing is fsynced, as the tests kill processes, never the
machine. The schema is migrated once into a template database; each platform a test builds
gets a fresh copy (`CREATE DATABASE ... TEMPLATE`), dropped afterwards. initdb refuses root:
as root the server runs as Debian's `postgres` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BACKENDS = ("sqlite", "postgresql")


def _test_backends() -> tuple[str, ...]:
    """The backends the database-touching tests run on (tests/api and tests/security by
    module, tests/platform by test): `TESTS_DATABASES`, a comma list, both by default.
    `make test` names sqlite and `make test-postgresql` postgresql; CI runs both targets."""
    raw = os.environ.get("TESTS_DATABASES", ",".join(BACKENDS))
    chosen = tuple(name.strip() for name in raw.split(",") if name.strip())
    unknown = [name for name in chosen if name not in BACKENDS]
    if unknown or not chosen:
        raise pytest.UsageError(
            f"TESTS_DATABASES={raw!r}: name one or more of {', '.join(BACKENDS)}, comma-separated"
        )
    return chosen


TEST_BACKENDS = _test_backends()
TEMPLATE = "souverain_template"


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: run ./scripts/install-system-packages "
            "(Debian's postgresql package)"
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster: `start`, `stop`, `database()` for a fresh copy of the migrated template."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.sockets = root / "run"
        self.port = _free_port()
        self.bin = _pg_bin()
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            owner = pwd.getpwnam("postgres")
            for path in (root, self.sockets):
                path.mkdir(exist_ok=True)
                os.chown(path, owner.pw_uid, owner.pw_gid)
        else:
            self.sockets.mkdir(exist_ok=True)
        self.user = "postgres" if self._as else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=120, cwd="/"
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr}")

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        conf = (
            f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
            f"unix_socket_directories = '{self.sockets}'\n"
            "fsync = off\nfull_page_writes = off\nsynchronous_commit = on\n"
            "max_connections = 200\n"
            "shared_buffers = 32MB\n"
        )
        with (self.data / "postgresql.conf").open("a") as file:
            file.write(conf)

    def start(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        """Stop now (`-m fast`): what an outage looks like to the clients."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]

    def make_template(self) -> None:
        from souverain.db.engine import make_engine
        from souverain.db.migrate import upgrade

        self._admin(f"CREATE DATABASE {TEMPLATE}")
        engine = make_engine(self.url(TEMPLATE))
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        self._admin(f"ALTER DATABASE {TEMPLATE} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")

    def create_database(self, migrated: bool = True) -> str:
        """A fresh database of its own (a copy of the migrated template, or empty); its name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        template = TEMPLATE if migrated else "template0"
        self._admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    def drop_database(self, name: str) -> None:
        if self.running():
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A fresh, migrated database of its own; its URL; dropped afterwards."""
        name = self.create_database()
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="souverain-pg-"))
    server = PostgresServer(root)
    try:
        server.init()
        server.start()
        server.make_template()
        yield server
    finally:
        try:
            if server.running():
                server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
        left = _processes_of(server.data)
        if left:
            raise RuntimeError(f"PostgreSQL processes outlived their test server: {left}")


def _processes_of(data: Path) -> list[int]:
    """The pids of a postmaster still running on `data` (none once stopped)."""
    found = subprocess.run(
        ["pgrep", "-f", f"postgres -D {data}"], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split()]


# One server per process (an xdist worker is a process), started when a test first asks for
# PostgreSQL and stopped by the session fixture below; shared by tests/api, tests/security
# and tests/platform.
_servers = contextlib.ExitStack()
_shared: list[PostgresServer] = []


def shared_server() -> PostgresServer:
    if not _shared:
        _shared.append(_servers.enter_context(postgres_server()))
    return _shared[0]


def stop_shared_server() -> None:
    _shared.clear()
    _servers.close()


class Backend:
    """The backend the running test module is parametrized with, and what it created.

    `settings_for` (and every test that builds its own Settings) asks `database_url()`:
    empty for SQLite (the data dir's file), a fresh PostgreSQL database otherwise.
    """

    name = "sqlite"
    created: list[str] = []  # one process runs one module at a time

    @classmethod
    def use(cls, name: str) -> None:
        cls.name = name

    @classmethod
    def database_url(cls) -> str:
        if cls.name == "sqlite":
            return ""
        server = shared_server()
        name = server.create_database()
        cls.created.append(name)
        return server.url(name)

    @classmethod
    def drop_since(cls, mark: int) -> None:
        while len(cls.created) > mark:
            shared_server().drop_database(cls.created.pop())


def database_url() -> str:
    return Backend.database_url()


def database_overrides() -> dict[str, dict[str, str]]:
    """Settings overrides for the current backend: nothing for SQLite."""
    url = database_url()
    return {"database": {"url": url}} if url else {}


@pytest.fixture(scope="session")
def postgres_session() -> Iterator[None]:
    """Stops this process's PostgreSQL server (if a test started it) at the end."""
    yield
    stop_shared_server()


@pytest.fixture(scope="module", params=TEST_BACKENDS, autouse=True)
def database_backend(request: pytest.FixtureRequest, postgres_session: None) -> Iterator[str]:
    """Every module of tests/api and tests/security runs once per backend `TESTS_DATABASES`
    names: `test_x[sqlite]`, `test_x[postgresql]`.

    A module-scoped fixture that builds a platform must request `database_backend`, so that
    pytest builds it again for the second backend (and groups the tests by backend)."""
    Backend.use(request.param)
    try:
        yield request.param
    finally:
        Backend.drop_since(0)
        Backend.use("sqlite")


@pytest.fixture(name="backend", params=("sqlite",))
def sqlite_backend(
    request: pytest.FixtureRequest, postgres_session: None
) -> Iterator[type[Backend]]:
    """For a platform module whose subject is not the database (storage, hosts): its
    servers keep their state in SQLite only. Import it where the module's tests are."""
    Backend.use(request.param)
    try:
        yield Backend
    finally:
        Backend.drop_since(0)


@pytest.fixture(autouse=True)
def _drop_test_databases(database_backend: str) -> Iterator[None]:
    """The databases a test's own fixtures created are dropped when it ends."""
    mark = len(Backend.created)
    yield
    Backend.drop_since(mark)
