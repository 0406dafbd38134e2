"""Metering labels in a router's namespace, proven with real TCP traffic: each label counts
what its rules select through the gateway, excluded traffic is not counted, and a change of
labels keeps the counts of the labels that stay."""

from __future__ import annotations

import uuid

import pytest

from souverain.network.dataplane import DataplaneError
from souverain.network.router_metering import MeterLabel, MeterRule

from . import test_routing
from .test_routing import _SKIP, Lab, _run

pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")
lab = test_routing.lab  # the routing tests' lab: a data plane with its own prefix, cleaned up


def test_labels_count_what_their_rules_select_and_keep_counts_across_changes(lab: Lab) -> None:
    lab.public()
    lab.serve(lab.host_ip)
    tenant = lab.tenant(1)
    public = f"{lab.public_base}.0/24"
    out, back, none = (str(uuid.uuid4()) for _ in range(3))
    labels = [
        MeterLabel(out, (MeterRule("egress", remote=public),)),
        MeterLabel(back, (MeterRule("ingress", source=public, destination="10.0.0.0/24"),)),
        MeterLabel(none, (MeterRule("egress", excluded=True, remote=public),
                          MeterRule("egress", remote="0.0.0.0/0"))),
    ]  # fmt: skip
    routing = lab.routing
    routing.ensure_router(tenant.router_id, tenant.gateway, [tenant.interface], [], [], labels)
    ids = [out, back, none]
    assert routing.metering_counts(tenant.router_id, ids) == {i: (0, 0) for i in ids}

    assert lab.connect(lab.host_ip, tenant.guest) == tenant.gateway.ip
    counts = routing.metering_counts(tenant.router_id, ids)
    assert counts[out][0] > 0 and counts[out][1] > 0, counts
    assert counts[back][0] > 0, counts
    assert counts[none] == (0, 0), "excluded traffic is not counted"

    # dropping one label keeps the others' counts; the dropped one is gone from the table
    routing.ensure_router(tenant.router_id, tenant.gateway, [tenant.interface], [], [], labels[:1])
    assert routing.metering_counts(tenant.router_id, ids) == {out: counts[out]}
    namespace = routing.router_namespace(tenant.router_id)
    listed = _run("ip", "netns", "exec", namespace, "nft", "list", "table", "ip",
                  "souverain-metering").stdout  # fmt: skip
    assert back.replace("-", "") not in listed

    routing.ensure_router(tenant.router_id, tenant.gateway, [tenant.interface], [])
    assert routing.metering_counts(tenant.router_id, ids) == {}


def test_a_router_without_gateway_counts_nothing_and_bad_rules_are_refused(lab: Lab) -> None:
    lab.public()
    tenant = lab.tenant(2)
    label = str(uuid.uuid4())
    rules = (MeterRule("egress", remote="0.0.0.0/0"),)
    lab.routing.ensure_router(tenant.router_id, None, [tenant.interface], [], [],
                              [MeterLabel(label, rules)])  # fmt: skip
    assert lab.routing.metering_counts(tenant.router_id, [label]) == {label: (0, 0)}
    namespace = lab.routing.router_namespace(tenant.router_id)
    before = _run("ip", "-n", namespace, "-o", "link", "show").stdout
    for bad in (MeterRule("sideways", remote="0.0.0.0/0"), MeterRule("egress", remote="nope")):
        with pytest.raises(DataplaneError):
            lab.routing.ensure_router(tenant.router_id, tenant.gateway, [tenant.interface], [],
                                      [], [MeterLabel(label, (bad,))])  # fmt: skip
    assert _run("ip", "-n", namespace, "-o", "link", "show").stdout == before, "refused first"
    with pytest.raises(DataplaneError):
        lab.routing.ensure_router(tenant.router_id, None, [tenant.interface], [], [],
                                  [MeterLabel("../etc", rules)])  # fmt: skip
