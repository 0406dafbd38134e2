"""Keystone v3 request bodies as pydantic models: what the API accepts, checked at the edge.

The service trusts what these let through; it never sees a raw body.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from souverain.common.clock import parse_isotime

Name = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=False)]
Text = Annotated[str, StringConstraints(max_length=65535)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Tags = list[Annotated[str, StringConstraints(min_length=1, max_length=255)]]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _Update(_Body):
    """A PATCH body: any field may be left out, but only those in `nullable` may be null.

    Without this, `{"name": null}` or `{"enabled": null}` reached the database as an
    empty name or a non-boolean and failed there (500) instead of here (400).
    """

    nullable: ClassVar[frozenset[str]] = frozenset({"description"})

    @model_validator(mode="before")
    @classmethod
    def _refuse_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None and key in cls.model_fields and key not in cls.nullable:
                    raise ValueError(f"{key} cannot be null")
        return data


class DomainCreate(_Body):
    name: Name
    description: Text | None = None
    enabled: bool = True
    tags: Tags | None = None
    explicit_domain_id: Id | None = None


class DomainUpdate(_Update):
    name: Name | None = None
    description: Text | None = None
    enabled: bool | None = None
    tags: Tags | None = None


class ProjectCreate(_Body):
    name: Name
    domain_id: Id | None = None
    parent_id: Id | None = None
    description: Text | None = None
    enabled: bool = True
    is_domain: bool = False
    tags: Tags | None = None


class ProjectUpdate(_Update):
    name: Name | None = None
    domain_id: Id | None = None
    description: Text | None = None
    enabled: bool | None = None
    tags: Tags | None = None


class UserCreate(_Body):
    model_config = ConfigDict(strict=True, extra="allow")
    name: Name
    domain_id: Id | None = None
    enabled: bool = True
    password: Annotated[str, StringConstraints(max_length=4096)] | None = None
    default_project_id: Id | None = None
    description: Text | None = None
    email: Text | None = None
    options: dict[str, Any] | None = None


class UserUpdate(_Update):
    model_config = ConfigDict(strict=True, extra="allow")
    nullable = frozenset({"description", "email", "default_project_id", "password"})
    name: Name | None = None
    domain_id: Id | None = None
    enabled: bool | None = None
    password: Annotated[str, StringConstraints(max_length=4096)] | None = None
    default_project_id: Id | None = None
    description: Text | None = None
    email: Text | None = None
    options: dict[str, Any] | None = None


class PasswordChange(_Body):
    password: Annotated[str, StringConstraints(max_length=4096)]
    original_password: Annotated[str, StringConstraints(max_length=4096)]


class GroupCreate(_Body):
    name: Name
    domain_id: Id | None = None
    description: Text | None = None


class GroupUpdate(_Update):
    name: Name | None = None
    description: Text | None = None


class RoleCreate(_Body):
    name: Name
    domain_id: Id | None = None
    description: Text | None = None


class RoleUpdate(_Update):
    name: Name | None = None
    description: Text | None = None


class RegionCreate(_Body):
    id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    description: Text | None = None
    parent_region_id: Annotated[str, StringConstraints(max_length=255)] | None = None


class RegionUpdate(_Update):
    nullable = frozenset({"description", "parent_region_id"})
    description: Text | None = None
    parent_region_id: Annotated[str, StringConstraints(max_length=255)] | None = None


class ServiceCreate(_Body):
    type: Name
    name: Annotated[str, StringConstraints(max_length=255)] | None = None
    description: Text | None = None
    enabled: bool = True


class ServiceUpdate(_Update):
    nullable = frozenset({"description", "name"})
    type: Name | None = None
    name: Annotated[str, StringConstraints(max_length=255)] | None = None
    description: Text | None = None
    enabled: bool | None = None


Interface = Annotated[str, StringConstraints(pattern=r"^(public|internal|admin)$")]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^https?://")]


class EndpointCreate(_Body):
    service_id: Id
    interface: Interface
    url: Url
    region_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    region: Annotated[str, StringConstraints(max_length=255)] | None = None
    enabled: bool = True


class EndpointUpdate(_Update):
    nullable = frozenset({"region_id", "region"})
    service_id: Id | None = None
    interface: Interface | None = None
    url: Url | None = None
    region_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    region: Annotated[str, StringConstraints(max_length=255)] | None = None
    enabled: bool | None = None


class RoleRef(_Body):
    id: Id | None = None
    name: Name | None = None


class AppCredCreate(_Body):
    name: Name
    description: Text | None = None
    secret: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    expires_at: dt.datetime | None = None
    roles: list[dict[str, Any]] | None = None
    unrestricted: bool = False
    access_rules: list[Any] | None = None

    @field_validator("expires_at", mode="before")
    @classmethod
    def _parse_time(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 time string")
        try:
            return parse_isotime(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 time string") from None


class CredentialCreate(_Body):
    type: Name
    blob: Annotated[str, StringConstraints(min_length=1, max_length=65535)]
    user_id: Id
    project_id: Id | None = None


class CredentialUpdate(_Update):
    nullable = frozenset({"project_id"})
    blob: Annotated[str, StringConstraints(min_length=1, max_length=65535)] | None = None
    project_id: Id | None = None


class Ec2Create(_Body):
    tenant_id: Id


class TrustCreate(_Body):
    trustor_user_id: Id
    trustee_user_id: Id
    project_id: Id
    impersonation: bool
    roles: list[dict[str, Any]] | None = None
    expires_at: dt.datetime | None = None
    remaining_uses: Annotated[int, Field(gt=0)] | None = None
    allow_redelegation: bool = False

    @field_validator("expires_at", mode="before")
    @classmethod
    def _parse_time(cls, value: Any) -> Any:
        return AppCredCreate._parse_time(value)
