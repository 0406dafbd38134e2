"""The one settings object: defaults, then a TOML file, then `SOUVERAIN_*` env, then flags.

Everything is validated once at start; an invalid setting stops start-up with a
message naming it. Nothing else in the code reads the environment for settings.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from souverain import roles as roles_

ENV_PREFIX = "SOUVERAIN_"
# outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8: what a VXLAN segment takes from the underlay
VXLAN_OVERHEAD = 50


class ConfigError(Exception):
    """A setting is invalid; the message names it and says what is expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8770, ge=0, le=65535)
    s3_port: int = Field(default=8771, ge=0, le=65535)
    region: str = Field(default="fr-1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    public_url: str = Field(
        default="",
        description="Base URL clients use to reach the API; derived from host/port when empty.",
    )
    s3_public_url: str = Field(
        default="", description="Base URL S3 clients use; derived from host/s3_port when empty."
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    graceful_timeout: float = Field(default=30.0, ge=0)
    workers: int = Field(default=1, ge=1, le=64, description="serving processes (one per core)")
    roles: str = Field(
        default=roles_.ALL,
        description="what this node runs: api, network, background (souverain/roles.py)",
    )
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate (chain) both listeners serve; TLS when set"
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of the above")
    tls_ca_file: Path | None = Field(
        default=None,
        description="with tls_cert_file: the CA clients are told to trust (clouds.yaml, "
        "aws-config); empty: their system's",
    )
    tls_self_signed: bool = Field(
        default=False,
        description="TLS with a certificate made at first start (<data_dir>/tls/, ca.pem to trust)",
    )
    tls_names: list[str] = Field(
        default_factory=list,
        description="extra host names / IPs the self-signed certificate must name",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_self_signed and self.tls_cert_file is not None:
            raise ValueError("tls_self_signed and tls_cert_file exclude each other")
        return self

    @property
    def tls(self) -> bool:
        """Whether the listeners speak TLS (then the public URLs are https)."""
        return self.tls_self_signed or self.tls_cert_file is not None

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: str) -> str:
        return roles_.canonical(value)

    @field_validator("public_url", "s3_public_url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class LimitsSettings(_Section):
    """Transport limits (souverain/transport.py, souverain/connections.py). Rate buckets live
    in each worker's memory: with N workers a client may get up to N times a rate."""

    client_rate: float = Field(
        default=0.0,
        ge=0,
        description="requests per second per client IP; 0: no limit (off by default: behind "
        "a load balancer every client has its address)",
    )
    client_burst: int = Field(default=4000, ge=1, description="requests a client may send at once")
    auth_failures_per_client: int = Field(
        default=200, ge=0, description="failed logins a client IP may make at once; 0: no limit"
    )
    client_failure_refill: float = Field(
        default=1.0, gt=0, description="seconds for a client IP to earn one more failed login"
    )
    auth_failures_per_credential: int = Field(
        default=30, ge=0, description="failed logins one user name / access key may take at once"
    )
    credential_failure_refill: float = Field(
        default=6.0, gt=0, description="seconds for a credential to earn one more failed login"
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="seconds a client has to send a request's whole head"
    )
    body_idle_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds a request body may stall before the connection closes",
    )
    keep_alive_timeout: int = Field(
        default=30,
        ge=1,
        # longer than clients' polls: `openstack ... --wait` polls every 5 s, and a 5 s
        # keep-alive closed the connection just as the next poll went out on it (a reset)
        description="idle seconds between requests",
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=4096, description="largest request line plus headers: else 431"
    )
    max_connections: int = Field(
        default=0, ge=0, description="requests at once per worker before 503; 0: no limit"
    )


class DatabaseSettings(_Section):
    url: str = Field(default="", description="SQLAlchemy URL; SQLite in the data dir when empty.")


class IdentitySettings(_Section):
    token_expiration: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    password_min_length: int = Field(default=8, ge=1, le=128)
    lockout_failure_attempts: int = Field(default=6, ge=0, description="0 disables lockout")
    lockout_duration: int = Field(default=1800, ge=1)
    max_active_keys: int = Field(default=3, ge=3, le=20)
    hash_concurrency: int = Field(
        default=0, ge=0, le=256, description="password hashes at once per worker; 0: cores/workers"
    )
    mfa_required_for_privileged: bool = Field(
        default=False,
        description="admins (any scope) and account owners must log in with password + totp",
    )
    mfa_receipt_expiration: int = Field(
        default=300, ge=10, le=3600, description="seconds an auth receipt stays usable"
    )


class ObjectStoreSettings(_Section):
    domain: str = Field(
        default="",
        pattern=r"^([a-z0-9-]+(\.[a-z0-9-]+)*)?$",
        description="virtual-hosted style: `bucket.<domain>` names the bucket; off when empty",
    )
    max_object_bytes: int = Field(default=5 * 1024**3, ge=1, description="largest single PUT")
    min_part_bytes: int = Field(
        default=5 * 1024**2, ge=1, description="smallest multipart part but the last"
    )
    max_xml_bytes: int = Field(default=1024 * 1024, ge=1024, description="largest XML request")
    inline_max_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        le=1024 * 1024,
        description="objects up to this size live in the database, not in a blob file; 0: never",
    )
    sse_c_allow_http: bool = Field(
        default=True,
        description="accept SSE-C customer keys over plain HTTP (S3 demands TLS; off with TLS on)",
    )
    body_idle_timeout: float = Field(
        default=30.0, gt=0, description="seconds a client may pause mid-body before RequestTimeout"
    )
    quota_bytes: int = Field(default=-1, ge=-1, description="per project; -1: unlimited")
    quota_objects: int = Field(default=-1, ge=-1, description="per project; -1: unlimited")
    meter_interval: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="seconds between meter flushes: a bucket's object.gb gauge and its egress",
    )
    abort_incomplete_after: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="seconds before the server aborts an unfinished multipart upload; 0: never",
    )
    backend: Literal["file", "rados"] = Field(
        default="file",
        description="where object bytes live: files under the data dir, or RADOS ([ceph])",
    )
    rados_pool: str = Field(
        default="souverain-objects",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="the RADOS pool of object bytes; created at start when missing",
    )
    rados_stripe_bytes: int = Field(
        default=4 * 1024**2,
        ge=64 * 1024,
        le=64 * 1024**2,
        multiple_of=64 * 1024,
        description="a blob is cut into RADOS objects of at most this size (a multiple of 64 KiB)",
    )
    rados_ec_profile: str = Field(
        default="",
        max_length=200,
        pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]*|[a-z_-]+=[A-Za-z0-9._-]+(,[a-z_-]+=[A-Za-z0-9._-]+)*)?$",
        description="a new pool is erasure-coded with this profile (a name, or k=4,m=2,...); "
        "empty: replicated",
    )
    rados_sweep_grace: float = Field(
        default=3600.0,
        ge=0,
        description="seconds an unreferenced blob is left alone by the start-up sweep (another "
        "node may still be writing it or about to commit its row)",
    )


