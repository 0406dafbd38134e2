"""Every route of every OpenStack API, called by every kind of caller, against the table.

The routes come from the running platform's own route table (as the layering test
walks it), so a new route is in the matrix the day it is written, and a route whose
action the policy table does not know fails here. One resource of each kind lives in
project A; path parameters are filled with A's real ids. Callers: the cloud admin, a
member and a reader of A, a member of another project B, an application credential of
A's member restricted to `reader`, and A's member with an unscoped and with a
domain-scoped token.

Expected outcomes come from `common/policy`: what the edge refuses is exactly a 403,
in the API's own body, naming the action, and leaves the database as it was. What the
table allows is never a 401 nor a 403, unless the rule leaves the decision to the
service (ownership of a credential, billing's account roles); then a 403 too must
leave the database untouched. B never writes A's resources nor reads them.

Refusals are all checked first, on a database no allowed write has touched yet; the
allowed calls follow, reads before writes before deletes, the admin last.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, MetaData, select

from souverain import server
from souverain.common import policy
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import Forbidden
from souverain.config import load_settings
from souverain.openstack.routing import EdgeRoute

from ..api.support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient, password_auth
from ..postgres import database_overrides
from ..unit.test_layering import _service_routes
from . import swift_matrix as swift
from .tenancy_attacks import (  # noqa: F401 - collected here: they run first, on this world
    test_a_member_cannot_make_itself_more_through_any_update_api,
    test_a_restricted_credential_cannot_create_itself_a_wider_one,
    test_another_projects_buckets_objects_and_containers_are_refused,
    test_another_projects_ids_are_not_found_and_nothing_changes,
    test_like_wildcards_in_names_match_only_themselves,
    test_port_bindings_are_the_admins_alone,
    test_sql_metacharacters_in_list_filters_never_widen_nor_fail,
)

APIS = ("identity", "compute", "network", "volume", "image", "billing", "object-storage")
# in the order their allowed calls run: the app credential before its owner's tokens,
# which may delete it; the admin, who may delete anyone, last
CALLERS = ("anonymous", "app_reader", "unscoped", "domain", "reader", "other", "member", "admin")
READS = ("GET", "HEAD")
# Rules whose last word depends on the target, which only the service knows: a
# credential's owner, a billing account's roles. A 403 from the service is then right.
TARGET_RULES = (policy.Rule.OWNER_READ, policy.Rule.OWNER_WRITE)
SERVICE_DECIDES = (
    "billing:",  # the account's own roles (owner, billing, viewer)
    "identity:get_auth_catalog",  # an unscoped token has no catalog
    "identity:delete_domain",  # the default domain, and any enabled one, stay
    "identity:delete_role",  # the roles the policy names stay
    # an invalid domain configuration (the matrix sends none) is a 403, as in Keystone
    "identity:create_domain_config",
    "identity:update_domain_config",
)


@dataclass(frozen=True)
class Caller:
    name: str
    token: str
    ctx: RequestContext  # what the platform made of the token


@dataclass(frozen=True)
class Call:
    method: str
    template: str
    path: str
    action: str
    grant: str = ""  # Swift: what the container's ACL grants callers outside the account
    headers: tuple[tuple[str, str], ...] = ()  # Swift: X-Web-Mode for a static web read


# ------------------------------------------------------------------ the platform


def _settings(data_dir: Path) -> Any:
    """A host too small for any flavor: a server stays a row (ERROR), no guest is started."""
    return load_settings(
        environ={},
        overrides={
            "data_dir": str(data_dir),
            "identity": {"bcrypt_rounds": 4},
            "audit": {"fsync": False},
            "network": {"dataplane": False},
            "compute": {"host_memory_mib": 1, "reserved_host_memory_mib": 0},
            **database_overrides(),
        },
    )


@pytest.fixture(scope="module", params=("sqlite",), autouse=True)
def database_backend(request: pytest.FixtureRequest) -> str:
    """The policy table is the subject here, not the database: SQLite only (every API's
    own tests, refusals included, run on PostgreSQL too). On PostgreSQL the matrix's
    before-and-after reading of every table took six minutes of `make test`."""
    return str(request.param)


@pytest.fixture(scope="module")
def platform(database_backend: str) -> Iterator[server.Platform]:
    root = Path(tempfile.mkdtemp(prefix="souverain-rbac-"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(_settings(root / "data"), clock=Clock(SteppingClock().now))
        try:
            yield built
        finally:
            built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cloud(platform: server.Platform) -> Iterator[Cloud]:
    with TestClient(platform.app, base_url="http://testserver") as client:
        yield Cloud(client, platform)


def _ok(response: Any, *status: int) -> Any:
    assert response.status_code in (status or (200, 201, 202, 204)), response.text
    return response.json() if response.content else None


def _wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class World:
    """Project A's resources, one of each kind, and the callers."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.ids: dict[str, str] = {}
        self.callers: dict[str, Caller] = {}
        self.private: set[str] = set()  # ids B must neither read nor write
        self.fingerprint = Fingerprint(cloud.platform)

    def api(self, method: str, path: str, token: str, body: Any = None, **kw: Any) -> Any:
        if body is not None:
            kw["json"] = body
        headers = {"X-Auth-Token": token, **kw.pop("headers", {})}
        return self.cloud.client.request(method, path, headers=headers, **kw)

    def build(self) -> None:
        self._people()
        self._compute()
        self._network()
        self._volume()
        self._billing()
        self._swift()
        self._callers()

    def _people(self) -> None:
        c = self.cloud
        self.a = c.member("member")
        self.a_reader = c.member("reader", project_id=self.a.project_id)
        self.b = c.member("member")
        put = f"/v3/domains/default/users/{self.a.id}/roles/{c.role_ids['member']}"
        _ok(c.put(put), 204)
        group = c.create("groups", "group", name=c.unique("group"))
        _ok(c.put(f"/v3/groups/{group['id']}/users/{self.a.id}"), 204)
        self.ids.update(project=self.a.project_id, user=self.a.id, group=group["id"])
        self.ids["role"] = c.role_ids["member"]
        made = c.post(
            f"/v3/users/{self.a.id}/application_credentials",
            {"application_credential": {"name": "ro", "roles": [{"name": "reader"}]}},
            token=self.a.token,
        )
        self.app_cred = _ok(made, 201)["application_credential"]
        self.ids["app_cred"] = self.app_cred["id"]
        ec2 = c.post(
            f"/v3/users/{self.a.id}/credentials/OS-EC2",
            {"tenant_id": self.a.project_id},
            token=self.a.token,
        )
        self.ids["ec2"] = _ok(ec2, 201)["credential"]["access"]
        blob = {"credential": {"user_id": self.a.id, "type": "totp", "blob": "GEZDGNBV"}}
        cred = _ok(c.post("/v3/credentials", blob, token=self.a.token), 201)
        self.ids["credential"] = cred["credential"]["id"]
        region = c.create("regions", "region", id="rbac-region")
        self.ids["region"] = region["id"]
        service = c.create("services", "service", type="rbac", name="rbac")
        self.ids["service"] = service["id"]
        endpoint = c.create(
            "endpoints",
            "endpoint",
            service_id=service["id"],
            interface="public",
            url="http://rbac.example",
        )
        self.ids["endpoint"] = endpoint["id"]
        self.private.update(
            {self.a.project_id, self.a.id, self.ids["app_cred"], self.ids["ec2"]}
            | {self.ids["credential"]}
        )

    def _compute(self) -> None:
        token, admin = self.a.token, self.cloud.admin_token
        flavors = _ok(self.api("GET", "/compute/v2.1/flavors", admin))["flavors"]
        self.ids["flavor"] = flavors[0]["id"]
        key = {"keypair": {"name": "rbac-key", "type": "ssh"}}
        _ok(self.api("POST", "/compute/v2.1/os-keypairs", token, key))
        self.ids["keypair"] = "rbac-key"
        self.ids["image"] = self._image(token, "boot")
        body = {
            "server": {
                "name": "victim",
                "flavorRef": self.ids["flavor"],
                "imageRef": self.ids["image"],
                "networks": "none",
                "metadata": {"k": "v"},
                "tags": ["t"],
            }
        }
        made = self.api(
            "POST",
            "/compute/v2.1/servers",
            token,
            body,
            headers={"OpenStack-API-Version": "compute 2.52"},
        )
        server_id = _ok(made, 202)["server"]["id"]
        self.ids["server"] = server_id
        path = f"/compute/v2.1/servers/{server_id}"

        def settled() -> bool:
            found = _ok(self.api("GET", path, token))["server"]
            return bool(found["status"] in ("ERROR", "ACTIVE"))

        _wait(settled, "the server to settle")
        actions = _ok(self.api("GET", path + "/os-instance-actions", token))
        self.ids["request"] = actions["instanceActions"][0]["request_id"]
        group = {"server_group": {"name": "rbac-group", "policies": ["affinity"]}}
        made_group = _ok(self.api("POST", "/compute/v2.1/os-server-groups", token, group))
        self.ids["server_group"] = made_group["server_group"]["id"]
        self.private.update({server_id, self.ids["request"], self.ids["server_group"]})

    def _image(self, token: str, name: str) -> str:
        body = {"name": name, "disk_format": "raw", "container_format": "bare"}
        image = _ok(self.api("POST", "/image/v2/images", token, body), 201)
        upload = self.cloud.client.put(
            f"/image/v2/images/{image['id']}/file",
            content=b"\0" * 4096,
            headers={"X-Auth-Token": token, "Content-Type": "application/octet-stream"},
        )
        _ok(upload, 204)
        self.private.add(image["id"])
        return str(image["id"])

    def _network(self) -> None:
        token = self.a.token
        base = "/network/v2.0"

        def create(kind: str, body: dict[str, Any]) -> str:
            collection = kind.replace("_", "-") + "s"
            made = _ok(self.api("POST", f"{base}/{collection}", token, {kind: body}), 201)
            ident = str(made[kind]["id"])
            self.ids[kind] = ident
            self.private.add(ident)
            return ident

        net = create("network", {"name": "a-net"})
        subnet = create("subnet", {"network_id": net, "cidr": "10.9.0.0/24", "ip_version": 4})
        create("port", {"network_id": net})
        group = create("security_group", {"name": "a-sg"})
        rule = {"security_group_id": group, "direction": "ingress", "protocol": "tcp"}
        made = _ok(
            self.api("POST", f"{base}/security-group-rules", token, {"security_group_rule": rule}),
            201,
        )
        self.ids["security_group_rule"] = made["security_group_rule"]["id"]
        self.private.add(self.ids["security_group_rule"])
        nets = _ok(self.api("GET", f"{base}/networks?name=public", token))["networks"]
        public = nets[0]["id"]
        router = create("router", {"name": "a-r", "external_gateway_info": {"network_id": public}})
        add = f"{base}/routers/{router}/add_router_interface"
        _ok(self.api("PUT", add, token, {"subnet_id": subnet}))
        create("floatingip", {"floating_network_id": public})
        create("subnetpool", {"name": "a-pool", "prefixes": ["10.200.0.0/16"]})
        admin = self.cloud.admin_token  # metering is the admin's: a label over A's routers
        label = {"metering_label": {"name": "a-meter", "project_id": self.a.project_id}}
        made = _ok(self.api("POST", f"{base}/metering/metering-labels", admin, label), 201)
        self.ids["metering_label"] = made["metering_label"]["id"]
        rule = {"metering_label_id": self.ids["metering_label"], "remote_ip_prefix": "0.0.0.0/0"}
        body = {"metering_label_rule": rule}
        made = _ok(self.api("POST", f"{base}/metering/metering-label-rules", admin, body), 201)
        self.ids["metering_label_rule"] = made["metering_label_rule"]["id"]
        self.private.update({self.ids["metering_label"], self.ids["metering_label_rule"]})

    def _volume(self) -> None:
        token = self.a.token
        base = "/volume/v3"
        body = {"volume": {"size": 1, "name": "a-vol", "metadata": {"k": "v"}}}
        volume = _ok(self.api("POST", f"{base}/volumes", token, body), 202)["volume"]["id"]
        self.ids["volume"] = volume

        def status(path: str, key: str) -> str:
            return str(_ok(self.api("GET", path, token))[key]["status"])

        _wait(lambda: status(f"{base}/volumes/{volume}", "volume") == "available", "volume")
        body = {"snapshot": {"volume_id": volume, "name": "a-snap", "metadata": {"k": "v"}}}
        snap = _ok(self.api("POST", f"{base}/snapshots", token, body), 202)["snapshot"]["id"]
        self.ids["snapshot"] = snap
        _wait(lambda: status(f"{base}/snapshots/{snap}", "snapshot") == "available", "snapshot")
        body = {"backup": {"volume_id": volume, "name": "a-backup"}}
        backup = _ok(self.api("POST", f"{base}/backups", token, body), 202)["backup"]["id"]
        self.ids["backup"] = backup
        _wait(lambda: status(f"{base}/backups/{backup}", "backup") == "available", "backup")
        self.private.update({volume, snap, backup})
        admin = self.cloud.admin_token
        types = _ok(self.api("GET", f"{base}/types", admin))["volume_types"]
        self.ids["volume_type"] = types[0]["id"]

    def _billing(self) -> None:
        body = {"account": {"name": "ACME SAS", "country": "FR", "owner_user_id": self.a.id}}
        made = self.api("POST", "/billing/v1/accounts", self.cloud.admin_token, body)
        self.ids["account"] = _ok(made, 201)["account"]["id"]
        self.private.add(self.ids["account"])

    def _swift(self) -> None:
        def send(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Any:
            headers = {"X-Auth-Token": self.a.token, **headers}
            return self.cloud.client.request(method, path, headers=headers, content=body)

        account = f"/object-storage/v1/AUTH_{self.a.project_id}"
        swift.make_containers(send, account, self.b.project_id)

    def _callers(self) -> None:
        c, a = self.cloud, self.a
        app = c.issue(
            {
                "auth": {
                    "identity": {
                        "methods": ["application_credential"],
                        "application_credential": {
                            "id": self.app_cred["id"],
                            "secret": self.app_cred["secret"],
                        },
                    }
                }
            }
        )
        domain = c.issue(
            password_auth(a.password, user_id=a.id, scope={"domain": {"id": "default"}})
        )
        _ok(app, 201)
        _ok(domain, 201)
        tokens = {
            "app_reader": app.headers["X-Subject-Token"],
            "unscoped": c.token_for(a.id, a.password, None),
            "domain": domain.headers["X-Subject-Token"],
            "reader": self.a_reader.token,
            "other": self.b.token,
            "member": a.token,
            "admin": c.admin_token,
        }
        for name, token in tokens.items():
            view = c.platform.identity.validate(token)
            assert view is not None, name
            self.callers[name] = Caller(name, token, view.context())
        assert self.callers["app_reader"].ctx.roles == {"reader"}
        assert self.callers["unscoped"].ctx.project_id is None
        assert self.callers["domain"].ctx.domain_id == "default"


# ------------------------------------------------------------------ routes and paths

# (the segment before the parameter, the parameter): which of A's ids fills it
BY_PLACE: dict[tuple[str, str], str] = {
    ("projects", "target_id"): "project",
    ("projects", "ident"): "project",
    ("users", "actor_id"): "user",
    ("users", "ident"): "user",
    ("groups", "actor_id"): "group",
    ("groups", "ident"): "group",
    ("roles", "ident"): "role",
    ("regions", "ident"): "region",
    ("services", "ident"): "service",
    ("endpoints", "ident"): "endpoint",
    ("credentials", "ident"): "credential",
    ("flavors", "id"): "flavor",
    ("servers", "id"): "server",
    ("os-keypairs", "name"): "keypair",
    ("os-interface", "port"): "port",
    ("os-volume_attachments", "volume"): "volume",
    ("os-instance-actions", "req"): "request",
    ("os-server-groups", "id"): "server_group",
    ("images", "id"): "image",
    ("os-quota-sets", "project"): "project",
    ("quotas", "project"): "project",
    ("networks", "id"): "network",
    ("subnets", "id"): "subnet",
    ("ports", "id"): "port",
    ("security-groups", "id"): "security_group",
    ("security-group-rules", "id"): "security_group_rule",
    ("routers", "id"): "router",
    ("floatingips", "id"): "floatingip",
    ("subnetpools", "id"): "subnetpool",
    ("metering-labels", "id"): "metering_label",
    ("metering-label-rules", "id"): "metering_label_rule",
    ("volumes", "id"): "volume",
    ("snapshots", "id"): "snapshot",
    ("backups", "id"): "backup",
    ("types", "id"): "volume_type",
    ("accounts", "id"): "account",
    ("roles", "user"): "user",
    ("images", "image_id"): "image",
    ("roles", "prior_role_id"): "role",
    ("projects", "project_id"): "project",
    ("endpoints", "endpoint_id"): "endpoint",
    ("implies", "implied_role_id"): "role",
    ("project-quotas", "id"): "project",
}
BY_NAME: dict[str, str] = {
    "user_id": "user",
    "group_id": "group",
    "cred_id": "app_cred",
    "access": "ec2",
    "role_id": "role",
}
LITERALS: dict[tuple[str, str], str] = {
    ("domains", "target_id"): "default",
    ("domains", "ident"): "default",
    ("os-hypervisors", "id"): "1",
    ("os-aggregates", "id"): "1",
    ("os-services", "id"): "enable",  # never "disable": the cloud must keep taking servers
    ("os-hosts", "host"): "souverain@local",
    ("capabilities", "host"): "souverain@local",
    ("qos-specs", "id"): "00000000-0000-0000-0000-000000000000",
    ("os-volume-transfer", "id"): "00000000-0000-0000-0000-000000000000",
    ("volume-transfers", "id"): "00000000-0000-0000-0000-000000000000",
    ("extensions", "alias"): "router",
    ("schemas", "name"): "image",
    ("metadefs", "name"): "namespace",
    ("messages", "id"): "00000000-0000-0000-0000-000000000000",
    ("invoices", "id"): "00000000-0000-0000-0000-000000000000",
    ("actions", "action"): "nothing",
    ("members", "member_id"): "nobody",
    ("tags", "tag"): "t",
    ("metadata", "key"): "k",
    ("os-extra_specs", "key"): "k",
    ("extra_specs", "key"): "k",
    ("{user}", "role"): "viewer",  # a billing account role
    ("tasks", "task_id"): "00000000-0000-0000-0000-000000000000",
    ("trusts", "trust_id"): "no-such-trust",
    ("endpoint_groups", "endpoint_group_id"): "no-such-group",
    ("namespaces", "namespace"): "OS::Nothing",
    ("objects", "name"): "nothing",
    ("properties", "name"): "nothing",
    ("tags", "name"): "nothing",
    ("resource_types", "name"): "nothing",
    ("domains", "domain_id"): "default",
    ("config", "group"): "identity",
    ("{group}", "option"): "driver",
    ("security_compliance", "option"): "password_regex",
    ("access_rules", "rule_id"): "no-such-rule",
    ("os-console-auth-tokens", "token"): "no-such-token",
    ("migrations", "migration_id"): "1",  # no such migration: an admin's DELETE is a 404
    ("encryption", "encryption_id"): "00000000-0000-0000-0000-000000000000",
    # the key manager's own tests hold its secrets, containers and orders to their owners
    ("secrets", "id"): "00000000-0000-0000-0000-000000000000",
    ("containers", "id"): "00000000-0000-0000-0000-000000000000",
    ("orders", "id"): "00000000-0000-0000-0000-000000000000",
}
PARAM = re.compile(r"\{(\w+)\}")


def fill(template: str, ids: dict[str, str]) -> str:
    given = template.split("/")
    parts = list(given)
    for i, part in enumerate(given):
        found = PARAM.fullmatch(part)
        if found is None:
            continue
        place = (given[i - 1], found.group(1))
        if place in LITERALS:
            parts[i] = LITERALS[place]
        else:
            key = BY_PLACE.get(place) or BY_NAME.get(place[1])
            assert key is not None, f"no value for {place} in {template}"
            parts[i] = ids[key]
    return "/".join(parts)


def openstack_routes(platform: server.Platform) -> list[tuple[str, str, str]]:
    """(method, path template, action) of every authenticated route of every API."""
    found: list[tuple[str, str, str]] = []
    for path, route in _service_routes(platform.app):
        if path.split("/")[1] not in APIS:
            continue
        assert isinstance(route, EdgeRoute), f"{path} names no policy action"
        for method, action in route.actions.items():
            assert action in policy.RULES, f"{method} {path}: {action} is not in the table"
            if not route.public:
                found.append((method, path, action))
    return found


# ------------------------------------------------------------------ outcomes


class Fingerprint:
    """Every row of every table, hashed: equal before and after means nothing changed."""

    def __init__(self, platform: server.Platform) -> None:
        self.engine = platform.db.engine
        meta = MetaData()
        meta.reflect(self.engine)
        self.tables = [meta.tables[name] for name in sorted(meta.tables)]

    def __call__(self) -> str:
        digest = hashlib.sha256()
        with self.engine.connect() as conn:
            for table in self.tables:
                digest.update(table.name.encode())
                # JSON has no ordering on PostgreSQL; the other columns order the rows
                order = [c for c in table.columns if not isinstance(c.type, JSON)]
                for row in conn.execute(select(table).order_by(*order)):
                    digest.update(repr(tuple(row)).encode())
        return digest.hexdigest()


def edge_allows(ctx: RequestContext, action: str) -> bool:
    try:
        policy.authorize(ctx, action)
    except Forbidden:
        return False
    return True


def error_message(api: str, response: Any) -> str:
    """The message of a 403 in the API's own body."""
    if api == "object-storage":
        assert response.text.startswith("<html>"), response.text
        return str(response.text)
    body = response.json()
    if api in ("identity", "billing"):
        assert body["error"]["code"] == 403, body
        return str(body["error"]["message"])
    if api in ("compute", "volume"):
        assert list(body) == ["forbidden"] and body["forbidden"]["code"] == 403, body
        return str(body["forbidden"]["message"])
    if api == "network":
        return str(body["NeutronError"]["message"])
    assert body["code"] == 403, body
    return str(body["message"])


@pytest.fixture(scope="module")
def world(cloud: Cloud) -> World:
    built = World(cloud)
    built.build()
    return built


def _send(world: World, caller: Caller, method: str, path: str, extra: Any = ()) -> Any:
    headers = {"X-Auth-Token": caller.token, **swift.extra_headers(method, path), **dict(extra)}
    if not caller.token:  # Swift's anonymous visitor
        del headers["X-Auth-Token"]
    if method in READS or method == "DELETE":
        return world.cloud.client.request(method, path, headers=headers)
    return world.cloud.client.request(method, path, headers=headers, json={})


def _plan(world: World) -> tuple[list[tuple[Caller, Call]], list[tuple[Caller, Call]]]:
    """(refused, allowed), the allowed in the order that keeps every caller's token alive."""
    routes = openstack_routes(world.cloud.platform)
    refused: list[tuple[Caller, Call]] = []
    allowed: list[tuple[Caller, Call]] = []
    for method, template, action in routes:
        if swift.is_swift(template):
            for path, grant, headers in swift.calls(method, template, world.a.project_id):
                call = Call(method, template, path, action, grant, headers)
                for caller in [*world.callers.values(), ANONYMOUS]:
                    where = allowed if swift_allows(world, caller, call) else refused
                    where.append((caller, call))
            continue
        call = Call(method, template, fill(template, world.ids), action)
        for caller in world.callers.values():
            (allowed if edge_allows(caller.ctx, action) else refused).append((caller, call))

    def order(item: tuple[Caller, Call]) -> tuple[int, int, bool, str]:
        caller, call = item
        kind = 0 if call.method in READS else 2 if call.method == "DELETE" else 1
        return (kind, CALLERS.index(caller.name), call.path.startswith("/identity"), call.path)

    return refused, sorted(allowed, key=order)


# Swift alone serves callers without a token: public containers, static web sites.
ANONYMOUS = Caller("anonymous", "", RequestContext(user_id="", user_domain_id=""))


def swift_allows(world: World, caller: Caller, call: Call) -> bool:
    """The table for the account's own people, the container's ACL for everyone else."""
    ctx = caller.ctx
    if swift.owns_account(ctx.project_id, ctx.roles, world.a.project_id):
        return edge_allows(ctx, call.action)
    return swift.acl_allows(caller.name, call.method, call.template, call.grant)


def test_every_route_of_every_api_is_in_the_matrix(platform: server.Platform) -> None:
    routes = openstack_routes(platform)
    assert {template.split("/")[1] for _, template, _ in routes} == set(APIS)
    assert len(routes) > 250


# The holes issue 15 found, which the table must keep closed whatever else changes in it:
# (caller, method, path) that must be among the refusals.
HOLES = [
    (caller, "POST", path)
    for caller in ("reader", "app_reader", "unscoped", "domain")
    for path in (
        "/compute/v2.1/servers",
        "/compute/v2.1/os-keypairs",
        "/volume/v3/volumes",
        "/network/v2.0/networks",
        "/network/v2.0/security-groups",
        "/image/v2/images",
    )
] + [
    (caller, "DELETE", "/compute/v2.1/servers/{id}")
    for caller in ("reader", "app_reader", "unscoped", "domain")
]


def test_swift_bulk_operations_of_outsiders_change_nothing(world: World) -> None:
    """Bulk delete and archive extraction answer per item (Swift's 200 with a list of
    errors): outsiders get a refusal for every item, and nothing of A's changes. (Before
    the matrix, whose admin deletes A's people at the end.)"""
    account = f"/object-storage/v1/AUTH_{world.a.project_id}"
    member = {"X-Auth-Token": world.a.token}
    for path, body in (("rbac-bulk", b""), ("rbac-bulk/kept", b"A's")):
        made = world.cloud.client.put(f"{account}/{path}", headers=member, content=body)
        assert made.status_code == 201, made.text
    targets = "\n".join(["rbac-bulk/kept", "rbac-bulk", "rbac-private/obj", "rbac-new"])
    archive = swift.tar_of(["rbac-bulk/planted", "rbac-new/planted"])
    outsiders = [world.callers[n] for n in ("unscoped", "domain", "other")] + [ANONYMOUS]
    for caller in outsiders:
        before = world.fingerprint()
        headers = {"Accept": "application/json"}
        if caller.token:
            headers["X-Auth-Token"] = caller.token
        for method, path, body in (
            ("POST", f"{account}?bulk-delete", targets.encode()),
            ("DELETE", f"{account}?bulk-delete", targets.encode()),
            ("PUT", f"{account}?extract-archive=tar", archive),
            ("PUT", f"{account}/rbac-bulk?extract-archive=tar", archive),
        ):
            sent = world.cloud.client.request(method, path, headers=headers, content=body)
            where = f"{caller.name} {method} {path}"
            assert swift.refused_every_item(sent), f"{where}: {sent.status_code} {sent.text}"
        assert world.fingerprint() == before, f"{caller.name}: A's account changed"


def test_swift_indirect_doors_do_not_open_a_private_container(world: World) -> None:
    """Symlinks, manifests and copies B may write into a container shared with it, temp
    URLs and forms with a forged signature, A's own public symlink to a private object:
    none hands A's private bytes to an outsider, nor plants an object there."""
    account = f"/object-storage/v1/AUTH_{world.a.project_id}"
    client = world.cloud.client
    link = {"X-Auth-Token": world.a.token, "X-Symlink-Target": f"rbac-private/{swift.OBJECT}"}
    made = client.put(f"{account}/rbac-public/to-private", headers=link, content=b"")
    assert made.status_code == 201, made.text
    other = {"X-Auth-Token": world.b.token}
    doors = [(other, d) for d in swift.indirect_doors("rbac-private")]
    doors += [({}, d) for d in swift.forged_doors("rbac-private", int(time.time()) + 600)]
    for token, (method, path, headers, body) in doors:
        sent = client.request(method, f"{account}/{path}", headers={**token, **headers},
                              content=body, follow_redirects=False)  # fmt: skip
        assert sent.status_code < 500, f"{method} {path}: {sent.status_code} {sent.text}"
        assert swift.SECRET not in sent.content, f"{method} {path} showed A's private bytes"
    listed = client.get(f"{account}/rbac-private", headers={"X-Auth-Token": world.a.token})
    assert "planted" not in listed.text


def test_the_matrix(world: World) -> None:
    refused, allowed = _plan(world)
    refusals = {(caller.name, call.method, call.template) for caller, call in refused}
    assert [hole for hole in HOLES if hole not in refusals] == []
    failures: list[str] = []
    for start in range(0, len(refused), REFUSALS_PER_FINGERPRINT):
        failures.extend(_check_refused(world, refused[start : start + REFUSALS_PER_FINGERPRINT]))
    for caller, call in allowed:
        failures.extend(_check_allowed(world, caller, call))
    assert failures == [], "\n".join(failures)


# Hashing the whole database is most of the matrix's time: it is hashed around a batch of
# refusals, and only a batch that changed it is sent again one call at a time to name the culprit.
REFUSALS_PER_FINGERPRINT = 40


def _check_refused(world: World, batch: list[tuple[Caller, Call]]) -> list[str]:
    failures: list[str] = []
    before = world.fingerprint()
    for caller, call in batch:
        failures.extend(_refusal_errors(world, caller, call))
    if world.fingerprint() == before:
        return failures
    culprits = []
    for caller, call in batch:
        again = world.fingerprint()
        _refusal_errors(world, caller, call)
        if world.fingerprint() != again:
            culprits.append(f"{caller.name} {call.method} {call.template} ({call.action})")
    if not culprits:  # a change a second sending did not repeat: name the whole batch
        culprits = [f"{c.name} {call.method} {call.template}" for c, call in batch]
    return failures + [f"{where}: refused, yet the database changed" for where in culprits]


def _refusal_errors(world: World, caller: Caller, call: Call) -> list[str]:
    response = _send(world, caller, call.method, call.path, call.headers)
    where = f"{caller.name} {call.method} {call.template} ({call.action})"
    expected = 401 if caller is ANONYMOUS else 403  # Swift: a token may help
    if response.status_code != expected:
        return [f"{where}: {response.status_code}, expected {expected}"]
    if call.method != "HEAD":
        api = call.template.split("/")[1]
        if call.action not in error_message(api, response):
            return [f"{where}: the message does not name the action"]
    return []


def _check_allowed(world: World, caller: Caller, call: Call) -> list[str]:
    rule = policy.RULES[call.action]
    service_decides = rule in TARGET_RULES or call.action.startswith(SERVICE_DECIDES)
    before = world.fingerprint() if service_decides else ""
    response = _send(world, caller, call.method, call.path, call.headers)
    status = response.status_code
    where = f"{caller.name} {call.method} {call.template} ({call.action}): {status}"
    if status == 401 or status >= 500:
        return [where]
    granted = swift.acl_allows(caller.name, call.method, call.template, call.grant)
    if caller.name == "other" and _private(world, call) and not granted:
        # a 403 or a 404 alike: nothing of A's
        return [f"{where}: another project reached A's resource"] if status < 300 else []
    if status == 403 and not service_decides:
        return [f"{where}, the table allows it"]
    if status == 403 and world.fingerprint() != before:
        return [f"{where}: refused, yet the database changed"]
    return []


def _private(world: World, call: Call) -> bool:
    """A path naming one of A's own things; the default quotas are everyone's."""
    if call.template.endswith(("/defaults", "/default")):
        return False
    return any(part in world.private for part in call.path.split("/"))


def test_an_admin_without_a_project_names_one_for_network_resources(world: World) -> None:
    """Hole 3's last door: an admin's domain-scoped token passes the table, and the network
    service then needs a project to put the resource in rather than the empty one."""
    c = world.cloud
    _ok(c.put(f"/v3/domains/default/users/{c.admin_id}/roles/{c.role_ids['admin']}"), 204)
    scope = {"domain": {"id": "default"}}
    issued = c.issue(password_auth(ADMIN_PASSWORD, user_id=c.admin_id, scope=scope))
    _ok(issued, 201)
    token = issued.headers["X-Subject-Token"]
    nets = "/network/v2.0/networks"
    refused = world.api("POST", nets, token, {"network": {"name": "nobody's"}})
    assert refused.status_code == 403, refused.text
    assert "project" in refused.json()["NeutronError"]["message"]
    body = {"network": {"name": "a's", "project_id": world.a.project_id}}
    made = _ok(world.api("POST", nets, token, body), 201)["network"]
    assert made["project_id"] == world.a.project_id
    listed = _ok(world.api("GET", f"{nets}?project_id=", token))["networks"]
    assert [n for n in listed if n["project_id"] == "" and n["name"] != "public"] == []
