"""Attacks across tenants and roles, on the RBAC matrix's world (one of everything in
project A, a member of project B): B guessing A's ids, SQL metacharacters in every list
filter, and A's member trying to make itself admin through every update API.

The tests run in test_rbac_matrix.py, which imports them, so that the world is built once
(it takes seconds) and they run before the matrix's allowed calls change it; they leave
A's resources as they found them.

Each attack asserts the refusal and that nothing changed (every row of every table,
hashed before and after). The OpenStack APIs answer another project's id with 404, as
if it did not exist; S3 and Swift answer 403 (AccessDenied), as AWS and Swift do, since
bucket and account names are not secrets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .attack_support import Signer, s3_code

if TYPE_CHECKING:
    from .test_rbac_matrix import World


def _send(world: World, token: str, method: str, path: str, body: Any = None) -> Any:
    return world.api(method, path, token, body, headers=_headers_for(method, path))


# ------------------------------------------------------------------ B guesses A's ids


def _guesses(world: World) -> list[tuple[str, str, Any]]:
    """(method, path, body) on each of A's resources: reads, updates, deletes, actions."""
    i = world.ids
    nova, cinder = "/compute/v2.1", "/volume/v3"
    server_path = f"{nova}/servers/{i['server']}"
    out: list[tuple[str, str, Any]] = [
        ("GET", server_path, None),
        ("PUT", server_path, {"server": {"name": "taken"}}),
        ("POST", f"{server_path}/action", {"os-stop": None}),
        ("POST", f"{server_path}/action", {"createImage": {"name": "stolen"}}),
        ("GET", f"{server_path}/metadata", None),
        ("PUT", f"{server_path}/metadata/k", {"meta": {"k": "b"}}),
        ("GET", f"{server_path}/os-instance-actions", None),
        ("DELETE", server_path, None),
        ("GET", f"{nova}/os-server-groups/{i['server_group']}", None),
        ("DELETE", f"{nova}/os-server-groups/{i['server_group']}", None),
        ("GET", f"{nova}/os-keypairs/{i['keypair']}", None),
        ("DELETE", f"{nova}/os-keypairs/{i['keypair']}", None),
    ]
    for kind, collection, update in (
        ("volume", "volumes", {"volume": {"name": "taken"}}),
        ("snapshot", "snapshots", {"snapshot": {"name": "taken"}}),
        ("backup", "backups", None),
    ):
        path = f"{cinder}/{collection}/{i[kind]}"
        out += [("GET", path, None), ("DELETE", path, None)]
        if update is not None:
            out.append(("PUT", path, update))
    out += [
        ("POST", f"{cinder}/volumes/{i['volume']}/action", {"os-extend": {"new_size": 2}}),
        ("POST", f"{cinder}/backups/{i['backup']}/restore", {"restore": {}}),
        ("POST", f"{cinder}/snapshots", {"snapshot": {"volume_id": i["volume"]}}),
        ("POST", f"{cinder}/backups", {"backup": {"volume_id": i["volume"]}}),
        ("POST", f"{cinder}/volumes", {"volume": {"size": 1, "snapshot_id": i["snapshot"]}}),
    ]
    return out