class ImageSettings(_Section):
    max_image_bytes: int = Field(
        default=100 * 1024**3, ge=1024, description="largest image upload, in bytes"
    )
    tiny_image: Path | None = Field(
        default=None,
        description="a qcow2 file registered at start as the public image 'tiny' when missing",
    )
    backend: str = Field(
        default="file",
        pattern=r"^(file|rbd)$",
        description="where active images' data lives: local files, or RBD images in "
        "`rbd_pool` (needs [ceph] conf_file)",
    )
    rbd_pool: str = Field(
        default="souverain-images",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="the Ceph pool of image data (backend rbd); created at start if missing",
    )


class ComputeSettings(_Section):
    accelerator: str = Field(
        default="auto", pattern=r"^(auto|kvm|tcg)$", description="auto: KVM if a probe runs"
    )
    availability_zone: str = Field(default="nova", min_length=1, max_length=255)
    host_vcpus: int = Field(default=0, ge=0, description="0: the host's CPU count")
    host_memory_mib: int = Field(default=0, ge=0, description="0: the host's memory")
    host_disk_gib: int = Field(default=0, ge=0, description="0: the data dir's file system")
    cpu_allocation_ratio: float = Field(default=16.0, gt=0)
    ram_allocation_ratio: float = Field(default=1.5, gt=0)
    disk_allocation_ratio: float = Field(default=1.0, gt=0)
    reserved_host_memory_mib: int = Field(default=512, ge=0)
    reserved_host_disk_gib: int = Field(default=0, ge=0)
    disk_backend: str = Field(
        default="file",
        pattern=r"^(file|rbd)$",
        description="servers' root disks: qcow2 overlays in the data dir, or RBD clones "
        "of the image in `rbd_pool` (needs [ceph] conf_file)",
    )
    rbd_pool: str = Field(
        default="souverain-disks",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="the Ceph pool of root disks (disk_backend rbd); created at start if missing",
    )
    console_max_bytes: int = Field(default=1024 * 1024, ge=4096)
    console_token_ttl: int = Field(
        default=600, ge=1, le=86400, description="seconds a console URL's token is valid"
    )
    shutdown_timeout: float = Field(default=60.0, ge=0, description="ACPI stop, then forced")
    sync_interval: float = Field(default=5.0, gt=0, description="power state sync period, s")
    orphaned_build_after: float = Field(
        default=300.0,
        gt=0,
        description="a build no node has placed after this long ends in error (s)",
    )
    local_host: bool = Field(
        default=True,
        description="this node runs guests itself; false on API nodes of a cloud of agent hosts",
    )
    service_down_time: float = Field(
        default=60.0, gt=0, description="a host not heard from for this long is not up (s)"
    )
    host_dead_after: float = Field(
        default=300.0, gt=0, description="its servers' host_status goes UNKNOWN -> DOWN (s)"
    )
    scheduler_weigher: str = Field(
        default="spread", pattern=r"^(spread|pack)$", description="spread: emptiest host first"
    )
    quota_instances: int = Field(default=10, ge=-1, description="per project; -1: unlimited")
    quota_cores: int = Field(default=20, ge=-1)
    quota_ram: int = Field(default=51200, ge=-1, description="MiB")
    quota_key_pairs: int = Field(default=100, ge=-1, description="per user")
    quota_metadata_items: int = Field(default=128, ge=-1, description="per server")


