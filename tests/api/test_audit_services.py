"""Every service names the project it acted on in the audit record: an admin acting on a
customer's network, image, secret, volume, transfer, container or account is flagged
(`admin_action`) and shown to that account's owners through the billing audit API, never to
another account's; a member acting on its own project's resource is not flagged, and another
account writing into a bucket its policy opens is shown to the bucket's owners.

The tests share one platform (`shared_cloud`): each makes its own two accounts and projects
and finds its records by request id, so none sees another's writes."""

from __future__ import annotations

import json
from typing import Any

from .support import S3, Cloud, Member
from .test_audit_trail import audit_lines, billing, owned_account
from .test_volumes import Cinder, admin


class Trail:
    """Two customer accounts, their owners as members of one project each, and the log."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.account, self.project, token, owner = owned_account(cloud)
        self.owner = Member(owner.id, owner.name, owner.password, self.project, token)
        self.other_account, other_project, other_token, other = owned_account(cloud)
        self.other = Member(other.id, other.name, other.password, other_project, other_token)
        self.admin_seqs: list[int] = []
        self.own_seqs: list[int] = []

    def record(self, response: Any) -> dict[str, Any]:
        rid = response.headers.get("x-openstack-request-id") or response.headers.get(
            "x-amz-request-id"
        )
        [found] = [
            r for r in audit_lines(self.cloud.platform.paths.audit_log) if r["request_id"] == rid
        ]
        return found

    def by_admin(self, response: Any, status: int) -> None:
        assert response.status_code == status, response.text
        rec = self.record(response)
        assert rec["target_project"] == self.project and rec["admin_action"] is True, rec
        assert rec["initiator"]["project_id"] == self.cloud.admin_project_id
        self.admin_seqs.append(rec["seq"])

    def by_owner(self, response: Any, status: int) -> Any:
        assert response.status_code == status, response.text
        rec = self.record(response)
        assert rec["target_project"] == self.project and "admin_action" not in rec, rec
        self.own_seqs.append(rec["seq"])
        return response

    def seqs(self, account: str, token: str) -> set[int]:
        page = billing(self.cloud, "GET", f"/accounts/{account}/audit?limit=1000", token)
        assert page.status_code == 200, page.text
        return {r["seq"] for r in page.json()["audit"]}

    def check_trails(self) -> None:
        """The owners read every one of these records; the other account's owner none."""
        mine = self.seqs(self.account, self.owner.token)
        assert set(self.admin_seqs) | set(self.own_seqs) <= mine
        assert not set(self.admin_seqs) & self.seqs(self.other_account, self.other.token)