def _more_guesses(world: World) -> list[tuple[str, str, Any]]:
    """The same for A's image, network resources, identity credentials, billing account."""
    i, a = world.ids, world.a
    neutron = "/network/v2.0"
    out: list[tuple[str, str, Any]] = []
    image = f"/image/v2/images/{i['image']}"
    patch = [{"op": "replace", "path": "/name", "value": "taken"}]
    out += [("GET", image, None), ("GET", f"{image}/file", None), ("PATCH", image, patch),
            ("DELETE", image, None)]  # fmt: skip
    for kind, collection in (
        ("network", "networks"),
        ("subnet", "subnets"),
        ("port", "ports"),
        ("security_group", "security-groups"),
        ("router", "routers"),
        ("floatingip", "floatingips"),
        ("subnetpool", "subnetpools"),
    ):
        path = f"{neutron}/{collection}/{i[kind]}"
        out += [("GET", path, None), ("PUT", path, {kind: {"description": "taken"}}),
                ("DELETE", path, None)]  # fmt: skip
    out += [
        (
            "PUT",
            f"{neutron}/routers/{i['router']}/remove_router_interface",
            {"subnet_id": i["subnet"]},
        ),
        ("POST", f"{neutron}/ports", {"port": {"network_id": i["network"]}}),
        (
            "POST",
            f"{neutron}/subnets",
            {"subnet": {"network_id": i["network"], "cidr": "10.99.0.0/24", "ip_version": 4}},
        ),
        ("GET", f"{neutron}/security-group-rules/{i['security_group_rule']}", None),
        ("DELETE", f"{neutron}/security-group-rules/{i['security_group_rule']}", None),
    ]
    app_cred = f"/identity/v3/users/{a.id}/application_credentials/{i['app_cred']}"
    ec2 = f"/identity/v3/users/{a.id}/credentials/OS-EC2/{i['ec2']}"
    out += [
        ("GET", app_cred, None),
        ("DELETE", app_cred, None),
        ("GET", ec2, None),
        ("DELETE", ec2, None),
        ("GET", f"/identity/v3/credentials/{i['credential']}", None),
        ("PATCH", f"/identity/v3/credentials/{i['credential']}", {"credential": {"blob": "x"}}),
        ("DELETE", f"/identity/v3/credentials/{i['credential']}", None),
        ("GET", f"/identity/v3/projects/{a.project_id}", None),
        ("GET", f"/identity/v3/users/{a.id}", None),
    ]
    account = f"/billing/v1/accounts/{i['account']}"
    out += [("GET", account, None), ("PATCH", account, {"account": {"name": "taken"}}),
            ("GET", f"{account}/consumption", None), ("GET", f"{account}/invoices", None)]  # fmt: skip
    return out


def test_another_projects_ids_are_not_found_and_nothing_changes(world: World) -> None:
    other = world.callers["other"].token
    # B's own default security group, which Neutron makes on B's first network call
    assert _send(world, other, "GET", "/network/v2.0/security-groups").status_code == 200
    before = world.fingerprint()
    failures = []
    for method, path, body in _guesses(world) + _more_guesses(world):
        sent = _send(world, other, method, path, body)
        if sent.status_code != 404:
            failures.append(f"{method} {path}: {sent.status_code} {sent.text[:120]}")
    assert failures == [], "\n".join(failures)
    assert world.fingerprint() == before


def test_another_projects_buckets_objects_and_containers_are_refused(world: World) -> None:
    """S3 and Swift refuse with 403, the bucket or account named being no secret."""
    a_s3, b_s3 = Signer(world.cloud, world.a), Signer(world.cloud, world.b)
    assert a_s3.send("PUT", "/a-private").status_code == 200
    assert a_s3.send("PUT", "/a-private/secret", b"A's secret").status_code == 200
    before = world.fingerprint()
    for method, path, body in (
        ("GET", "/a-private", b""),
        ("GET", "/a-private/secret", b""),
        ("HEAD", "/a-private/secret", b""),
        ("PUT", "/a-private/planted", b"B's"),
        ("DELETE", "/a-private/secret", b""),
        ("DELETE", "/a-private", b""),
        ("GET", "/a-private?acl", b""),
        ("PUT", "/a-private?policy", b'{"Statement": []}'),
        ("POST", "/a-private/secret?uploads", b""),
    ):
        sent = b_s3.send(method, path, body)
        assert sent.status_code == 403, (method, path, sent.status_code)
        assert method == "HEAD" or s3_code(sent) == "AccessDenied"
        assert b"A's secret" not in sent.content
    copy = b_s3.send("PUT", "/b-bucket")
    assert copy.status_code == 200
    stolen = b_s3.send("PUT", "/b-bucket/copy", **{"x-amz-copy-source": "/a-private/secret"})
    assert stolen.status_code == 403, stolen.text
    before = world.fingerprint()
    container = f"/object-storage/v1/AUTH_{world.a.project_id}/rbac-private"
    other = world.callers["other"].token
    for method in ("GET", "HEAD", "POST", "DELETE", "PUT"):
        for path in (container, f"{container}/obj", f"{container}/planted"):
            sent = _send(world, other, method, path)
            assert sent.status_code == 403, (method, path, sent.status_code)
    assert world.fingerprint() == before


# ------------------------------------------------------------------ SQL metacharacters

METACHARACTERS = ["' OR 1=1 --", "%", "_", "a\\'\"\x00%25*[a]"]