class AgentSettings(_Section):
    """`souverain agent`: one hypervisor host run for the cloud, without database access."""

    api_url: str = Field(default="", description="the control plane's URL (its load balancer)")
    name: str = Field(default="", max_length=255, description="this host's name; empty: hostname")
    token_file: Path | None = Field(default=None, description="`souverain host enroll`'s token")
    address: str = Field(default="", max_length=64, description="this host's underlay address")
    roles: str = Field(default="compute", pattern=r"^(compute|network|compute,network)$")
    driver: str = Field(default="qemu", pattern=r"^(qemu|simulation)$")
    allow_simulation: bool = Field(
        default=False, description="let `driver = simulation` run: a host that runs nothing"
    )
    heartbeat_interval: float = Field(default=10.0, gt=0, le=3600)
    watch_wait: int = Field(default=30, ge=1, le=60, description="longest watch, seconds")
    console_interval: float = Field(
        default=5.0, gt=0, le=3600, description="seconds between sends of changed consoles"
    )
    ca_file: Path | None = Field(
        default=None, description="CA certificate(s) to trust for an https api_url"
    )
    simulated_vcpus: int = Field(default=64, ge=1)
    simulated_memory_mib: int = Field(default=262144, ge=1)
    simulated_disk_gib: int = Field(default=4096, ge=1)


class VolumeSettings(_Section):
    default_type: str = Field(default="__DEFAULT__", min_length=1, max_length=255)
    max_volume_gib: int = Field(default=16384, ge=1, description="largest single volume")
    quota_volumes: int = Field(default=10, ge=-1, description="per project; -1: unlimited")
    quota_gigabytes: int = Field(default=1000, ge=-1)
    quota_snapshots: int = Field(default=10, ge=-1)
    detach_timeout: float = Field(default=30.0, gt=0, description="seconds the guest has to let go")
    backend: Literal["file", "rbd"] = Field(
        default="file",
        description="where volume bytes live: qcow2 files under data_dir, or RBD images "
        "in `rbd_pool` of the [ceph] cluster",
    )
    rbd_pool: str = Field(
        default="souverain-volumes",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="the RBD pool of volumes (made at start if missing, application rbd)",
    )
    rbd_flatten_clones: bool = Field(
        default=False,
        description="copy a clone's parent data into it in the background, so the volume "
        "no longer depends on the snapshot or image it was made from",
    )


