"""The issue's billing scenario through the real services, on a clock the test sets.

An account with two projects: a real guest runs 90 minutes of clock time with a stop in
the middle (Nova API, QEMU), a 10 GiB volume (Cinder API) and a floating IP (Neutron
API) are held for a day; the control plane is restarted in the middle. The consumption
API and the invoice equal a hand computation from the catalog, to the cent; issuing the
invoice twice yields one invoice. The clock is injected into the platform (the same
`Clock` every service reads), not patched into a library.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from souverain import server
from souverain.common.clock import Clock
from tests.host_cleanup import kill_guests
from tests.vm.guest_support import build_tiny_image, missing_requirements

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, Cloud, TestClient, settings_for
from .test_billing import FrozenClock
from .test_compute_api import Nova, wait_gone, wait_status

START = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


class Lab:
    """A platform on a data dir that survives restarts, on the test's clock."""

    def __init__(self, root: Path, clock: FrozenClock) -> None:
        self.root = root
        self.clock = clock
        self.settings = settings_for(root / "data")
        self.settings.image.tiny_image = build_tiny_image()
        self.settings.server.max_body_bytes = 1024 * 1024
        self.settings.compute.shutdown_timeout = 15
        self.platform: server.Platform | None = None
        self.client: TestClient | None = None
        self.cloud: Cloud | None = None

    def start(self) -> Cloud:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            self.platform = server.prepare(self.settings, clock=Clock(self.clock.now))
        self.client = TestClient(self.platform.app, base_url="http://testserver")
        self.client.__enter__()
        self.cloud = Cloud(self.client, self.platform)
        return self.cloud

    def stop(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
        if self.platform is not None:
            self.platform.close()
        self.client, self.platform, self.cloud = None, None, None


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"the billing scenario runs a real guest: {reason}")
    root = Path(tempfile.mkdtemp(prefix="souverain-bill-", dir=_fast_tmp_root()))
    made = Lab(root, FrozenClock(START))
    try:
        yield made
    finally:
        made.stop()
        kill_guests(root / "data")
        shutil.rmtree(root, ignore_errors=True)


def test_ninety_minutes_a_day_of_volume_and_floating_ip_invoiced_to_the_cent(lab: Lab) -> None:
    cloud = lab.start()
    clock = lab.clock
    owner = cloud.member(role=None)

    def token(project_id: str | None = None) -> str:
        return cloud.token_for(owner.id, owner.password, project_id)

    def admin() -> str:
        assert lab.cloud is not None
        lab.cloud.admin_token = lab.cloud.token_for(
            lab.cloud.admin_id, ADMIN_PASSWORD, lab.cloud.admin_project_id
        )
        return lab.cloud.admin_token

    def call(method: str, path: str, tok: str, body: Any = None, status: int = 200) -> Any:
        assert lab.client is not None
        kw = {"json": body} if body is not None else {}
        response = lab.client.request(method, path, headers={"X-Auth-Token": tok}, **kw)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    account = call(
        "POST",
        "/billing/v1/accounts",
        admin(),
        {"account": {"name": "Dupont SARL", "country": "FR", "owner_user_id": owner.id}},
        201,
    )["account"]
    projects = [
        call(
            "POST",
            f"/billing/v1/accounts/{account['id']}/projects",
            token(),
            {"project": {"name": name}},
            201,
        )["project"]["id"]
        for name in ("compute", "storage")
    ]

    # 08:00 a t1.nano guest; stopped at 08:45, started at 09:05, deleted at 09:50
    nova = Nova(cloud.client, token(projects[0]))
    image = cloud.client.get("/image/v2/images?name=tiny", headers={"X-Auth-Token": nova.token})
    image_id = image.json()["images"][0]["id"]
    created = nova.post(
        "/servers",
        {"server": {"name": "vm", "imageRef": image_id, "flavorRef": "1", "networks": "none"}},
    )
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    wait_status(nova, server_id, "ACTIVE")
    clock.advance(45 * 60)
    nova = Nova(cloud.client, token(projects[0]))
    nova.ok("POST", f"/servers/{server_id}/action", {"os-stop": None}, status=202)
    wait_status(nova, server_id, "SHUTOFF")
    clock.advance(20 * 60)
    nova = Nova(cloud.client, token(projects[0]))
    nova.ok("POST", f"/servers/{server_id}/action", {"os-start": None}, status=202)
    wait_status(nova, server_id, "ACTIVE")
    clock.advance(45 * 60)
    nova = Nova(cloud.client, token(projects[0]))
    nova.ok("DELETE", f"/servers/{server_id}", status=204)
    wait_gone(nova, server_id)

    # 09:50 a 10 GiB volume and a floating IP in the other project, for a day
    storage = token(projects[1])
    volume = call(
        "POST", f"/volume/v3/{projects[1]}/volumes", storage, {"volume": {"size": 10}}, 202
    )["volume"]
    public = call("GET", "/network/v2.0/networks?name=public", storage)["networks"][0]["id"]
    fip = call(
        "POST",
        "/network/v2.0/floatingips",
        storage,
        {"floatingip": {"floating_network_id": public}},
        201,
    )["floatingip"]

    # the control plane restarts in the middle of the day: nothing changes
    clock.advance(10 * 60)
    lab.stop()
    cloud = lab.start()
    clock.advance(24 * 3600 - 10 * 60)
    storage = token(projects[1])
    call("DELETE", f"/volume/v3/{projects[1]}/volumes/{volume['id']}", storage, status=202)
    call("DELETE", f"/network/v2.0/floatingips/{fip['id']}", storage, status=204)

    # the hand computation, from the shipped catalog
    expected = {
        (projects[0], "instance", "t1.nano"): cents(Decimal("1.5") * Decimal("0.0050")),
        (projects[1], "volume.gb", ""): cents(Decimal(10 * 24) / 730 * Decimal("0.08")),
        (projects[1], "floatingip", ""): cents(Decimal(24) * Decimal("0.004")),
    }
    subtotal = sum(expected.values(), Decimal(0))
    vat = cents(subtotal * Decimal("0.20"))  # a French customer: French VAT

    live = call("GET", f"/billing/v1/accounts/{account['id']}/consumption", token())
    costs = {
        (c["project_id"], c["metric"], c["flavor"]): Decimal(c["amount"])
        for c in live["consumption"]["cost"]
    }
    assert costs == expected

    clock.set(dt.datetime(2026, 11, 1, 0, 30, tzinfo=dt.UTC))
    issued = call("POST", "/billing/v1/invoicing", admin(), {"invoicing": {"period": "2026-10"}})
    (invoice,) = issued["invoices"]
    lines = {
        (x["project_id"], x["metric"], x["flavor"]): Decimal(x["amount"]) for x in invoice["lines"]
    }
    assert lines == expected
    assert Decimal(invoice["subtotal"]) == subtotal
    assert Decimal(invoice["vat"]) == vat and Decimal(invoice["total"]) == subtotal + vat
    # issuing twice, and after another restart, yields the same one invoice
    lab.stop()
    cloud = lab.start()
    again = call("POST", "/billing/v1/invoicing", admin(), {"invoicing": {"period": "2026-10"}})
    assert [i["number"] for i in again["invoices"]] == [invoice["number"]]
    listed = call("GET", f"/billing/v1/accounts/{account['id']}/invoices", token())["invoices"]
    assert [i["number"] for i in listed] == [invoice["number"]]
