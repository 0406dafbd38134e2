"""End-to-end harness: the real `souverain serve` in a subprocess, the real clients against it.

Each `Cloud` is one server process on a free port with a fresh data dir, plus the
clients a customer would use: the `openstack` CLI (a subprocess reading a
clouds.yaml this harness writes), openstacksdk in-process, and plain HTTP for the
status codes the clients hide. A cloud stops with SIGTERM and must exit 0, and
its audit log must then verify. Nothing of Souverain is imported or mocked here.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openstack
import openstack.connection
import pytest
import yaml

from tests.host_cleanup import kill_guests
from tests.openstack_cli import run_openstack
from tests.public_net import public_network_env

BIN = Path(sys.executable).parent
SOUVERAIN = str(BIN / "souverain")
OPENSTACK = str(BIN / "openstack")
ADMIN_PASSWORD = "e2e-admin-Passw0rd"
REGION = "fr-1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
CLI_TIMEOUT = 60.0

# Fast password hashing; everything else is the server's default unless a module says otherwise.
BASE_ENV = {
    "SOUVERAIN_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "SOUVERAIN_IDENTITY__BCRYPT_ROUNDS": "4",
}


def unique(label: str) -> str:
    """A name no other test (or earlier run against the same cloud) has used."""
    return f"{label}-{uuid.uuid4().hex[:8]}"


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: ours minus any OS_* or SOUVERAIN_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "SOUVERAIN_"))}
    env.update(extra)
    return env


def run_souverain(*args: str) -> subprocess.CompletedProcess[str]:
    """The operator CLI (`souverain keys rotate`, `souverain audit verify`, ...)."""
    return subprocess.run(
        [SOUVERAIN, *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@dataclass
class ServerProcess:
    """`souverain serve --port 0` on its own data dir; output goes to files, never a pipe."""

    root: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def stdout_path(self) -> Path:
        return self.root / "server.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.root / "server.stderr"

    def output(self) -> str:
        out = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}"

    def start(self) -> str:
        """Start and return the identity auth URL once the server answers on it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    SOUVERAIN,
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    "0",
                    "--s3-port",
                    "0",
                ],
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        clouds = self.data_dir / "clouds.yaml"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}\n{self.output()}")
            auth_url = _auth_url_from(clouds)
            if auth_url is not None:
                try:
                    verify = _verify_from(clouds)
                    if httpx.get(f"{auth_url}/v3", timeout=10, verify=verify).status_code == 200:
                        return auth_url
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        self.proc.kill()
        raise TimeoutError(f"server did not answer within {START_TIMEOUT}s\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, then wait; the exit code (a timeout kills it and reports -9)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


def _verify_from(clouds: Path) -> ssl.SSLContext | bool:
    """How to verify a TLS server: the CA file its clouds.yaml names (`cacert`), if any."""
    cacert = yaml.safe_load(clouds.read_text())["clouds"]["souverain"].get("cacert")
    return ssl.create_default_context(cafile=cacert) if cacert else True


def _auth_url_from(clouds: Path) -> str | None:
    try:
        data = yaml.safe_load(clouds.read_text())
        return str(data["clouds"]["souverain"]["auth"]["auth_url"])
    except (FileNotFoundError, KeyError, TypeError, yaml.YAMLError):
        return None


@dataclass
class Tenant:
    """A customer: one project, one user holding `member` on it, a password."""

    cloud_name: str
    project_id: str
    project_name: str
    user_id: str
    user_name: str
    password: str


@dataclass
class Cloud:
    """A running server and the real clients pointed at it."""

    server: ServerProcess
    auth_url: str
    workdir: Path
    clouds: dict[str, Any] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    _admin: openstack.connection.Connection | None = None

    # ------------------------------------------------------------------ start / stop

    @classmethod
    def start(cls, root: Path, **env: str) -> Cloud:
        server = ServerProcess(root, child_env(**{**BASE_ENV, **public_network_env(), **env}))
        auth_url = server.start()
        cloud = cls(server, auth_url, root)
        admin_cloud = yaml.safe_load((server.data_dir / "clouds.yaml").read_text())["clouds"][
            "souverain"
        ]
        cloud.clouds["admin"] = admin_cloud
        cloud.secrets.add(ADMIN_PASSWORD)
        cloud._write_clouds()
        (root / "no-clouds.yaml").write_text("clouds: {}\n")
        return cloud

    def stop_and_check(self) -> None:
        """SIGTERM must stop the server with exit 0; then its whole audit log must verify."""
        if self._admin is not None:
            self._admin.close()
        code = self.server.stop()
        assert code == 0, f"server exited {code} on SIGTERM\n{self.server.output()}"
        verdict = run_souverain("audit", "verify", "--data-dir", str(self.server.data_dir))
        assert verdict.returncode == 0, verdict.stderr
        self.assert_no_secret_in(self.server.data_dir / "audit.log")
        self.assert_no_secret_in(self.server.stdout_path)
        self.assert_no_secret_in(self.server.stderr_path)

    def assert_no_secret_in(self, path: Path) -> None:
        text = path.read_text(errors="replace")
        leaked = sorted(s for s in self.secrets if s in text)
        assert not leaked, f"{path.name} holds secrets: {leaked}"

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    @property
    def base_url(self) -> str:
        return self.auth_url.rsplit("/identity", 1)[0]

    # ------------------------------------------------------------------ the openstack CLI

    @property
    def clouds_file(self) -> Path:
        return self.workdir / "clouds.yaml"

    def _write_clouds(self) -> None:
        tmp = self.clouds_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"clouds": self.clouds}, sort_keys=False))
        tmp.replace(self.clouds_file)

    def add_cloud(self, name: str, user_name: str, password: str, project_name: str) -> None:
        """A clouds.yaml entry for a user, the way a customer would write one."""
        self.clouds[name] = {
            "auth": {
                "auth_url": self.auth_url,
                "username": user_name,
                "password": password,
                "project_name": project_name,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": REGION,
            "interface": "public",
            "identity_api_version": 3,
        }
        self._write_clouds()

    def cli(self, *args: str, cloud: str | None = "admin") -> subprocess.CompletedProcess[str]:
        """Run `openstack`; with cloud=None only the given --os-* flags authenticate."""
        clouds_file = self.clouds_file if cloud else self.workdir / "no-clouds.yaml"
        argv = [*(["--os-cloud", cloud] if cloud else []), *args]
        env = child_env(OS_CLIENT_CONFIG_FILE=str(clouds_file))
        return run_openstack(argv, env, CLI_TIMEOUT)

    def cli_ok(self, *args: str, cloud: str | None = "admin") -> str:
        result = self.cli(*args, cloud=cloud)
        assert result.returncode == 0, f"openstack {' '.join(args)}: {result.stderr}"
        return result.stdout

    def cli_json(self, *args: str, cloud: str | None = "admin") -> Any:
        return json.loads(self.cli_ok(*args, "-f", "json", cloud=cloud))

    def cli_fails(self, *args: str, cloud: str | None = "admin") -> str:
        """Run a command that must fail; its error output."""
        result = self.cli(*args, cloud=cloud)
        assert result.returncode != 0, f"openstack {' '.join(args)} succeeded: {result.stdout}"
        return result.stderr

    def user_flags(self, user_name: str, password: str, project_name: str) -> list[str]:
        """The --os-* flags that log a user in without any clouds.yaml."""
        return [
            "--os-auth-url",
            self.auth_url,
            "--os-identity-api-version",
            "3",
            "--os-username",
            user_name,
            "--os-password",
            password,
            "--os-project-name",
            project_name,
            "--os-user-domain-name",
            "Default",
            "--os-project-domain-name",
            "Default",
            "--os-region-name",
            REGION,
        ]

    # ------------------------------------------------------------------ openstacksdk

    def connect(
        self, user_name: str, password: str, project_name: str
    ) -> openstack.connection.Connection:
        return openstack.connect(
            auth_url=self.auth_url,
            username=user_name,
            password=password,
            project_name=project_name,
            user_domain_name="Default",
            project_domain_name="Default",
            region_name=REGION,
            load_yaml_config=False,
            load_envvars=False,
        )

    @property
    def admin(self) -> openstack.connection.Connection:
        if self._admin is None:
            self._admin = self.connect("admin", ADMIN_PASSWORD, "admin")
        return self._admin

    def make_tenant(self, label: str, password: str | None = None) -> Tenant:
        """A project and its member user, made by the admin through openstacksdk."""
        name = unique(label)
        password = password or f"pw-{uuid.uuid4().hex}"
        self.secrets.add(password)
        project = self.admin.identity.create_project(name=f"{name}-project")
        user = self.admin.identity.create_user(
            name=f"{name}-user", password=password, default_project_id=project.id
        )
        member = self.admin.identity.find_role("member", ignore_missing=False)
        self.admin.identity.assign_project_role_to_user(project, user, member)
        self.add_cloud(name, user.name, password, project.name)
        return Tenant(name, project.id, project.name, user.id, user.name, password)

    # ------------------------------------------------------------------ plain HTTP

    def http(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A raw identity API call: for the status codes and bodies the clients hide."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["X-Auth-Token"] = token
        return httpx.request(
            method, f"{self.auth_url}{path}", headers=headers, timeout=30, **kwargs
        )

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A raw call to any service by its path under the base URL (`/compute/v2.1/...`)."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["X-Auth-Token"] = token
        return httpx.request(
            method, f"{self.base_url}{path}", headers=headers, timeout=30, **kwargs
        )

    def password_login(
        self, user_name: str, password: str, project_id: str | None = None
    ) -> httpx.Response:
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user_name, "domain": {"id": "default"}, "password": password}
                },
            }
        }
        if project_id is not None:
            auth["scope"] = {"project": {"id": project_id}}
        return self.http("POST", "/v3/auth/tokens", json={"auth": auth})

    def token_for(self, tenant: Tenant) -> str:
        response = self.password_login(tenant.user_name, tenant.password, tenant.project_id)
        assert response.status_code == 201, response.text
        return response.headers["X-Subject-Token"]

    def admin_token(self) -> str:
        """Scoped to the admin project: an unscoped token carries no role at all."""
        project = self.admin.identity.find_project("admin", ignore_missing=False)
        response = self.password_login("admin", ADMIN_PASSWORD, project.id)
        assert response.status_code == 201, response.text
        return response.headers["X-Subject-Token"]

    # ------------------------------------------------------------------ S3

    @property
    def s3_url(self) -> str:
        """The S3 endpoint, as the identity catalog publishes it (its own port)."""
        catalog = self.http("GET", "/v3/auth/catalog", token=self.admin_token()).json()
        for service in catalog["catalog"]:
            if service["type"] == "s3":
                return str(service["endpoints"][0]["url"])
        raise AssertionError("no s3 service in the catalog")

    def ec2_credentials(self, tenant: Tenant) -> tuple[str, str]:
        """An EC2-style key pair for the tenant's user in its project: (access, secret)."""
        token = self.token_for(tenant)
        response = self.http(
            "POST",
            f"/v3/users/{tenant.user_id}/credentials/OS-EC2",
            token=token,
            json={"tenant_id": tenant.project_id},
        )
        assert response.status_code == 201, response.text
        cred = response.json()["credential"]
        self.secrets.add(cred["secret"])
        return cred["access"], cred["secret"]

    def s3(self, tenant: Tenant, **config: Any) -> Any:
        """A boto3 S3 client for the tenant, configured as a customer would."""
        import boto3
        from botocore.config import Config

        access, secret = self.ec2_credentials(tenant)
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
        )

    def token_status(self, token: str) -> int:
        """What using the token gets: 200 while it is good, 401 once it is not."""
        return self.http("GET", "/v3/auth/projects", token=token).status_code

    def validate(self, subject: str) -> httpx.Response:
        """The admin's view of a token (GET /v3/auth/tokens)."""
        return self.http(
            "GET",
            "/v3/auth/tokens",
            token=self.admin_token(),
            headers={"X-Subject-Token": subject},
        )


