"""The operator's command line: serve, audit verify, keys rotate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from souverain.cli_host import host_app
from souverain.cli_kms import kms_app
from souverain.config import ConfigError, Settings, load_settings

app = typer.Typer(help="Souverain: a sovereign cloud platform.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
keys_app = typer.Typer(help="The token key repository.", no_args_is_help=True)
billing_app = typer.Typer(help="Metering, invoices and consumption.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(billing_app, name="billing")
app.add_typer(host_app, name="host")
app.add_typer(kms_app, name="kms")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where state is kept")]


def _settings(config: Path | None, overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(config, overrides=overrides)
    except ConfigError as exc:
        typer.echo(f"souverain: {exc}", err=True)
        raise typer.Exit(2) from None


def _data_overrides(data_dir: Path | None) -> dict[str, Any]:
    return {"data_dir": str(data_dir)} if data_dir is not None else {}


@app.command()
def agent(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    api_url: Annotated[str | None, typer.Option("--api-url", help="the control plane")] = None,
    name: Annotated[str | None, typer.Option(help="this host's name")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="its token")] = None,
) -> None:
    """Run this machine as one hypervisor host of the cloud (no database access)."""
    from souverain.cli_agent import run_agent

    options = {"api_url": api_url, "name": name, "token_file": token_file}
    agent_overrides = {k: str(v) for k, v in options.items() if v is not None}
    overrides = {**_data_overrides(data_dir), "agent": agent_overrides}
    run_agent(_settings(config, overrides))


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="API port (0: any free port)")] = None,
    s3_port: Annotated[int | None, typer.Option("--s3-port", help="S3 API port")] = None,
    roles: Annotated[
        str | None,
        typer.Option(help="what this node runs, of api,network,background (default: all)"),
    ] = None,
) -> None:
    """Run the cloud in the foreground: all of it, or the roles named."""
    options = {"host": host, "port": port, "s3_port": s3_port, "roles": roles}
    server: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    overrides = _data_overrides(data_dir)
    if server:
        overrides["server"] = server
    settings = _settings(config, overrides)
    from souverain.db.migrate import SchemaTooNew
    from souverain.serving import serve as run

    try:
        code = run(settings)
    except SchemaTooNew as exc:
        typer.echo(f"souverain: refusing to start: {exc}", err=True)
        raise typer.Exit(3) from None
    except OSError as exc:
        typer.echo(f"souverain: cannot start: {exc}", err=True)
        raise typer.Exit(1) from None
    except ConfigError as exc:  # found at start: the key manager's token or PIN
        typer.echo(f"souverain: refusing to start: {exc}", err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)


@audit_app.command("verify")
def audit_verify(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Check that no audit record was edited, removed or reordered."""
    from souverain.common.audit import verify
    from souverain.server import DataPaths

    settings = _settings(config, _data_overrides(data_dir))
    paths = DataPaths(settings.data_dir.resolve())
    try:
        key = paths.audit_key.read_bytes()
    except FileNotFoundError:
        typer.echo(
            f"audit log: no key at {paths.audit_key}; is this a Souverain data dir?", err=True
        )
        raise typer.Exit(1) from None
    verdict = verify(paths.audit_log, key)
    if verdict.ok:
        typer.echo(f"audit log OK: {verdict.records} records, chain intact ({paths.audit_log})")
        return
    typer.echo(
        f"audit log BROKEN at line {verdict.line}: {verdict.problem} ({paths.audit_log})", err=True
    )
    raise typer.Exit(1)


