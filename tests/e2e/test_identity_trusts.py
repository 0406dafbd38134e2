"""Trusts as customers reach them: made with openstacksdk, shown, listed and deleted with
`openstack trust`, the trustee's trust-scoped token through keystoneauth, on a real server."""

from __future__ import annotations

import openstack

from .conftest import REGION, Cloud


def test_trustor_delegates_reader_and_the_trustee_acts_with_it(cloud: Cloud) -> None:
    trustor = cloud.make_tenant("trustor")
    trustee = cloud.make_tenant("trustee")
    # openstacksdk names the trustee by id: the trustor cannot look other projects' users up
    as_trustor = cloud.connect(trustor.user_name, trustor.password, trustor.project_name)
    created = as_trustor.identity.create_trust(
        trustor_user_id=trustor.user_id,
        trustee_user_id=trustee.user_id,
        project_id=trustor.project_id,
        roles=[{"name": "reader"}],
        is_impersonation=False,
    )
    trust_id = created.id
    assert created.project_id == trustor.project_id
    shown = cloud.cli_json("trust", "show", trust_id, cloud=trustor.cloud_name)
    assert shown["trustee_user_id"] == trustee.user_id

    conn = openstack.connect(
        auth_url=cloud.auth_url,
        username=trustee.user_name,
        password=trustee.password,
        user_domain_name="Default",
        trust_id=trust_id,
        region_name=REGION,
        load_yaml_config=False,
        load_envvars=False,
    )
    access = conn.session.auth.get_access(conn.session)
    assert access.trust_id == trust_id
    assert access.project_id == trustor.project_id
    assert access.role_names == ["reader"]
    # the trustee reads the trustor's project with the delegated role
    assert list(conn.image.images()) is not None

    cloud.cli_ok("trust", "delete", trust_id, cloud=trustor.cloud_name)
    listed = cloud.cli_json("trust", "list", cloud="admin")
    assert trust_id not in [t["ID"] for t in listed]