def _filter_paths() -> list[tuple[str, str, list[str]]]:
    """(list path, the key of its items, the filters it takes)."""
    return [
        ("/compute/v2.1/servers/detail", "servers",
         ["name", "status", "marker", "sort_key", "tags", "tags-any", "image", "flavor"]),
        ("/compute/v2.1/os-keypairs", "keypairs", ["marker"]),
        ("/compute/v2.1/os-server-groups", "server_groups", ["marker"]),
        ("/volume/v3/volumes/detail", "volumes", ["name", "status", "marker", "sort"]),
        ("/volume/v3/snapshots/detail", "snapshots", ["name", "status", "marker", "sort"]),
        ("/volume/v3/backups/detail", "backups", ["name", "status", "marker"]),
        ("/image/v2/images", "images", ["name", "status", "marker", "sort_key", "tag",
                                        "visibility", "owner"]),
        ("/network/v2.0/networks", "networks", ["name", "status", "tags", "tags-any",
                                                "marker", "sort_key", "description"]),
        ("/network/v2.0/subnets", "subnets", ["name", "cidr", "network_id", "marker"]),
        ("/network/v2.0/ports", "ports", ["name", "device_id", "mac_address", "fixed_ips"]),
        ("/network/v2.0/security-groups", "security_groups", ["name", "marker"]),
        ("/network/v2.0/routers", "routers", ["name", "status"]),
        ("/network/v2.0/floatingips", "floatingips", ["floating_ip_address", "status"]),
        ("/identity/v3/users/{user}/application_credentials", "application_credentials",
         ["name"]),
        ("/identity/v3/credentials", "credentials", ["type", "user_id"]),
        ("/billing/v1/accounts", "accounts", ["name", "marker"]),
    ]  # fmt: skip


def _ids_in(items: Any) -> set[str]:
    if not isinstance(items, list):
        return set()
    return {str(item.get("id") or item.get("keypair", {}).get("name")) for item in items}


def test_sql_metacharacters_in_list_filters_never_widen_nor_fail(world: World) -> None:
    before = world.fingerprint()
    other = world.callers["other"]
    failures = []
    for template, key, filters in _filter_paths():
        for caller, user in ((other, world.b.id),):
            path = template.format(user=user)
            for name in filters:
                for value in METACHARACTERS:
                    query = f"{path}?{name}={quote(value, safe='%')}"
                    sent = _send(world, caller.token, "GET", query)
                    where = f"{caller.name} {query}"
                    if sent.status_code >= 500 or sent.status_code in (401, 403):
                        failures.append(f"{where}: {sent.status_code}")
                        continue
                    if sent.status_code != 200:
                        continue  # a 400 or 404 for a filter it will not take
                    found = _ids_in(sent.json().get(key))
                    if caller is other and found & world.private:
                        failures.append(f"{where}: shows A's {found & world.private}")
                    if name == "name" and value in ("%", "_") and found:
                        failures.append(f"{where}: a wildcard widened to {found}")
    assert failures == [], "\n".join(failures)
    assert world.fingerprint() == before


def test_like_wildcards_in_names_match_only_themselves(world: World) -> None:
    """A's own network `a-net`, volume `a-vol` and image `boot`, looked for by patterns; the
    admin's users and projects too."""
    token = world.a.token
    admin = world.cloud.admin_token
    for path, key, patterns in (
        ("/identity/v3/users", "users", ["%", "_%", "admi_", "' OR 1=1 --"]),
        ("/identity/v3/projects", "projects", ["%", "admi_", "' OR '1'='1"]),
    ):
        for pattern in patterns:
            sent = _send(world, admin, "GET", f"{path}?name={quote(pattern)}")
            assert sent.status_code == 200, sent.text
            assert sent.json()[key] == [], (path, pattern)
    for path, key, patterns in (
        ("/network/v2.0/networks", "networks", ["a_net", "a-%", "%net", "A-NET"]),
        ("/volume/v3/volumes", "volumes", ["a_vol", "a-%", "%"]),
        ("/image/v2/images", "images", ["b__t", "b%", "%oot"]),
    ):
        for pattern in patterns:
            sent = _send(world, token, "GET", f"{path}?name={quote(pattern)}")
            assert sent.status_code == 200, sent.text
            assert sent.json()[key] == [], (path, pattern)


# ------------------------------------------------------------------ escalation


