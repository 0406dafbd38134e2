"""Access rules on application credentials with the real clients: made with the `openstack`
CLI, enforced on openstacksdk's calls; and a domain's configuration through a keystoneauth
session (there is no CLI command for it)."""

from __future__ import annotations

import json
from typing import Any

import openstack
import openstack.connection
import pytest
from openstack import exceptions

from tests.e2e.conftest import REGION, Cloud, unique

pytestmark = pytest.mark.e2e

RULES = [
    {"service": "compute", "method": "GET", "path": "/v2.1/servers"},
    {"service": "compute", "method": "GET", "path": "/v2.1/servers/**"},
]


def connect_with(cloud: Cloud, cred: dict[str, Any]) -> openstack.connection.Connection:
    return openstack.connect(
        auth_type="v3applicationcredential",
        auth={
            "auth_url": cloud.auth_url,
            "application_credential_id": cred["ID"],
            "application_credential_secret": cred["Secret"],
        },
        region_name=REGION,
        load_yaml_config=False,
        load_envvars=False,
    )


def test_access_rules_limit_what_the_credential_can_call(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("rules")
    cred: dict[str, Any] = cloud.cli_json(
        "application",
        "credential",
        "create",
        unique("ruled"),
        "--access-rules",
        json.dumps(RULES),
        cloud=tenant.cloud_name,
    )
    cloud.secrets.add(cred["Secret"])
    shown = cred["Access Rules"]
    shown = json.loads(shown) if isinstance(shown, str) else shown
    assert sorted(r["path"] for r in shown) == ["/v2.1/servers", "/v2.1/servers/**"]

    limited = connect_with(cloud, cred)
    assert list(limited.compute.servers()) == []  # GET /v2.1/servers/detail, by the `**` rule
    with pytest.raises(exceptions.HttpException) as volumes:
        list(limited.block_storage.volumes())
    assert volumes.value.status_code == 401
    with pytest.raises(exceptions.HttpException) as created:
        limited.compute.create_server(name="nope", flavor_id="1", image_id="x", networks="none")
    assert created.value.status_code == 401
    with pytest.raises(exceptions.HttpException) as flavors:
        list(limited.compute.flavors())
    assert flavors.value.status_code == 401

    # the rules are the user's: listed, in use so not deletable, invisible to others
    listed = cloud.cli_json("access", "rule", "list", cloud=tenant.cloud_name)
    assert len(listed) == 2
    rule_id = listed[0]["ID"]
    refused = cloud.cli_fails("access", "rule", "delete", rule_id, cloud=tenant.cloud_name)
    assert "in use" in refused
    other = cloud.make_tenant("rules-other")
    hidden = cloud.cli_fails("access", "rule", "show", rule_id, cloud=other.cloud_name)
    assert "Could not find Access Rule" in hidden

    # once no credential uses it, its user deletes it
    cloud.cli_ok("application", "credential", "delete", cred["ID"], cloud=tenant.cloud_name)
    cloud.cli_ok("access", "rule", "delete", rule_id, cloud=tenant.cloud_name)
    left = cloud.cli_json("access", "rule", "list", cloud=tenant.cloud_name)
    assert [r["ID"] for r in left] == [r["ID"] for r in listed[1:]]


def test_domain_config_through_a_keystoneauth_session(cloud: Cloud) -> None:
    admin = cloud.admin
    domain = admin.identity.create_domain(name=unique("ldap-domain"))
    identity = admin.identity
    defaults = identity.get("/domains/config/default").json()["config"]
    assert defaults["identity"]["driver"] == "sql"
    config = {"identity": {"driver": "ldap"}, "ldap": {"url": "ldap://ldap.example"}}
    created = identity.put(f"/domains/{domain.id}/config", json={"config": config})
    assert created.status_code == 201, created.text
    patched = identity.patch(
        f"/domains/{domain.id}/config/ldap/url", json={"config": {"url": "ldap://other"}}
    )
    assert patched.json()["config"]["ldap"]["url"] == "ldap://other"
    assert identity.get(f"/domains/{domain.id}/config/ldap/url").json()["config"] == {
        "url": "ldap://other"
    }
    bad = identity.put(
        f"/domains/{domain.id}/config",
        json={"config": {"assignment": {"driver": "sql"}}},
        raise_exc=False,
    )
    assert bad.status_code == 403
    assert identity.delete(f"/domains/{domain.id}/config").status_code == 204
    gone = identity.get(f"/domains/{domain.id}/config", raise_exc=False)
    assert gone.status_code == 404
    tenant = cloud.make_tenant("not-admin")
    member = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    refused = member.identity.get("/domains/config/default", raise_exc=False)
    assert refused.status_code == 403