def test_admin_actions_on_network_image_and_key_manager_resources(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    t, c, owner = Trail(cloud), cloud.client, {"X-Auth-Token": ""}
    owner["X-Auth-Token"] = t.owner.token
    root = {"X-Auth-Token": cloud.admin_token}
    net = "/network/v2.0"
    made = t.by_owner(
        c.post(f"{net}/networks", json={"network": {"name": "n"}}, headers=owner), 201
    )
    network = made.json()["network"]["id"]
    on_behalf = {"network": {"name": "for-them", "project_id": t.project}}
    t.by_admin(c.post(f"{net}/networks", json=on_behalf, headers=root), 201)
    group = c.post(f"{net}/security-groups", json={"security_group": {"name": "g"}}, headers=owner)
    t.by_admin(c.delete(f"{net}/security-groups/{group.json()['security_group']['id']}",
                        headers=root), 204)  # fmt: skip
    router = c.post(f"{net}/routers", json={"router": {"name": "r"}}, headers=owner).json()
    t.by_admin(c.put(f"{net}/routers/{router['router']['id']}",
                     json={"router": {"name": "x"}}, headers=root), 200)  # fmt: skip
    image = t.by_owner(c.post("/image/v2/images", json={"name": "i"}, headers=owner), 201)
    t.by_admin(c.delete(f"/image/v2/images/{image.json()['id']}", headers=root), 204)
    body = {"payload": "p", "payload_content_type": "text/plain"}
    secret = t.by_owner(c.post("/key-manager/v1/secrets", json=body, headers=owner), 201)
    secret_id = secret.json()["secret_ref"].rsplit("/", 1)[1]
    t.by_admin(c.delete(f"/key-manager/v1/secrets/{secret_id}", headers=root), 204)
    # another project's member still gets 404 and names nobody's project
    other = {"X-Auth-Token": t.other.token}
    refused = c.put(f"{net}/networks/{network}", json={"network": {"name": "y"}}, headers=other)
    assert refused.status_code == 404 and "target_project" not in t.record(refused)
    t.by_admin(c.delete(f"{net}/networks/{network}", headers=root), 204)
    t.check_trails()


def test_admin_actions_on_volumes_transfers_and_object_storage(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    t = Trail(cloud)
    mine, root = Cinder(cloud, t.owner.token, t.project, t.owner.id), admin(cloud)
    volume = mine.create()["id"]
    # the admin's path names its own project; the record names the volume's
    t.by_admin(root.put(f"/volumes/{volume}", {"volume": {"name": "renamed"}}), 200)
    transfer = mine.post("/os-volume-transfer", {"transfer": {"volume_id": volume}})
    t.own_seqs.append(t.record(transfer)["seq"])
    t.by_admin(root.delete(f"/os-volume-transfer/{transfer.json()['transfer']['id']}"), 202)
    swift = f"/object-storage/v1/AUTH_{t.project}/box"
    t.by_owner(cloud.client.put(swift, headers={"X-Auth-Token": t.owner.token}), 201)
    put = cloud.client.put(f"{swift}/o", content=b"x", headers={"X-Auth-Token": cloud.admin_token})
    t.by_admin(put, 201)
    # S3: the owner's own bucket, then another account writing where its policy lets it
    s3, bucket = S3(cloud, t.owner), cloud.unique("audit").lower()
    assert s3.send("PUT", f"/{bucket}").status_code == 200
    policy = {
        "Statement": {
            "Effect": "Allow",
            "Principal": t.other.project_id,
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
        }
    }
    t.by_owner(s3.send("PUT", f"/{bucket}?policy", json.dumps(policy).encode()), 204)
    theirs = S3(cloud, t.other).send("PUT", f"/{bucket}/from-them", b"x")
    assert theirs.status_code == 200, theirs.text
    rec = t.record(theirs)
    assert rec["target_project"] == t.project and "admin_action" not in rec
    assert rec["seq"] in t.seqs(t.account, t.owner.token)  # the bucket's owners see it
    t.check_trails()


def test_admin_changes_to_an_account_are_in_its_owners_trail(shared_cloud: Cloud) -> None:
    t = Trail(shared_cloud)
    path = f"/accounts/{t.account}"
    changed = billing(shared_cloud, "PATCH", path, shared_cloud.admin_token,
                      {"account": {"name": "by admin"}})  # fmt: skip
    assert changed.status_code == 200, changed.text
    rec = t.record(changed)
    # the operator's change is flagged with its identity; the owner's own change is not
    assert rec["admin_action"] is True, rec
    assert rec["initiator"]["project_id"] == shared_cloud.admin_project_id, rec
    assert rec["target"] == {"type": "account", "id": t.account}, rec
    seq = rec["seq"]
    own = billing(shared_cloud, "PATCH", path, t.owner.token, {"account": {"name": "by owner"}})
    assert own.status_code == 200, own.text
    assert "admin_action" not in t.record(own), t.record(own)
    assert seq in t.seqs(t.account, t.owner.token)
    assert seq not in t.seqs(t.other_account, t.other.token)
    for query in ("marker=%C2%B2", "marker=" + "9" * 19, "limit=%EF%BC%95", "since=%00",
                  "since=2026-13-01", "marker=1&marker=x", "limit="):  # fmt: skip
        bad = billing(shared_cloud, "GET", f"{path}/audit?{query}", t.owner.token)
        assert bad.status_code == 400 and set(bad.json()) == {"error"}, (query, bad.text)
    # the largest marker and the latest time find nothing; the earliest time finds all
    for query, found in (("marker=" + "9" * 18, False), ("since=9999-12-31T23:59:59-14:00", False),
                         ("since=0001-01-01T00:00:00%2B14:00", True)):  # fmt: skip
        fine = billing(shared_cloud, "GET", f"{path}/audit?{query}", t.owner.token)
        assert fine.status_code == 200 and bool(fine.json()["audit"]) is found, fine.text
