"""Compute tables: flavors and who may use them, keypairs, servers, and their actions.

A server row is never removed by a delete: it becomes `deleted` (Nova's soft
delete), so `changes-since` listings and instance actions still answer for it.
The flavor a server runs with is copied into the row, so editing or deleting a
flavor never changes a running server's size or its capacity accounting.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from souverain.db.base import Base


class Flavor(Base):
    __tablename__ = "compute_flavors"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram: Mapped[int] = mapped_column(Integer)  # MiB
    disk: Mapped[int] = mapped_column(Integer)  # GiB
    ephemeral: Mapped[int] = mapped_column(Integer, default=0)
    swap: Mapped[int] = mapped_column(Integer, default=0)
    rxtx_factor: Mapped[float] = mapped_column(Float, default=1.0)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    extra_specs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class FlavorAccess(Base):
    __tablename__ = "compute_flavor_access"
    __table_args__ = (UniqueConstraint("flavor_id", "project_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flavor_id: Mapped[str] = mapped_column(String(255), index=True)
    project_id: Mapped[str] = mapped_column(String(64))


class Keypair(Base):
    __tablename__ = "compute_keypairs"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16), default="ssh")
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Server(Base):
    __tablename__ = "compute_servers"
    __table_args__ = (
        Index("ix_compute_servers_project", "project_id", "deleted"),
        Index("ix_compute_servers_host", "host", "deleted"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    hostname: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    image_id: Mapped[str] = mapped_column(String(64))
    # the flavor at boot (and the old one during a resize): id, name, vcpus, ram, disk, ...
    flavor: Mapped[dict[str, Any]] = mapped_column(JSON)
    old_flavor: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # what the server holds of its host while `host` is set: the scheduler sums these
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    disk_gib: Mapped[int] = mapped_column(Integer, default=0)
    # boot from volume: the root disk is this volume (the image column is then empty)
    root_volume_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    root_volume_delete: Mapped[bool] = mapped_column(Boolean, default=False)
    key_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    key_data: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_data: Mapped[str | None] = mapped_column(Text, nullable=True)  # base64, as sent
    server_metadata: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    config_drive: Mapped[bool] = mapped_column(Boolean, default=True)
    availability_zone: Mapped[str] = mapped_column(String(255))
    networks: Mapped[Any] = mapped_column(JSON, nullable=True)  # as requested
    addresses: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    mac: Mapped[str] = mapped_column(String(17))
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    vm_state: Mapped[str] = mapped_column(String(32))
    task_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    power_state: Mapped[int] = mapped_column(Integer, default=0)
    fault: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    reservation_id: Mapped[str] = mapped_column(String(32))
    launch_index: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    launched_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    terminated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # the addresses the owner says the server is reached at (Nova's accessIPv4/v6)
    access_ip_v4: Mapped[str | None] = mapped_column(String(15), nullable=True)
    access_ip_v6: Mapped[str | None] = mapped_column(String(45), nullable=True)
    # the snapshot a shelved (offloaded) server comes back from on unshelve
    shelved_image_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class ComputeHost(Base):
    """One hypervisor host of the cloud (Nova's compute node): what its agent last reported
    and when, and the hash of the credential it authenticates with.

    The all-in-one `souverain serve` registers its own machine here at start; a host agent
    (`souverain agent`) registers with its enrolment token. Capacities are after
    allocation ratios and reserves; `physical_*` are the machine's own.
    """

    __tablename__ = "compute_hosts"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    # its address on the underlay (VXLAN tunnels end there); None: not reported yet
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # what it runs: "compute", "network" or both, comma separated
    roles: Mapped[str] = mapped_column(String(64), default="compute")
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    disk_gib: Mapped[int] = mapped_column(Integer, default=0)
    physical_vcpus: Mapped[int] = mapped_column(Integer, default=0)
    physical_memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    physical_disk_gib: Mapped[int] = mapped_column(Integer, default=0)
    hypervisor_type: Mapped[str] = mapped_column(String(32), default="QEMU")
    hypervisor_version: Mapped[int] = mapped_column(Integer, default=0)
    # the agent's credential, as its SHA-256 (None: the all-in-one's own host, no agent)
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # bumped whenever what is assigned to the host changes: its agent's watch resumes from it
    revision: Mapped[int] = mapped_column(Integer, default=0)


class ServerGroup(Base):
    """A project's group of servers placed by one policy (Nova's os-server-groups)."""

    __tablename__ = "compute_server_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    policy: Mapped[str] = mapped_column(String(32))
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ServerGroupMember(Base):
    """A server's group: one at most, named when the server was created."""

    __tablename__ = "compute_server_group_members"

    server_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(36), index=True)


class ServiceState(Base):
    """What an operator set on one of a host's services (os-services): a service with no
    row is enabled and up."""

    __tablename__ = "compute_service_states"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    binary: Mapped[str] = mapped_column(String(64), primary_key=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)


class InstanceAction(Base):
    __tablename__ = "compute_instance_actions"
    __table_args__ = (Index("ix_compute_instance_actions_server", "server_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_id: Mapped[str] = mapped_column(String(36))
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    start_time: Mapped[dt.datetime] = mapped_column(DateTime)
    finish_time: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    result: Mapped[str | None] = mapped_column(String(16), nullable=True)  # Success / Error
    message: Mapped[str | None] = mapped_column(Text, nullable=True)


class ComputeQuota(Base):
    """A project's limits (None: the configured default), and the row a quota claim locks."""

    __tablename__ = "compute_quotas"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cores: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ram: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key_pairs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metadata_items: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ConsoleAuthToken(Base):
    """A console URL's token (os-console-auth-tokens): only its SHA-256 is kept, bound to
    one server and one console type, until it expires or the server is deleted."""

    __tablename__ = "compute_console_auth_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    server_id: Mapped[str] = mapped_column(String(36), index=True)
    console_type: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class Aggregate(Base):
    """A group of hosts an admin names (Nova's host aggregate); its `availability_zone`
    makes its hosts a zone users may ask for, its metadata what flavors may require."""

    __tablename__ = "compute_aggregates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    availability_zone: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class AggregateHost(Base):
    __tablename__ = "compute_aggregate_hosts"

    aggregate_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)


class AggregateMetadata(Base):
    """One key of an aggregate's metadata (`availability_zone` is kept on the aggregate)."""

    __tablename__ = "compute_aggregate_metadata"

    aggregate_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class ConsoleTail(Base):
    """The newest part of the serial console of a guest an agent host runs, as its agent
    last sent it (os-getConsoleOutput reads it: the API nodes cannot read the host's
    disk). Gone with the server."""

    __tablename__ = "compute_console_tails"

    server_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    output: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Migration(Base):
    """One move of a server between hosts (Nova's migration record): a live migration, a
    cold one (then confirmed or reverted) or an evacuation. `status` takes Nova's words;
    `endpoint` is where the other side's agent reaches the guest's disk or stream while it
    moves (the underlay address and the ports the agent picked), `message` why it failed.
    The record outlives the move (`os-migrations` lists it) and the server's deletion."""

    __tablename__ = "compute_migrations"
    __table_args__ = (
        Index("ix_compute_migrations_instance", "instance_uuid", "id"),
        Index("ix_compute_migrations_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    instance_uuid: Mapped[str] = mapped_column(String(36))
    source_compute: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dest_compute: Mapped[str | None] = mapped_column(String(255), nullable=True)
    source_node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dest_node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dest_host: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    migration_type: Mapped[str] = mapped_column(String(32))
    old_instance_type_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    new_instance_type_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