CloudFactory = Callable[..., Cloud]

E2E_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # openstacksdk warns about its own future API changes; they say nothing about Souverain.
    quiet = pytest.mark.filterwarnings("ignore:::openstack")
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(quiet)


@pytest.fixture(scope="session")
def start_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudFactory]:
    """Start extra clouds with their own settings; any still running at the end are killed."""
    started: list[Cloud] = []

    def factory(label: str, **env: str) -> Cloud:
        cloud = Cloud.start(tmp_path_factory.mktemp(label), **env)
        started.append(cloud)
        return cloud

    yield factory
    for cloud in started:
        proc = cloud.server.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_guests(cloud.server.data_dir)  # its bridges and tables outlive it by design


@pytest.fixture(scope="session")
def cloud(start_cloud: CloudFactory) -> Iterator[Cloud]:
    """The cloud most tests share, with the server's default settings."""
    shared = start_cloud("shared")
    yield shared
    shared.stop_and_check()


# ---------------------------------------------------------------------- compute


@pytest.fixture(scope="session")
def tiny_image_file() -> Path:
    from tests.vm.guest_support import build_tiny_image, missing_requirements

    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"compute end-to-end tests need real guests: {reason}")
    return build_tiny_image()


@pytest.fixture(scope="session")
def compute_cloud(start_cloud: CloudFactory, tiny_image_file: Path) -> Iterator[Cloud]:
    """A cloud with the tiny image registered, whose guests are all gone when it stops."""
    shared = start_cloud(
        "compute",
        SOUVERAIN_IMAGE__TINY_IMAGE=str(tiny_image_file),
        SOUVERAIN_COMPUTE__SHUTDOWN_TIMEOUT="20",
        SOUVERAIN_COMPUTE__SYNC_INTERVAL="1",
    )
    try:
        yield shared
        shared.stop_and_check()
    finally:
        kill_guests(shared.server.data_dir)


