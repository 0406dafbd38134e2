"""`souverain kms ...`: the key manager's operator commands. `rotate` rotates the root key
(and with `--projects` every project's KEK) beside a running cloud, with progress, then
deletes the old keys nothing names any more; `status` shows the root of trust, its
versions, what is wrapped under what and what the next rotate would delete. Neither ever
prints a key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

kms_app = typer.Typer(help="The key manager's root of trust and keys.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where state is kept")]


def _open(config: Path | None, data_dir: Path | None) -> Any:
    from souverain.cli import _data_overrides, _settings
    from souverain.common.clock import Clock
    from souverain.config import ConfigError
    from souverain.db.engine import Database, make_engine
    from souverain.db.migrate import SchemaTooNew, upgrade
    from souverain.keymanager.roots import open_root
    from souverain.keymanager.service import KeyManagerService

    settings = _settings(config, _data_overrides(data_dir))
    db = Database(make_engine(settings.database_url))
    try:
        upgrade(db.engine)
    except SchemaTooNew as exc:
        db.dispose()
        typer.echo(f"souverain: {exc}", err=True)
        raise typer.Exit(3) from None
    try:
        root = open_root(settings.keymanager, settings.data_dir.resolve())
    except ConfigError as exc:  # the token, its PIN or the module: say which, no traceback
        db.dispose()
        typer.echo(f"souverain: {exc}", err=True)
        raise typer.Exit(2) from None
    return db, KeyManagerService(db, root, Clock())


def _holders(db: Any) -> list[Any]:
    """The services that keep data keys wrapped under project keys (object storage)."""
    from souverain.objectstore.wrapped_keys import StoredDataKeys

    return [StoredDataKeys(db)]


@kms_app.command("rotate")
def rotate(
    projects: Annotated[
        bool, typer.Option("--projects", help="also give every project a new KEK")
    ] = False,
    grace_minutes: Annotated[
        int,
        typer.Option(
            "--grace-minutes",
            min=0,
            help="keep an old project key this long after it stopped being active, even "
            "when nothing names it (an upload may still be writing a data key it wrapped)",
        ),
    ] = 60,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Rotate the root key, rewrap every project key under it, then delete the old project
    and root keys nothing names any more; secrets stay readable throughout, by a running
    server too."""
    import datetime as dt

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID

    from souverain.keymanager.rotation import rotate as run_rotation

    db, kms = _open(config, data_dir)
    tasks: dict[str, TaskID] = {}
    try:
        with Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn()) as bars:

            def step(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bars.add_task(what, total=total)
                bars.update(tasks[what], completed=done, total=total)

            grace = dt.timedelta(minutes=grace_minutes)
            report = run_rotation(kms, projects, step, _holders(db), grace)
    finally:
        kms.close()
        db.dispose()
    typer.echo(
        f"root key {report.old_version} -> {report.new_version}: "
        f"{report.keks_rewrapped} project key(s) rewrapped, "
        f"retired: {', '.join(report.retired) or 'none (still in use)'}"
    )
    if projects:
        typer.echo(
            f"{report.projects_rotated} project(s) given a new key, "
            f"{report.secrets_rewrapped} secret data key(s) rewrapped"
        )
    typer.echo(f"{report.keks_deleted} old project key(s) named by nothing deleted")


@kms_app.command("status")
def status(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """The root of trust, its current version, and the keys wrapped under each."""
    from souverain.keymanager.rotation import status as read_status

    db, kms = _open(config, data_dir)
    try:
        found = read_status(kms, _holders(db))
    finally:
        kms.close()
        db.dispose()
    typer.echo(f"root of trust: {found.root}")
    typer.echo(f"current root key version: {found.current_version}")
    older = [v for v in found.root_versions if v != found.current_version]
    typer.echo(f"older root key versions kept: {len(older)} ({', '.join(older) or 'none'})")
    for version, count in sorted(found.keks_by_root_version.items()):
        typer.echo(f"project keys under {version}: {count}")
    states = ", ".join(f"{n} {state}" for state, n in sorted(found.keks_by_state.items()))
    typer.echo(f"project keys: {states or 'none'}")
    typer.echo(
        f"previous project keys named by nothing: {found.unnamed_previous_keks} "
        "(the next rotate deletes them once their grace has passed)"
    )
    typer.echo(f"projects with keys: {found.projects}")
    typer.echo(f"secrets: {found.secrets}")
