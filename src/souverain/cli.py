"""The operator's command line: serve, audit verify, keys rotate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from souverain.config import ConfigError, Settings, load_settings

app = typer.Typer(help="Souverain: a sovereign cloud platform.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
keys_app = typer.Typer(help="The token key repository.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")

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
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="API port (0: any free port)")] = None,
    s3_port: Annotated[int | None, typer.Option("--s3-port", help="S3 API port")] = None,
) -> None:
    """Run the whole cloud in the foreground."""
    server: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, "s3_port": s3_port}.items() if v is not None
    }
    overrides = _data_overrides(data_dir)
    if server:
        overrides["server"] = server
    settings = _settings(config, overrides)
    from souverain.db.migrate import SchemaTooNew
    from souverain.server import serve as run

    try:
        code = run(settings)
    except SchemaTooNew as exc:
        typer.echo(f"souverain: refusing to start: {exc}", err=True)
        raise typer.Exit(3) from None
    except OSError as exc:
        typer.echo(f"souverain: cannot start: {exc}", err=True)
        raise typer.Exit(1) from None
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