class NetworkSettings(_Section):
    dataplane: bool = Field(
        default=True,
        description="run the host data plane (bridges, dnsmasq, routers, nftables) when root",
    )
    public_cidr: str = Field(default="172.24.4.0/24", description="the external network 'public'")
    public_gateway: str = Field(default="172.24.4.1", description="the host's address on it")
    public_pool_start: str = Field(default="172.24.4.10")
    public_pool_end: str = Field(default="172.24.4.250")
    dns_nameservers: list[str] = Field(default_factory=list)
    mtu: int = Field(default=1500, ge=576, le=9000)
    default_cidr: str = Field(
        default="10.0.0.0/24", description="get-me-a-network: the subnet `auto` creates"
    )
    quota_networks: int = Field(default=100, ge=-1)
    quota_subnets: int = Field(default=100, ge=-1)
    quota_ports: int = Field(default=500, ge=-1)
    quota_routers: int = Field(default=10, ge=-1)
    quota_floatingips: int = Field(default=50, ge=-1)
    quota_security_groups: int = Field(default=10, ge=-1)
    quota_security_group_rules: int = Field(default=100, ge=-1)
    quota_subnetpools: int = Field(default=-1, ge=-1, description="-1: unlimited, as Neutron")
    egress_sample_interval: float = Field(
        default=60.0, gt=0, description="seconds between readings of the routers' egress"
    )
    overlay: Literal["none", "vxlan"] = Field(
        default="none",
        description="how tenant networks span hosts: none (one host) or vxlan segments",
    )
    node_name: str = Field(
        default="",
        max_length=255,
        description="with overlay vxlan: the network node's host name (DHCP and routers are "
        "bound to it; give every API node the same); empty: this machine's hostname",
    )
    node_address: str = Field(
        default="",
        max_length=64,
        description="with overlay vxlan: the network node's underlay (VXLAN endpoint) address "
        "(give every API node the same: agents' plans name it)",
    )
    node_interval: float = Field(
        default=1.0, gt=0, le=60, description="seconds between the network node's overlay checks"
    )
    underlay_mtu: int = Field(
        default=1500, ge=576 + VXLAN_OVERHEAD, le=9000, description="MTU of the hosts' links"
    )
    segment_min: int = Field(default=1, ge=1, le=65535, description="lowest segmentation id")
    segment_max: int = Field(
        default=65535,
        ge=1,
        le=65535,  # it is also the network's conntrack zone, 16 bits
        description="highest segmentation id (the VXLAN VNI with overlay vxlan)",
    )

    @model_validator(mode="after")
    def _segment_range(self) -> NetworkSettings:
        if self.segment_min > self.segment_max:
            raise ValueError("segment_min must not exceed segment_max")
        return self

    @property
    def tenant_mtu(self) -> int:
        """The MTU of a new tenant network: room left for the VXLAN header with overlay."""
        if self.overlay == "vxlan":
            return self.underlay_mtu - VXLAN_OVERHEAD
        return self.mtu


class BillingSettings(_Section):
    catalog: Path | None = Field(
        default=None, description="price catalog (TOML); default: the one shipped with Souverain"
    )
    project_limit: int = Field(default=10, ge=0, description="projects a new account may hold")
    invoice_prefix: str = Field(default="SV", pattern=r"^[A-Z]{1,8}$")
    budget_check_interval: float = Field(default=300.0, gt=0, description="seconds")


class CephSettings(_Section):
    """The Ceph cluster the storing services' Ceph backends share (`volume.backend = "rbd"`,
    `image.backend = "rbd"`, `compute.disk_backend = "rbd"`, `objectstore.backend =
    "rados"`). Unused while every backend is `file`."""

    conf_file: Path | None = Field(
        default=None, description="ceph.conf naming the monitors (and the keyring)"
    )
    user: str = Field(
        default="admin",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="the cephx id, without `client.`",
    )
    keyring: Path | None = Field(default=None, description="empty: the one ceph.conf names")
    connect_timeout: float = Field(default=10.0, gt=0, description="seconds to reach a monitor")
    op_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds an OSD operation may wait (a pool below min_size): then 503",
    )


