"""A domain's own configuration: the identity and ldap groups Keystone lets a domain set,
stored per domain, admin only."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from souverain.identity.models import DomainConfigOption

from .support import Cloud, assert_keystone_error

CUSTOM = {
    "identity": {"driver": "ldap"},
    "ldap": {"url": "ldap://ldap.example:389/", "user_tree_dn": "ou=Users,dc=example,dc=org"},
}


def new_domain(cloud: Cloud) -> str:
    domain_id: str = cloud.create("domains", "domain", name=cloud.unique("dom"))["id"]
    return domain_id


def put_config(cloud: Cloud, domain_id: str, config: Any, token: str | None = None) -> Any:
    return cloud.client.put(
        f"/identity/v3/domains/{domain_id}/config",
        json={"config": config},
        headers={"X-Auth-Token": token or cloud.admin_token},
    )


def test_defaults(shared_cloud: Cloud) -> None:
    every = shared_cloud.get("/v3/domains/config/default")
    assert every.status_code == 200, every.text
    config = every.json()["config"]
    assert config["identity"] == {"driver": "sql", "list_limit": None}
    assert config["ldap"]["url"] == "ldap://localhost"
    assert "password" not in config["ldap"]  # sensitive: never shown
    group = shared_cloud.get("/v3/domains/config/ldap/default").json()["config"]
    assert group == {"ldap": config["ldap"]}
    option = shared_cloud.get("/v3/domains/config/identity/driver/default").json()["config"]
    assert option == {"driver": "sql"}
    assert_keystone_error(shared_cloud.get("/v3/domains/config/assignment/default"), 403)
    assert_keystone_error(shared_cloud.get("/v3/domains/config/ldap/nope/default"), 403)
    assert_keystone_error(shared_cloud.get("/v3/domains/config/ldap/password/default"), 403)


def test_config_lifecycle(cloud: Cloud) -> None:
    domain_id = new_domain(cloud)
    base = f"/v3/domains/{domain_id}/config"
    assert_keystone_error(cloud.get(base), 404)
    created = put_config(cloud, domain_id, CUSTOM)
    assert created.status_code == 201, created.text
    assert created.json()["config"] == CUSTOM
    assert cloud.get(base).json()["config"] == CUSTOM
    assert cloud.get(base + "/ldap").json()["config"] == {"ldap": CUSTOM["ldap"]}
    assert cloud.get(base + "/ldap/url").json()["config"] == {"url": CUSTOM["ldap"]["url"]}
    assert cloud.head(base + "/ldap/url").status_code == 200
    # a group update merges into the group; an option update changes just that option
    patched = cloud.patch(base + "/identity", {"config": {"identity": {"list_limit": 7}}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["config"]["identity"] == {"driver": "ldap", "list_limit": 7}
    option = cloud.patch(base + "/identity/driver", {"config": {"driver": "custom"}})
    assert option.json()["config"]["identity"]["driver"] == "custom"
    whole = cloud.patch(base, {"config": {"ldap": {"page_size": 50}}})
    assert whole.json()["config"]["ldap"]["page_size"] == 50
    assert cloud.delete(base + "/identity/driver").status_code == 204
    assert_keystone_error(cloud.get(base + "/identity/driver"), 404)
    assert cloud.delete(base + "/identity").status_code == 204
    assert_keystone_error(cloud.get(base + "/identity"), 404)
    assert_keystone_error(cloud.delete(base + "/identity"), 404)
    # PUT again replaces the whole configuration, and says 200
    again = put_config(cloud, domain_id, {"identity": {"driver": "sql"}})
    assert again.status_code == 200
    assert cloud.get(base).json()["config"] == {"identity": {"driver": "sql"}}
    assert cloud.delete(base).status_code == 204
    assert_keystone_error(cloud.get(base), 404)


def test_sensitive_option_stored_never_shown(cloud: Cloud) -> None:
    domain_id = new_domain(cloud)
    config = {"ldap": {"url": "ldap://x", "password": "s3cret"}}
    created = put_config(cloud, domain_id, config)
    assert created.status_code == 201
    assert created.json()["config"] == {"ldap": {"url": "ldap://x"}}
    assert "s3cret" not in cloud.get(f"/v3/domains/{domain_id}/config").text
    assert_keystone_error(cloud.get(f"/v3/domains/{domain_id}/config/ldap/password"), 404)
    # it can still be changed and deleted
    path = f"/v3/domains/{domain_id}/config/ldap/password"
    assert cloud.patch(path, {"config": {"password": "other"}}).status_code == 200
    assert cloud.delete(path).status_code == 204
    assert_keystone_error(cloud.delete(path), 404)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"assignment": {"driver": "sql"}},
        {"identity": {"password_hash_rounds": 4}},
        {"identity": {}},
        {"identity": "ldap"},
        ["identity"],
        {"identity": {"driver": "ldap"}, "resource": {"driver": "sql"}},
    ],
)
def test_bad_configs_refused_and_nothing_stored(shared_cloud: Cloud, config: Any) -> None:
    domain_id = new_domain(shared_cloud)
    assert_keystone_error(put_config(shared_cloud, domain_id, config), 403)
    assert_keystone_error(shared_cloud.get(f"/v3/domains/{domain_id}/config"), 404)


def test_bad_updates_refused(cloud: Cloud) -> None:
    domain_id = new_domain(cloud)
    base = f"/v3/domains/{domain_id}/config"
    assert put_config(cloud, domain_id, CUSTOM).status_code == 201
    # a group path names that group only; an option path that option only
    other_group = cloud.patch(base + "/identity", {"config": {"ldap": {"url": "ldap://y"}}})
    assert_keystone_error(other_group, 403)
    two = {"config": {"driver": "x", "list_limit": 3}}
    assert_keystone_error(cloud.patch(base + "/identity/driver", two), 403)
    # an option not set yet cannot be updated through its own path
    assert_keystone_error(cloud.patch(base + "/ldap/suffix", {"config": {"suffix": "x"}}), 404)
    assert_keystone_error(cloud.patch(base, {"config": {"ldap": {"nope": 1}}}), 403)
    assert_keystone_error(cloud.get(base + "/assignment"), 403)
    assert cloud.get(base).json()["config"] == CUSTOM  # nothing changed
    missing = cloud.client.put(
        f"/identity{base}", content=b"[]", headers={"X-Auth-Token": cloud.admin_token}
    )
    assert_keystone_error(missing, 400)


def test_unknown_domain_is_not_found(shared_cloud: Cloud) -> None:
    assert_keystone_error(put_config(shared_cloud, "no-such-domain", CUSTOM), 404)
    assert_keystone_error(shared_cloud.get("/v3/domains/no-such-domain/config"), 404)
    assert_keystone_error(shared_cloud.delete("/v3/domains/no-such-domain/config"), 404)


def test_deleting_the_domain_deletes_its_config(cloud: Cloud) -> None:
    domain_id = new_domain(cloud)
    assert put_config(cloud, domain_id, CUSTOM).status_code == 201
    assert (
        cloud.patch(f"/v3/domains/{domain_id}", {"domain": {"enabled": False}}).status_code == 200
    )
    assert cloud.delete(f"/v3/domains/{domain_id}").status_code == 204
    assert_keystone_error(cloud.get(f"/v3/domains/{domain_id}/config"), 404)
    with cloud.platform.identity.db.session() as s:
        left = s.scalars(
            select(DomainConfigOption).where(DomainConfigOption.domain_id == domain_id)
        ).all()
    assert left == []


def test_only_cloud_admins(cloud: Cloud) -> None:
    domain_id = new_domain(cloud)
    assert put_config(cloud, domain_id, CUSTOM).status_code == 201
    member = cloud.member("member")
    reader = cloud.member("reader")
    base = f"/v3/domains/{domain_id}/config"
    for who in (member, reader):
        assert_keystone_error(cloud.get(base, token=who.token), 403)
        assert_keystone_error(cloud.get("/v3/domains/config/default", token=who.token), 403)
        assert_keystone_error(put_config(cloud, domain_id, {"identity": {}}, who.token), 403)
        patch = {"config": {"identity": {"driver": "x"}}}
        assert_keystone_error(cloud.patch(base, patch, token=who.token), 403)
        assert_keystone_error(cloud.delete(base, token=who.token), 403)
    assert cloud.get(base).json()["config"] == CUSTOM


def test_security_compliance_of_the_default_domain(shared_cloud: Cloud) -> None:
    reader = shared_cloud.member("reader")
    base = "/v3/domains/default/config/security_compliance"
    shown = shared_cloud.get(base, token=reader.token)
    assert shown.status_code == 200, shown.text
    rule = shown.json()["config"]["security_compliance"]
    assert rule["password_regex"] == "^.{8,}$"
    assert "8 characters" in rule["password_regex_description"]
    one = shared_cloud.get(base + "/password_regex", token=reader.token).json()["config"]
    assert one == {"password_regex": "^.{8,}$"}
    assert_keystone_error(shared_cloud.get(base + "/lockout_duration", token=reader.token), 403)
    other = new_domain(shared_cloud)
    path = f"/v3/domains/{other}/config/security_compliance"
    assert_keystone_error(shared_cloud.get(path, token=reader.token), 403)
    assert_keystone_error(shared_cloud.get("/v3/domains/nope/config/security_compliance"), 404)
    # not a group a domain sets
    refused = put_config(shared_cloud, "default", {"security_compliance": {"password_regex": "x"}})
    assert_keystone_error(refused, 403)