def _escalations(world: World) -> list[tuple[str, str, Any]]:
    """Roles, users, projects, application credentials, trusts, EC2 credentials."""
    i, a, b = world.ids, world.a, world.b
    roles = world.cloud.role_ids
    admin = roles["admin"]
    project = a.project_id
    return [
        ("PUT", f"/identity/v3/projects/{project}/users/{a.id}/roles/{admin}", None),
        ("PUT", f"/identity/v3/domains/default/users/{a.id}/roles/{admin}", None),
        ("PUT", f"/identity/v3/projects/{project}/groups/{i['group']}/roles/{admin}", None),
        (
            "PUT",
            f"/identity/v3/OS-INHERIT/domains/default/users/{a.id}/roles/{admin}"
            "/inherited_to_projects",
            None,
        ),
        ("PUT", f"/identity/v3/groups/{world.ids['group']}/users/{b.id}", None),
        ("PATCH", f"/identity/v3/users/{a.id}", {"user": {"domain_id": "other"}}),
        (
            "PATCH",
            f"/identity/v3/users/{a.id}",
            {"user": {"options": {"ignore_lockout_failure_attempts": True}}},
        ),
        ("PATCH", f"/identity/v3/users/{b.id}", {"user": {"enabled": False}}),
        ("PATCH", f"/identity/v3/projects/{project}", {"project": {"is_domain": True}}),
        ("PATCH", f"/identity/v3/projects/{project}", {"project": {"parent_id": "default"}}),
        ("POST", "/identity/v3/projects", {"project": {"name": "mine"}}),
        ("POST", "/identity/v3/users", {"user": {"name": "mine", "password": "x" * 12}}),
        ("POST", "/identity/v3/roles", {"role": {"name": "superuser"}}),
        (
            "POST",
            f"/identity/v3/users/{a.id}/application_credentials",
            {"application_credential": {"name": "up", "roles": [{"name": "admin"}]}},
        ),
        (
            "POST",
            f"/identity/v3/users/{a.id}/application_credentials",
            {"application_credential": {"name": "up2", "roles": [{"id": admin}]}},
        ),
        (
            "POST",
            "/identity/v3/OS-TRUST/trusts",
            {
                "trust": {
                    "trustor_user_id": a.id,
                    "trustee_user_id": b.id,
                    "project_id": project,
                    "impersonation": True,
                    "roles": [{"name": "admin"}],
                }
            },
        ),
        (
            "POST",
            "/identity/v3/OS-TRUST/trusts",
            {
                "trust": {
                    "trustor_user_id": b.id,
                    "trustee_user_id": a.id,
                    "project_id": b.project_id,
                    "impersonation": True,
                    "roles": [{"name": "member"}],
                }
            },
        ),
        ("POST", f"/identity/v3/users/{b.id}/credentials/OS-EC2", {"tenant_id": b.project_id}),
        ("POST", f"/identity/v3/users/{a.id}/credentials/OS-EC2", {"tenant_id": b.project_id}),
        (
            "POST",
            "/identity/v3/credentials",
            {"credential": {"type": "ec2", "user_id": b.id, "blob": '{"access":"x","secret":"y"}'}},
        ),
    ]


