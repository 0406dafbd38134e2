"""`souverain billing` as an operator runs it on a data dir: aggregate, invoice, show."""

from __future__ import annotations

import datetime as dt
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from souverain import server
from souverain.billing import models as bm
from souverain.config import load_settings
from tests.platform.conftest import ADMIN_PASSWORD, SOUVERAIN, server_env
from tests.postgres import Backend


def _cli(data_dir: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = server_env(SOUVERAIN_NETWORK__DATAPLANE="false")
    if url:  # the operator's config names the cloud's PostgreSQL database
        env["SOUVERAIN_DATABASE__URL"] = url
    return subprocess.run(
        [SOUVERAIN, "billing", *args, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def database_url(backend: type[Backend]) -> str:
    """The cloud's database: empty for the data dir's SQLite file, else a PostgreSQL URL."""
    return backend.database_url()


@pytest.fixture
def data_dir(tmp_path: Path, database_url: str) -> Path:
    """A cloud's data dir with an account, a project and a month of October usage."""
    directory = tmp_path / "data"
    settings = load_settings(
        environ={},
        overrides={
            "data_dir": str(directory),
            "identity": {"bcrypt_rounds": 4},
            "network": {"dataplane": False},
            "audit": {"fsync": False},
            **({"database": {"url": database_url}} if database_url else {}),
        },
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
        platform = server.prepare(settings)
    try:
        with platform.db.session() as s:
            s.add(
                bm.Account(
                    id="acct-1",
                    name="Martin & Fils",
                    billing_contact="",
                    country="FR",
                    vat_number=None,
                    currency="EUR",
                    project_limit=5,
                    created_at=dt.datetime(2026, 10, 1),
                    updated_at=dt.datetime(2026, 10, 1),
                )
            )
            s.flush()
            s.add(
                bm.AccountProject(
                    project_id="proj-1", account_id="acct-1", created_at=dt.datetime(2026, 10, 1)
                )
            )
            for at, value in ((dt.datetime(2026, 10, 3, 9), 1), (dt.datetime(2026, 10, 5, 9), 0)):
                s.add(
                    bm.MeterEvent(
                        at=at,
                        project_id="proj-1",
                        metric="instance",
                        resource_id="srv-1",
                        kind="gauge",
                        value=str(value),
                        flavor="m1.small",
                    )
                )
    finally:
        platform.close()
    return directory


def test_aggregate_invoice_twice_and_show(data_dir: Path, database_url: str) -> None:
    aggregated = _cli(data_dir, database_url, "aggregate", "--until", "2026-11-01T00:00:00")
    assert aggregated.returncode == 0, aggregated.stderr
    assert "hourly usage:" in aggregated.stdout
    first = _cli(data_dir, database_url, "invoice", "--month", "2026-10")
    assert first.returncode == 0, first.stderr
    # 48 hours of m1.small at 0.0200 = 0.96; French VAT 20 % = 0.19; total 1.15
    (line,) = [x for x in first.stdout.splitlines() if x.startswith("SV-")]
    number, account, total, currency = line.split()
    assert (account, Decimal(total), currency) == ("acct-1", Decimal("1.15"), "EUR")
    second = _cli(data_dir, database_url, "invoice", "--month", "2026-10")
    assert second.returncode == 0 and number in second.stdout, "issued once, shown again"
    unfinished = _cli(data_dir, database_url, "invoice", "--month", "2999-01")
    assert unfinished.returncode == 1 and "not over" in unfinished.stderr
    bad = _cli(data_dir, database_url, "invoice", "--month", "october")
    assert bad.returncode == 1 and "YYYY-MM" in bad.stderr
    shown = _cli(data_dir, database_url, "show", "--account", "acct-1")
    assert shown.returncode == 0 and "estimate:" in shown.stdout
    missing = _cli(data_dir, database_url, "show", "--account", "nope")
    assert missing.returncode == 1 and "Could not find account" in missing.stderr
