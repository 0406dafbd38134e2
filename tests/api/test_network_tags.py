"""Tags on network resources (standard-attr-tag): the tag routes of every taggable
collection, tags given at create, the tags/tags-any/not-tags/not-tags-any filters, and who
may read and change a resource's tags."""

from __future__ import annotations

from typing import Any

from . import neutron_callers
from .support import Cloud
from .test_networks import Neutron, neutron_error

admin, me, other = (
    neutron_callers.admin,
    neutron_callers.me,
    neutron_callers.other,
)  # the shared fixtures


def _resources(me: Neutron) -> dict[str, str]:
    """One resource of each taggable collection, by collection path."""
    net = me.create("network", name="t")
    sn = me.create("subnet", network_id=net["id"], cidr="10.0.0.0/24", ip_version=4)
    pool = me.post("/subnetpools", {"subnetpool": {"prefixes": ["10.9.0.0/16"]}})
    public = me.get("/networks", params={"name": "public"}).json()["networks"][0]["id"]
    return {
        "networks": net["id"],
        "subnets": sn["id"],
        "subnetpools": pool.json()["subnetpool"]["id"],
        "ports": me.create("port", network_id=net["id"])["id"],
        "security-groups": me.create("sg", name="g")["id"],
        "routers": me.create("router", name="r")["id"],
        "floatingips": me.create("fip", floating_network_id=public)["id"],
    }


def test_every_taggable_resource_takes_shows_and_drops_tags(me: Neutron) -> None:
    aliases = {e["alias"] for e in me.get("/extensions").json()["extensions"]}
    assert "standard-attr-tag" in aliases
    for path, ident in _resources(me).items():
        key = path.replace("-", "_")[:-1]
        base = f"/{path}/{ident}/tags"
        before = me.get(f"/{path}/{ident}").json()[key]["revision_number"]
        assert me.put(f"{base}/red", None).status_code == 201, path
        assert me.put(f"{base}/red", None).status_code == 201, "adding twice is no change"
        assert me.get(f"{base}/red").status_code == 204
        neutron_error(me.get(f"{base}/blue"), 404, "TagNotFound")
        replaced = me.put(base, {"tags": ["b", "a", "a"]})
        assert replaced.status_code == 200 and replaced.json() == {"tags": ["a", "b"]}, path
        shown = me.get(f"/{path}/{ident}").json()[key]
        assert shown["tags"] == ["a", "b"] and shown["revision_number"] > before, path
        assert me.get(base).json() == {"tags": ["a", "b"]}
        assert me.delete(f"{base}/a").status_code == 204
        neutron_error(me.delete(f"{base}/a"), 404, "TagNotFound")
        assert me.delete(base).status_code == 204
        assert me.get(base).json() == {"tags": []}


def test_tags_given_at_create_are_kept_and_bad_tags_make_nothing(me: Neutron) -> None:
    net = me.create("network", name="born", tags=["x", "y"])
    assert net["tags"] == ["x", "y"]
    bulk = me.post("/networks", {"networks": [{"name": "b1", "tags": ["z"]}, {"name": "b2"}]})
    assert [n["tags"] for n in bulk.json()["networks"]] == [["z"], []]
    before = len(me.get("/networks").json()["networks"])
    neutron_error(me.post("/networks", {"network": {"tags": ["x" * 256]}}), 400, "InvalidInput")
    neutron_error(me.post("/networks", {"network": {"tags": "x"}}), 400, "InvalidInput")
    assert len(me.get("/networks").json()["networks"]) == before


def test_tag_filters_follow_neutron(me: Neutron) -> None:
    a = me.create("network", name="fa", tags=["red", "blue"])["id"]
    b = me.create("network", name="fb", tags=["red"])["id"]
    c = me.create("network", name="fc")["id"]
    mine = {a, b, c}

    def found(**params: Any) -> set[str]:
        nets = me.get("/networks", params=params).json()["networks"]
        return {n["id"] for n in nets} & mine

    assert found(tags="red,blue") == {a}
    assert found(tags="red") == {a, b}
    assert found(**{"tags-any": "blue,green"}) == {a}
    assert found(**{"not-tags": "red,blue"}) == {b, c}
    assert found(**{"not-tags-any": "red"}) == {c}


def test_bad_tag_bodies_are_refused(me: Neutron) -> None:
    ident = me.create("network", name="bad")["id"]
    base = f"/networks/{ident}/tags"
    neutron_error(me.put(base, {"tags": "red"}), 400, "InvalidInput")
    neutron_error(me.put(base, {"tags": [1]}), 400, "InvalidInput")
    neutron_error(me.put(base, {"tags": [str(i) for i in range(65)]}), 400, "InvalidInput")
    neutron_error(me.put(base, {"nope": []}), 400, "InvalidInput")
    neutron_error(me.put(f"{base}/{'x' * 256}", None), 400, "InvalidInput")
    neutron_error(me.put("/networks/nope/tags/red", None), 404, "NetworkNotFound")
    assert me.get(base).json() == {"tags": []}


def test_tags_of_another_projects_resources_are_out_of_reach(
    me: Neutron, other: Neutron, admin: Neutron, shared_cloud: Cloud
) -> None:
    ident = me.create("network", name="private", tags=["mine"])["id"]
    base = f"/networks/{ident}/tags"
    neutron_error(other.get(base), 404, "NetworkNotFound")
    neutron_error(other.put(f"{base}/theirs", None), 404, "NetworkNotFound")
    neutron_error(other.delete(base), 404, "NetworkNotFound")
    reader = shared_cloud.member(role="reader", project_id=me.project_id)
    as_reader = Neutron(shared_cloud, reader.token, reader.project_id)
    assert as_reader.get(base).json() == {"tags": ["mine"]}
    assert as_reader.put(f"{base}/r", None).status_code == 403
    assert as_reader.delete(base).status_code == 403
    # a shared network is seen by all, its tags changed by its project only
    shared = admin.create("network", name="shared", shared=True)["id"]
    try:
        assert other.get(f"/networks/{shared}/tags").status_code == 200
        neutron_error(other.put(f"/networks/{shared}/tags/x", None), 403, "HTTPForbidden")
        assert admin.put(f"/networks/{shared}/tags/x", None).status_code == 201
    finally:
        admin.delete(f"/networks/{shared}")
    assert me.get(base).json() == {"tags": ["mine"]}
