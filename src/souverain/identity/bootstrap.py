"""First-start set-up, idempotent: default domain, admin project and user, roles, catalog.

Running it again changes nothing but what must follow the current settings:
the region, and the catalog endpoints (their URLs follow the listening port).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.ids import new_id, new_secret
from souverain.identity import models as m
from souverain.identity.service import (
    DEFAULT_DOMAIN_ID,
    CatalogEntry,
    IdentityService,
    check_secret,
    hash_secret,
)

BUILTIN_ROLES = ("admin", "member", "reader")
# Roles the policy gives a meaning beyond the three: ResellerAdmin acts on every Swift
# account and alone sets an account's quota.
SERVICE_ROLES = ("ResellerAdmin",)
INTERFACES = ("public", "internal", "admin")


@dataclass
class BootstrapResult:
    admin_user_id: str
    admin_project_id: str
    admin_password: str | None  # known only when just set


def _naive_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def bootstrap(
    identity: IdentityService,
    region: str,
    base_url: str,
    services: Sequence[CatalogEntry],
    admin_password: str | None,
    rounds: int,
) -> BootstrapResult:
    with identity.db.session() as s:
        if s.get(m.Domain, DEFAULT_DOMAIN_ID) is None:
            s.add(
                m.Domain(
                    id=DEFAULT_DOMAIN_ID,
                    name="Default",
                    description="The default domain",
                    enabled=True,
                    tags=[],
                )
            )
        roles = _builtin_roles(s)
        project = _admin_project(s)
        user, new_password = _admin_user(s, admin_password, rounds)
        s.flush()
        for target_type, target_id in (("project", project.id), ("system", "all")):
            key = ("user", user.id, target_type, target_id, roles["admin"])
            if s.get(m.Assignment, key) is None:
                s.add(
                    m.Assignment(
                        actor_type="user",
                        actor_id=user.id,
                        target_type=target_type,
                        target_id=target_id,
                        role_id=roles["admin"],
                    )
                )
        if s.get(m.Region, region) is None:
            s.add(m.Region(id=region, description="", parent_region_id=None))
        s.flush()
        for entry in services:
            _sync_service(s, entry, region, base_url)
        result = BootstrapResult(user.id, project.id, new_password)
    identity.core.changed()
    return result


def _builtin_roles(s: Session) -> dict[str, str]:
    """The ids of admin, member and reader, created if missing."""
    roles: dict[str, str] = {}
    for name in BUILTIN_ROLES + SERVICE_ROLES:
        role = s.scalars(
            select(m.Role).where(m.Role.name == name, m.Role.domain_id.is_(None))
        ).first()
        if role is None:
            role = m.Role(id=new_id(), name=name, domain_id=None, description="")
            s.add(role)
        roles[name] = role.id
    return roles


def _admin_project(s: Session) -> m.Project:
    project = s.scalars(
        select(m.Project).where(m.Project.domain_id == DEFAULT_DOMAIN_ID, m.Project.name == "admin")
    ).first()
    if project is None:
        project = m.Project(
            id=new_id(),
            name="admin",
            domain_id=DEFAULT_DOMAIN_ID,
            description="Bootstrap project for the cloud operator",
            enabled=True,
            tags=[],
        )
        s.add(project)
    return project


def _admin_user(s: Session, admin_password: str | None, rounds: int) -> tuple[m.User, str | None]:
    """The admin user, and its password when it was just set (created, or changed to the
    one configured)."""
    user = s.scalars(
        select(m.User).where(m.User.domain_id == DEFAULT_DOMAIN_ID, m.User.name == "admin")
    ).first()
    new_password: str | None = None
    if user is None:
        new_password = admin_password or new_secret(18)
        user = m.User(
            id=new_id(),
            name="admin",
            domain_id=DEFAULT_DOMAIN_ID,
            enabled=True,
            password_hash=hash_secret(new_password, rounds),
            password_changed_at=_naive_now(),
            extra={},
            created_at=_naive_now(),
        )
        s.add(user)
    elif admin_password and not _matches(admin_password, user.password_hash):
        new_password = admin_password
        user.password_hash = hash_secret(admin_password, rounds)
        user.password_changed_at = _naive_now()
    return user, new_password


def _matches(password: str, hashed: str | None) -> bool:
    return bool(hashed) and check_secret(password, hashed or "")


def _sync_service(s: Session, entry: CatalogEntry, region: str, base_url: str) -> None:
    service = s.scalars(select(m.Service).where(m.Service.type == entry.type)).first()
    if service is None:
        service = m.Service(
            id=new_id(), type=entry.type, name=entry.name, description="", enabled=True
        )
        s.add(service)
        s.flush()
    url = entry.url or f"{base_url}{entry.path}"
    for interface in INTERFACES:
        endpoint = s.scalars(
            select(m.Endpoint).where(
                m.Endpoint.service_id == service.id,
                m.Endpoint.interface == interface,
                m.Endpoint.region_id == region,
            )
        ).first()
        if endpoint is None:
            s.add(
                m.Endpoint(
                    id=new_id(),
                    service_id=service.id,
                    region_id=region,
                    interface=interface,
                    url=url,
                    enabled=True,
                )
            )
        elif endpoint.url != url:
            endpoint.url = url


def write_clouds_yaml(
    path: Path, auth_url: str, region: str, password: str | None, cacert: Path | None = None
) -> bool:
    """Write the admin's clouds.yaml (mode 0600); keep the known password if not given.
    With TLS, `cacert` names the CA file the clients verify the server with.

    Returns False when no password is known (the file is then left alone).
    """
    if password is None:
        try:
            existing = yaml.safe_load(path.read_text()) or {}
            password = existing["clouds"]["souverain"]["auth"]["password"]
        except (FileNotFoundError, KeyError, TypeError, yaml.YAMLError):
            return False
    data = {
        "clouds": {
            "souverain": {
                "auth": {
                    "auth_url": auth_url,
                    "username": "admin",
                    "password": password,
                    "project_name": "admin",
                    "user_domain_name": "Default",
                    "project_domain_name": "Default",
                },
                "region_name": region,
                "interface": "public",
                "identity_api_version": 3,
            }
        }
    }
    if cacert is not None:
        data["clouds"]["souverain"].update({"cacert": str(cacert), "verify": True})
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(data, handle, default_flow_style=False, sort_keys=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return True


def write_aws_config(path: Path, s3_url: str, region: str, ca_bundle: Path | None) -> None:
    """An AWS CLI/SDK config file (profile `souverain`) naming the S3 endpoint, the region
    and, with TLS, the CA bundle to verify it with. It holds no key: EC2 credentials are a
    user's own (`openstack ec2 credentials create`)."""
    lines = [
        "[profile souverain]",
        f"region = {region}",
        f"endpoint_url = {s3_url}",
    ]
    if ca_bundle is not None:
        lines.append(f"ca_bundle = {ca_bundle}")
    lines += ["s3 =", "    addressing_style = path"]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
