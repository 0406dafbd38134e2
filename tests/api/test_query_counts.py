"""What a read costs: a list of N rows and of 3N rows issue the same SQL statements, and
no GET writes to the database or to the audit log.

Statements are counted on the platform's own engine (`before_cursor_execute`), so a
query per row, a per-group lookup or a write slipped into a read path fails here by
name and with the statements it ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event

from .support import Cloud, Member

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
VOLUME_VERSION = {"OpenStack-API-Version": "volume 3.70"}


@dataclass
class Statements:
    """The statements the platform's engine ran, and the commits that made writes durable."""

    sql: list[str] = field(default_factory=list)
    durable_commits: int = 0

    @property
    def writes(self) -> list[str]:
        return [q for q in self.sql if q.lstrip().upper().startswith(WRITES)]


@contextmanager
def counting(cloud: Cloud) -> Iterator[Statements]:
    engine = cloud.platform.db.engine
    seen = Statements()

    def on_statement(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.sql.append(statement)
        if statement.lstrip().upper().startswith(WRITES):
            conn.info["wrote"] = True

    def on_commit(conn: Any) -> None:
        if conn.info.pop("wrote", False):
            seen.durable_commits += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)


def cost_of_get(cloud: Cloud, path: str, headers: dict[str, str]) -> Statements:
    """The statements of one GET, after a first one has warmed the token caches."""
    assert cloud.client.get(path, headers=headers).status_code == 200
    with counting(cloud) as seen:
        response = cloud.client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return seen


def assert_same_cost(small: Statements, large: Statements, what: str) -> None:
    assert len(small.sql) == len(large.sql), (
        f"{what}: {len(small.sql)} statements for N rows, {len(large.sql)} for 3N rows:\n"
        + "\n".join(q.splitlines()[0][:120] for q in large.sql)
    )


def assert_grows_flat(
    cloud: Cloud, path: str, headers: dict[str, str], add_rows: Callable[[int], None]
) -> None:
    """N rows, then 3N rows: the GET of `path` runs the same number of statements."""
    add_rows(2)
    small = cost_of_get(cloud, path, headers)
    add_rows(4)
    large = cost_of_get(cloud, path, headers)
    assert_same_cost(small, large, path)


@pytest.fixture
def member(shared_cloud: Cloud) -> Member:
    return shared_cloud.member()


# ---------------------------------------------------------------------- network