@keys_app.command("rotate")
def keys_rotate(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Promote the staged token key; older keys keep validating until retired."""
    from souverain.identity.tokens import KeyRepository, KeyRepositoryError
    from souverain.server import DataPaths

    settings = _settings(config, _data_overrides(data_dir))
    repo = KeyRepository(
        DataPaths(settings.data_dir.resolve()).fernet_keys, settings.identity.max_active_keys
    )
    try:
        primary = repo.rotate()
    except KeyRepositoryError as exc:
        typer.echo(f"souverain: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"token keys rotated: key {primary} is now primary ({repo.path})")


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()


def _billing_service(config: Path | None, data_dir: Path | None) -> Any:
    from souverain.server import open_platform

    settings = _settings(config, _data_overrides(data_dir))
    settings.network.dataplane = False  # the operator's CLI never touches the host's network
    return open_platform(settings).billing


def _progress(label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        f"[bold]{label}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )


@billing_app.command("aggregate")
def billing_aggregate(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    until: Annotated[
        str | None, typer.Option(help="aggregate complete hours before this ISO time (UTC)")
    ] = None,
) -> None:
    """Turn meter events into hourly usage (idempotent: hours are recomputed, not added)."""
    import datetime as dt

    billing = _billing_service(config, data_dir)
    limit = dt.datetime.fromisoformat(until) if until else None
    with _progress("aggregating months") as bar:
        task = bar.add_task("months", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        rows = billing.aggregate(limit, step)
    typer.echo(f"hourly usage: {rows} rows written")


@billing_app.command("invoice")
def billing_invoice(
    month: Annotated[str, typer.Option(help="the month to invoice, YYYY-MM")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Issue every account's invoice for a finished month (twice gives the same invoices)."""
    from souverain.common.errors import ApiError

    billing = _billing_service(config, data_dir)
    try:
        with _progress(f"invoicing {month}") as bar:
            task = bar.add_task("accounts", total=None)

            def step(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            issued = billing.issue_invoices(month, step)
    except ApiError as exc:
        typer.echo(f"souverain: {exc.message}", err=True)
        raise typer.Exit(1) from None
    for view in issued:
        typer.echo(f"{view['number']}  {view['account_id']}  {view['total']} {view['currency']}")
    typer.echo(f"{len(issued)} invoice(s) for {month}")


@billing_app.command("show")
def billing_show(
    account: Annotated[str, typer.Option(help="account id")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    granularity: Annotated[str, typer.Option(help="hour, day or month")] = "month",
) -> None:
    """An account's consumption this month to date, with its cost estimate."""
    from souverain.billing.service import SYSTEM
    from souverain.common.errors import ApiError

    billing = _billing_service(config, data_dir)
    try:
        view = billing.consumption(SYSTEM, account, granularity=granularity)
    except ApiError as exc:
        typer.echo(f"souverain: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"account {account}: {view['start']} .. {view['end']}")
    for line in view["cost"]:
        typer.echo(
            f"  {line['project_id']}  {line['metric']:<12} {line['flavor']:<10} "
            f"{line['quantity']} {line['unit']} x {line['unit_price']} = {line['amount']} EUR"
        )
    typer.echo(f"estimate: {view['total_estimate']} {view['currency']}")


quota_app = typer.Typer(help="Per-project quotas the APIs do not set.", no_args_is_help=True)
app.add_typer(quota_app, name="quota")


@quota_app.command("s3")
def quota_s3(
    project: Annotated[str, typer.Option("--project", help="project id")],
    max_bytes: Annotated[
        int | None, typer.Option("--bytes", min=-1, help="stored bytes; -1: unlimited")
    ] = None,
    max_objects: Annotated[
        int | None, typer.Option("--objects", min=-1, help="stored objects; -1: unlimited")
    ] = None,
    reset: Annotated[bool, typer.Option("--reset", help="back to the configured defaults")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Set a project's object storage limits; without a limit, show them."""
    from souverain.common.clock import Clock
    from souverain.db.engine import Database, make_engine
    from souverain.db.migrate import SchemaTooNew, upgrade
    from souverain.objectstore.service import set_storage_quota

    if not project or len(project) > 64:
        typer.echo("souverain: --project must be a project id (1 to 64 characters)", err=True)
        raise typer.Exit(2)
    settings = _settings(config, _data_overrides(data_dir))
    db = Database(make_engine(settings.database_url))
    try:
        upgrade(db.engine)  # a no-op on a served database; a fresh one gets its tables
        stored = set_storage_quota(db, Clock(), project, max_bytes, max_objects, reset)
    except SchemaTooNew as exc:
        typer.echo(f"souverain: {exc}", err=True)
        raise typer.Exit(3) from None
    finally:
        db.dispose()
    defaults = (settings.objectstore.quota_bytes, settings.objectstore.quota_objects)
    for name, value, default in zip(("bytes", "objects"), stored, defaults, strict=True):
        shown = default if value is None else value
        origin = "default" if value is None else "project"
        typer.echo(f"{name}: {'unlimited' if shown < 0 else shown} ({origin})")


s3_app = typer.Typer(help="Object storage maintenance.", no_args_is_help=True)
app.add_typer(s3_app, name="s3")


@s3_app.command("recount")
def s3_recount(
    repair: Annotated[
        bool, typer.Option("--repair", help="set totals that disagree to the recount")
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Recount every bucket's bytes and objects from its rows and compare with its running
    totals (what quotas and billing read). Exit 1 when one disagrees (unless repaired)."""
    from souverain.db.engine import Database, make_engine
    from souverain.db.migrate import SchemaTooNew, upgrade
    from souverain.objectstore.usage import recount as recount_usage

    settings = _settings(config, _data_overrides(data_dir))
    db = Database(make_engine(settings.database_url))
    try:
        upgrade(db.engine)
        found = recount_usage(db, repair)
    except SchemaTooNew as exc:
        typer.echo(f"souverain: {exc}", err=True)
        raise typer.Exit(3) from None
    finally:
        db.dispose()
    drifted = [usage for usage in found if not usage.agrees]
    for usage in drifted:
        typer.echo(
            f"{usage.bucket} (project {usage.project_id}): totals {usage.stored_bytes} bytes, "
            f"{usage.stored_objects} objects; rows {usage.counted_bytes} bytes, "
            f"{usage.counted_objects} objects{' (repaired)' if repair else ''}"
        )
    typer.echo(f"{len(found)} bucket(s) recounted, {len(drifted)} disagreed")
    if drifted and not repair:
        typer.echo("run `souverain s3 recount --repair` to set the totals to the count", err=True)
        raise typer.Exit(1)