class AuditSettings(_Section):
    fsync: bool = True
    key_file: Path | None = Field(
        default=None,
        description="the audit HMAC key (0600), kept outside the data dir; "
        "default: <data_dir>/keys/audit.key",
    )


class KeyManagerSettings(_Section):
    """The key manager (`/key-manager`, Barbican v1) and its root of trust."""

    root: Literal["file", "pkcs11"] = Field(
        default="file",
        description="what wraps project keys: a master key file (not an HSM) or a PKCS#11 token",
    )
    master_key_file: Path | None = Field(
        default=None, description="the file root's key (0600); default: <data_dir>/keys/master.key"
    )
    pkcs11_module: Path = Field(
        default=Path("/usr/lib/softhsm/libsofthsm2.so"), description="the HSM's PKCS#11 library"
    )
    pkcs11_token_label: str = Field(default="souverain", min_length=1, max_length=32)
    pkcs11_pin_file: Path | None = Field(
        default=None, description="a file holding the token's user PIN (never in this file)"
    )


class EncryptionSettings(_Section):
    """Encryption at rest the operator imposes."""

    mandatory: bool = Field(
        default=False,
        description="every new bucket and volume is encrypted, whatever the customer asks",
    )


class Settings(_Section):
    data_dir: Path = Path("./souverain-data")
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    identity: IdentitySettings = IdentitySettings()
    audit: AuditSettings = AuditSettings()
    objectstore: ObjectStoreSettings = ObjectStoreSettings()
    image: ImageSettings = ImageSettings()
    compute: ComputeSettings = ComputeSettings()
    agent: AgentSettings = AgentSettings()
    limits: LimitsSettings = LimitsSettings()
    volume: VolumeSettings = VolumeSettings()
    network: NetworkSettings = NetworkSettings()
    billing: BillingSettings = BillingSettings()
    ceph: CephSettings = CephSettings()
    keymanager: KeyManagerSettings = KeyManagerSettings()
    encryption: EncryptionSettings = EncryptionSettings()

    @model_validator(mode="after")
    def _network_node(self) -> Settings:
        """A network node that also runs guests binds both to one host name."""
        name = self.network.node_name
        here = socket.gethostname()
        if self.network.overlay == "vxlan" and self.compute.local_host and name not in ("", here):
            raise ValueError(
                f"network.node_name {name!r} is not this machine's host name ({here!r}), which "
                "runs guests too (compute.local_host): leave network.node_name empty or set "
                "compute.local_host = false"
            )
        return self

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'souverain.db'}"

    def _reachable(self, port: int) -> str:
        host = self.server.host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind still needs a reachable URL
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.server.tls else 'http'}://{host}:{port}"

    @property
    def base_url(self) -> str:
        """Where OpenStack clients reach the APIs."""
        return self.server.public_url or self._reachable(self.server.port)

    @property
    def s3_url(self) -> str:
        """Where S3 clients reach the object store (its own port)."""
        return self.server.s3_public_url or self._reachable(self.server.s3_port)


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`SOUVERAIN_SERVER__PORT=9000` becomes `{"server": {"port": "9000"}}`."""
    out: dict[str, Any] = {}
    skip = {"SOUVERAIN_ADMIN_PASSWORD", "SOUVERAIN_CONFIG"}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in skip:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _describe(error: ValidationError, origin: str) -> str:
    lines = []
    for item in error.errors():
        name = ".".join(str(p) for p in item["loc"]) or "(root)"
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown setting {name!r} ({origin})")
        else:
            lines.append(f"invalid setting {name!r}: {item['msg']} ({origin})")
    return "; ".join(lines)


def load_settings(
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build and validate the settings; raise ConfigError naming the bad setting."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    origin = "defaults"
    if config_file is None and env.get("SOUVERAIN_CONFIG"):
        config_file = Path(env["SOUVERAIN_CONFIG"])
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {config_file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
        origin = f"from {config_file}, env or flags"
    env_data = _env_overrides(env)
    if env_data:
        origin = "from config file, SOUVERAIN_* env or flags"
    _merge(data, env_data)
    _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None