# ---------------------------------------------------------------------- objects in RADOS

RADOS_STRIPE_BYTES = 64 * 1024  # small: a 1 MiB object is 16 RADOS objects


@pytest.fixture(scope="module")
def rados_cloud(start_cloud: CloudFactory, ceph_session: None) -> Iterator[Cloud]:
    """A module's cloud whose object bytes live in a fresh pool of this worker's Ceph cluster,
    every object through RADOS (nothing inline in the database), small stripes and parts."""
    from tests.ceph import shared_cluster

    cluster = shared_cluster()
    pool = unique("e2e-objects")
    cloud = start_cloud(
        "rados",
        SOUVERAIN_CEPH__CONF_FILE=str(cluster.conf),
        SOUVERAIN_CEPH__USER=cluster.user,
        SOUVERAIN_OBJECTSTORE__BACKEND="rados",
        SOUVERAIN_OBJECTSTORE__RADOS_POOL=pool,
        SOUVERAIN_OBJECTSTORE__RADOS_STRIPE_BYTES=str(RADOS_STRIPE_BYTES),
        SOUVERAIN_OBJECTSTORE__INLINE_MAX_BYTES="0",
        SOUVERAIN_OBJECTSTORE__MIN_PART_BYTES=str(5 * 1024),
    )
    try:
        yield cloud
        cloud.stop_and_check()
    finally:
        # had the cluster stopped already, its pools went with it
        if cluster.conf.exists() and pool in cluster.pools():
            cluster.command("osd", "pool", "delete", pool, pool, "--yes-i-really-really-mean-it")