def _service_escalations(world: World) -> list[tuple[str, str, Any]]:
    """Quotas, flavors, volume types, shared and external networks, port bindings, public
    images, billing accounts: what only the admin decides."""
    i, a = world.ids, world.a
    project = a.project_id
    return [
        ("PUT", f"/compute/v2.1/os-quota-sets/{project}", {"quota_set": {"instances": 1000}}),
        (
            "POST",
            "/compute/v2.1/flavors",
            {"flavor": {"name": "big", "ram": 1, "vcpus": 1, "disk": 1}},
        ),
        (
            "POST",
            f"/compute/v2.1/flavors/{i['flavor']}/os-extra_specs",
            {"extra_specs": {"k": "v"}},
        ),
        ("POST", "/volume/v3/types", {"volume_type": {"name": "gold"}}),
        ("PUT", f"/volume/v3/types/{i['volume_type']}", {"volume_type": {"name": "gold"}}),
        ("PUT", f"/volume/v3/os-quota-sets/{project}", {"quota_set": {"volumes": 1000}}),
        ("PUT", f"/network/v2.0/quotas/{project}", {"quota": {"network": 1000}}),
        ("POST", "/network/v2.0/networks", {"network": {"name": "ext", "router:external": True}}),
        ("POST", "/network/v2.0/networks", {"network": {"name": "sh", "shared": True}}),
        (
            "POST",
            "/network/v2.0/networks",
            {"network": {"name": "seg", "provider:network_type": "flat"}},
        ),
        ("PUT", f"/network/v2.0/networks/{i['network']}", {"network": {"shared": True}}),
        ("PUT", f"/network/v2.0/networks/{i['network']}", {"network": {"router:external": True}}),
        (
            "POST",
            "/network/v2.0/ports",
            {"port": {"network_id": i["network"], "binding:host_id": "evil"}},
        ),
        ("PUT", f"/network/v2.0/ports/{i['port']}", {"port": {"binding:host_id": "evil"}}),
        ("PUT", f"/network/v2.0/ports/{i['port']}", {"port": {"binding:profile": {"a": 1}}}),
        (
            "PUT",
            f"/network/v2.0/ports/{i['port']}",
            {"port": {"device_owner": "network:router_gateway"}},
        ),
        ("PUT", f"/network/v2.0/subnetpools/{i['subnetpool']}", {"subnetpool": {"shared": True}}),
        (
            "PATCH",
            f"/image/v2/images/{i['image']}",
            [{"op": "replace", "path": "/visibility", "value": "public"}],
        ),
        (
            "POST",
            "/image/v2/images",
            {"name": "p", "visibility": "public", "disk_format": "raw", "container_format": "bare"},
        ),
        (
            "POST",
            "/billing/v1/accounts",
            {"account": {"name": "mine", "country": "FR", "owner_user_id": a.id}},
        ),
    ]


def _headers_for(method: str, path: str) -> dict[str, str]:
    if method == "PATCH" and path.startswith("/image/"):
        return {"Content-Type": "application/openstack-images-v2.1-json-patch"}
    return {}


def test_a_member_cannot_make_itself_more_through_any_update_api(world: World) -> None:
    member = world.callers["member"].token
    before = world.fingerprint()
    failures = []
    for method, path, body in _escalations(world) + _service_escalations(world):
        sent = _send(world, member, method, path, body)
        if sent.status_code not in (400, 403, 404):
            failures.append(f"{method} {path} {body}: {sent.status_code} {sent.text[:150]}")
    assert failures == [], "\n".join(failures)
    assert world.fingerprint() == before
    view = world.cloud.platform.identity.validate(member)
    assert view is not None and view.context().roles == {"member", "reader"}


def test_port_bindings_are_the_admins_alone(world: World) -> None:
    """Where a port is bound is the platform's to say: Neutron's 403 for a member."""
    before = world.fingerprint()
    port = f"/network/v2.0/ports/{world.ids['port']}"
    for method, path, body, field in (
        ("POST", "/network/v2.0/ports",
         {"port": {"network_id": world.ids["network"], "binding:host_id": "evil"}},
         "create_port:binding:host_id"),
        ("PUT", port, {"port": {"binding:host_id": "evil"}}, "update_port:binding:host_id"),
        ("PUT", port, {"port": {"binding:profile": {"migrating_to": "evil"}}},
         "update_port:binding:profile"),
    ):  # fmt: skip
        sent = _send(world, world.a.token, method, path, body)
        assert sent.status_code == 403, sent.text
        error = sent.json()["NeutronError"]
        assert field in error["message"], error
    assert world.fingerprint() == before
    unbound = {"port": {"name": "still-mine", "binding:host_id": "", "binding:vnic_type": "normal"}}
    assert _send(world, world.a.token, "PUT", port, unbound).status_code == 200


def test_a_restricted_credential_cannot_create_itself_a_wider_one(world: World) -> None:
    """The reader-only application credential asks for more; its token stays a reader's."""
    token = world.callers["app_reader"].token
    before = world.fingerprint()
    for body in (
        {"application_credential": {"name": "wider", "roles": [{"name": "member"}]}},
        {"application_credential": {"name": "wider2", "unrestricted": True}},
    ):
        sent = _send(world, token, "POST", f"/identity/v3/users/{world.a.id}/application_credentials",
                     body)  # fmt: skip
        assert sent.status_code in (400, 403), sent.text
    sent = _send(world, token, "POST", "/identity/v3/OS-TRUST/trusts", {"trust": {
        "trustor_user_id": world.a.id, "trustee_user_id": world.b.id,
        "project_id": world.a.project_id, "impersonation": False, "roles": [{"name": "reader"}]}})  # fmt: skip
    assert sent.status_code == 403, sent.text
    assert world.fingerprint() == before
