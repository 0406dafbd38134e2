"""A read-only credential reads only, with the real `openstack` CLI in every service.

A reader of a project, and an application credential of its member restricted to
`reader`, list what the project holds and are refused (403, naming the action) every
write; the member itself still writes.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Cloud, Tenant, unique
from tests.e2e.test_credentials import app_cred_flags, create_app_cred

pytestmark = pytest.mark.e2e

READS = (
    ("server", "list"),
    ("network", "list"),
    ("security", "group", "list"),
    ("volume", "list"),
    ("image", "list"),
    ("keypair", "list"),
)
# (command, the policy action its refusal names)
WRITES = (
    (("network", "create"), "network:network:create"),
    (("security", "group", "create"), "network:security_group:create"),
    (("router", "create"), "network:router:create"),
    (("volume", "create", "--size", "1"), "volume:volume:create"),
    (("image", "create"), "image:image:create"),
    (("keypair", "create"), "compute:keypair:create"),
)


def reader_of(cloud: Cloud, tenant: Tenant) -> str:
    """A second user of the tenant's project holding only `reader`; its clouds.yaml name."""
    name = unique("reader")
    password = f"pw-{unique('secret')}-Long"
    cloud.secrets.add(password)
    user = cloud.admin.identity.create_user(name=name, password=password)
    reader = cloud.admin.identity.find_role("reader", ignore_missing=False)
    cloud.admin.identity.assign_project_role_to_user(tenant.project_id, user, reader)
    cloud.add_cloud(name, name, password, tenant.project_name)
    return name


def check_reads_only(cloud: Cloud, flags: list[str], cloud_name: str | None) -> None:
    for command in READS:
        cloud.cli_json(*flags, *command, cloud=cloud_name)
    for command, action in WRITES:
        error = cloud.cli_fails(*flags, *command, unique("nope"), cloud=cloud_name)
        assert "403" in error or "Forbidden" in error, error
        assert action in error, error


def test_a_reader_reads_and_writes_nothing(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("readers")
    check_reads_only(cloud, [], reader_of(cloud, tenant))
    # the member is not refused: the table gives writes to members
    made = cloud.cli_json("network", "create", unique("net"), cloud=tenant.cloud_name)
    assert made["project_id"] == tenant.project_id
    cloud.cli_ok("network", "delete", made["id"], cloud=tenant.cloud_name)


def test_an_application_credential_restricted_to_reader_writes_nothing(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("appreader")
    cred = create_app_cred(cloud, tenant, "reader")
    check_reads_only(cloud, app_cred_flags(cloud, cred["ID"], cred["Secret"]), None)