class Neutron:
    """A member's network calls; each `add_*` makes `n` more rows of one kind."""

    def __init__(self, cloud: Cloud, member: Member) -> None:
        self.cloud = cloud
        self.headers = member.headers
        self.made = 0

    def post(self, path: str, key: str, **fields: Any) -> dict[str, Any]:
        response = self.cloud.client.post(
            f"/network/v2.0/{path}", json={key: fields}, headers=self.headers
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()[key]
        return body

    def public(self) -> str:
        listed = self.cloud.client.get(
            "/network/v2.0/networks", params={"name": "public"}, headers=self.headers
        )
        return str(listed.json()["networks"][0]["id"])

    def network_with_subnet(self) -> tuple[str, str]:
        self.made += 1
        net = self.post("networks", "network", name=f"net-{self.made}")
        cidr = f"10.{self.made}.0.0/24"
        subnet = self.post("subnets", "subnet", network_id=net["id"], cidr=cidr, ip_version=4)
        return str(net["id"]), str(subnet["id"])

    def add_networks(self, n: int) -> None:
        for _ in range(n):
            self.network_with_subnet()

    def add_ports(self, n: int) -> None:
        net, _ = self.network_with_subnet()
        group = self.post("security-groups", "security_group", name="web")
        for _ in range(n):
            self.post("ports", "port", network_id=net, security_groups=[group["id"]])

    def add_groups(self, n: int) -> None:
        for index in range(n):
            group = self.post("security-groups", "security_group", name=f"sg-{index}")
            self.post(
                "security-group-rules",
                "security_group_rule",
                security_group_id=group["id"],
                direction="ingress",
                protocol="tcp",
                port_range_min=22,
                port_range_max=22,
            )

    def add_routers(self, n: int) -> None:
        public = self.public()
        for index in range(n):
            self.post(
                "routers", "router", name=f"r-{index}", external_gateway_info={"network_id": public}
            )

    def add_floating_ips(self, n: int) -> None:
        public = self.public()
        net, subnet = self.network_with_subnet()
        router = self.post(
            "routers", "router", name="edge", external_gateway_info={"network_id": public}
        )
        added = self.cloud.client.put(
            f"/network/v2.0/routers/{router['id']}/add_router_interface",
            json={"subnet_id": subnet},
            headers=self.headers,
        )
        assert added.status_code == 200, added.text
        for _ in range(n):
            port = self.post("ports", "port", network_id=net)
            self.post("floatingips", "floatingip", floating_network_id=public, port_id=port["id"])


@pytest.mark.parametrize(
    ("collection", "adder"),
    [
        ("networks", "add_networks"),
        ("subnets", "add_networks"),
        ("ports", "add_ports"),
        ("security-groups", "add_groups"),
        ("security-group-rules", "add_groups"),
        ("routers", "add_routers"),
        ("floatingips", "add_floating_ips"),
    ],
)
def test_network_list_costs_the_same_for_n_and_3n_rows(
    shared_cloud: Cloud, member: Member, collection: str, adder: str
) -> None:
    neutron = Neutron(shared_cloud, member)
    assert_grows_flat(
        shared_cloud, f"/network/v2.0/{collection}", member.headers, getattr(neutron, adder)
    )


# ---------------------------------------------------------------------- identity


def test_role_assignment_lists_cost_the_same_for_n_and_3n_grants(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    group = cloud.create("groups", "group", name=cloud.unique("group"))
    admin = {"X-Auth-Token": cloud.admin_token}

    def add_grants(n: int) -> None:
        for _ in range(n):
            user, project = cloud.user(), cloud.project()
            cloud.grant(user["id"], project["id"], "member")
            cloud.grant(group["id"], project["id"], "reader", actor="groups")
            assert cloud.put(f"/v3/groups/{group['id']}/users/{user['id']}").status_code == 204

    add_grants(2)
    queries = ("", "?effective", "?include_names=true", "?effective&include_names=true")
    small = {q: cost_of_get(cloud, f"/identity/v3/role_assignments{q}", admin) for q in queries}
    add_grants(4)
    for q in queries:
        large = cost_of_get(cloud, f"/identity/v3/role_assignments{q}", admin)
        assert_same_cost(small[q], large, f"role_assignments{q}")


def test_member_lists_of_users_projects_and_groups_cost_the_same_for_n_and_3n(
    shared_cloud: Cloud, member: Member
) -> None:
    cloud = shared_cloud

    def add_colleagues(n: int) -> None:
        for _ in range(n):
            group = cloud.create("groups", "group", name=cloud.unique("team"))
            colleague = cloud.user()
            assert cloud.put(f"/v3/groups/{group['id']}/users/{colleague['id']}").status_code == 204
            assert cloud.put(f"/v3/groups/{group['id']}/users/{member.id}").status_code == 204
            cloud.grant(group["id"], member.project_id, "reader", actor="groups")
            cloud.grant(member.id, cloud.project()["id"], "reader")

    add_colleagues(2)
    paths = ("/identity/v3/users", "/identity/v3/projects", "/identity/v3/groups")
    small = {p: cost_of_get(cloud, p, member.headers) for p in paths}
    add_colleagues(4)
    for path in paths:
        assert_same_cost(small[path], cost_of_get(cloud, path, member.headers), path)


def test_token_validation_and_s3_key_lookup_cost_the_same_in_1_or_3_groups(
    shared_cloud: Cloud, member: Member
) -> None:
    """Each group change drops the cached views, so both lookups below run cold."""
    cloud = shared_cloud
    identity = cloud.platform.identity
    made = cloud.post(
        f"/v3/users/{member.id}/credentials/OS-EC2",
        {"tenant_id": member.project_id},
        token=member.token,
    )
    assert made.status_code == 201, made.text
    access = made.json()["credential"]["access"]
    subject = {**member.headers, "X-Subject-Token": member.token}

    def join_groups(n: int) -> tuple[Statements, Statements]:
        for _ in range(n):
            group = cloud.create("groups", "group", name=cloud.unique("team"))
            assert cloud.put(f"/v3/groups/{group['id']}/users/{member.id}").status_code == 204
            cloud.grant(group["id"], member.project_id, "reader", actor="groups")
        with counting(cloud) as validation:
            shown = cloud.client.get("/identity/v3/auth/tokens", headers=subject)
        assert shown.status_code == 200, shown.text
        with counting(cloud) as lookup:
            assert identity.ec2_principal(access) is not None
        return validation, lookup

    small = join_groups(1)
    large = join_groups(2)
    assert_same_cost(small[0], large[0], "cold token validation")
    assert_same_cost(small[1], large[1], "cold EC2 key lookup")


# ---------------------------------------------------------------------- image and volume


def test_image_list_costs_the_same_for_n_and_3n_images(shared_cloud: Cloud, member: Member) -> None:
    guest = shared_cloud.project()

    def add_images(n: int) -> None:
        for index in range(n):
            made = shared_cloud.client.post(
                "/image/v2/images",
                json={"name": f"img-{index}", "tags": ["a", "b"], "visibility": "shared"},
                headers=member.headers,
            )
            assert made.status_code == 201, made.text
            shared = shared_cloud.client.post(
                f"/image/v2/images/{made.json()['id']}/members",
                json={"member": guest["id"]},
                headers=member.headers,
            )
            assert shared.status_code == 200, shared.text

    assert_grows_flat(shared_cloud, "/image/v2/images", member.headers, add_images)


def _settled(cloud: Cloud, member: Member, path: str, key: str) -> None:
    """Volumes and snapshots finish in the background: count only once they have."""
    headers = {**member.headers, **VOLUME_VERSION}
    for _ in range(200):
        rows = cloud.client.get(f"/volume/v3{path}", headers=headers).json()[key]
        if all(r["status"] == "available" for r in rows):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not settle")


@pytest.mark.parametrize("path", ["/volumes/detail", "/volumes", "/snapshots/detail", "/snapshots"])
def test_volume_lists_cost_the_same_for_n_and_3n_volumes(
    shared_cloud: Cloud, member: Member, path: str
) -> None:
    headers = {**member.headers, **VOLUME_VERSION}

    def add_volumes(n: int) -> None:
        for index in range(n):
            made = shared_cloud.client.post(
                "/volume/v3/volumes",
                json={"volume": {"size": 1, "metadata": {"n": str(index)}}},
                headers=headers,
            )
            assert made.status_code == 202, made.text
            _settled(shared_cloud, member, "/volumes/detail", "volumes")
            snap = shared_cloud.client.post(
                "/volume/v3/snapshots",
                json={"snapshot": {"volume_id": made.json()["volume"]["id"]}},
                headers=headers,
            )
            assert snap.status_code == 202, snap.text
        _settled(shared_cloud, member, "/snapshots/detail", "snapshots")

    assert_grows_flat(shared_cloud, f"/volume/v3{path}", headers, add_volumes)


# ---------------------------------------------------------------------- reads write nothing


def read_paths(cloud: Cloud, member: Member) -> list[tuple[str, dict[str, str]]]:
    mine, admin = member.headers, {"X-Auth-Token": cloud.admin_token}
    volume = {**mine, **VOLUME_VERSION}
    return [
        ("/identity/v3/auth/tokens", {**mine, "X-Subject-Token": member.token}),
        ("/identity/v3/auth/projects", mine),
        ("/identity/v3/users", mine),
        ("/identity/v3/projects", admin),
        ("/identity/v3/role_assignments?effective&include_names=true", admin),
        ("/image/v2/images", mine),
        ("/volume/v3/volumes/detail", volume),
        ("/volume/v3/snapshots/detail", volume),
        ("/volume/v3/types", volume),
        ("/network/v2.0/networks", mine),
        ("/network/v2.0/ports", mine),
        ("/network/v2.0/security-groups", mine),
        ("/network/v2.0/routers", mine),
        ("/network/v2.0/floatingips", mine),
        ("/billing/v1/accounts", admin),
    ]


def test_billing_account_list_costs_the_same_for_n_and_3n_accounts(
    shared_cloud: Cloud, member: Member
) -> None:
    """An owner's list of accounts: their projects and roles load for the whole list."""
    admin = {"X-Auth-Token": shared_cloud.admin_token}

    def add_accounts(n: int) -> None:
        for index in range(n):
            made = shared_cloud.client.post(
                "/billing/v1/accounts",
                json={
                    "account": {"name": f"a{index}", "country": "FR", "owner_user_id": member.id}
                },
                headers=admin,
            )
            assert made.status_code == 201, made.text

    assert_grows_flat(shared_cloud, "/billing/v1/accounts", member.headers, add_accounts)


def test_reads_commit_no_write_and_append_no_audit_line(
    shared_cloud: Cloud, member: Member
) -> None:
    cloud = shared_cloud
    Neutron(cloud, member).add_floating_ips(1)
    audit_log = cloud.platform.paths.audit_log
    paths = read_paths(cloud, member)
    for path, headers in paths:  # a project's first look may make its defaults
        assert cloud.client.get(path, headers=headers).status_code == 200
    audit_size = audit_log.stat().st_size
    with counting(cloud) as seen:
        for path, headers in paths:
            assert cloud.client.get(path, headers=headers).status_code == 200, path
        token_path, token_headers = paths[0]
        assert cloud.client.head(token_path, headers=token_headers).status_code == 200
    assert seen.writes == [] and seen.durable_commits == 0, seen.writes
    assert audit_log.stat().st_size == audit_size, "a read appended to the audit log"
    # and the counters do see a write: a mutating call commits one and is audited
    with counting(cloud) as create:
        cloud.project()
    assert create.durable_commits >= 1 and create.writes
    assert audit_log.stat().st_size > audit_size
