"""The operator's identity commands: `souverain identity totp enroll USER`.

Prints a new TOTP secret once, as an otpauth:// URI for an authenticator app; the
secret is stored encrypted like every credential blob and never written to a log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

identity_app = typer.Typer(help="Users' second factors.", no_args_is_help=True)
totp_app = typer.Typer(help="TOTP credentials (RFC 6238).", no_args_is_help=True)
identity_app.add_typer(totp_app, name="totp")


@totp_app.command("enroll")
def totp_enroll(
    user: Annotated[str, typer.Argument(help="the user's id, or its name in --domain")],
    domain: Annotated[str, typer.Option(help="the user's domain (id or name)")] = "default",
    issuer: Annotated[str, typer.Option(help="the name the authenticator shows")] = "Souverain",
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="where state is kept")] = None,
) -> None:
    """Give a user a TOTP credential; print its otpauth:// URI (shown this once only)."""
    from souverain.cli import _data_overrides, _settings
    from souverain.common.clock import Clock
    from souverain.common.errors import ApiError
    from souverain.db.engine import Database, make_engine
    from souverain.identity.mfa import otpauth_uri
    from souverain.server import _identity

    settings = _settings(config, _data_overrides(data_dir))
    db = Database(make_engine(settings.database_url))
    try:
        name, secret = _identity(settings, db, Clock()).authentication.mfa.enroll(user, domain)
    except ApiError as exc:
        typer.echo(f"souverain: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    typer.echo(otpauth_uri(issuer, name, secret))
    typer.echo(
        f"TOTP credential made for {name}: add the URI above to an authenticator app now; "
        "it is not shown again.",
        err=True,
    )
