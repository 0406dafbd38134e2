"""`souverain host ...`: what an operator runs on one machine of the cloud.

`decommission` takes away everything this cloud made in the kernel and the run dir of
this host (bridges, taps, veths, namespaces, nftables tables, dnsmasq, run files), found
by the cloud's prefix and nothing else. `drain` (cli_drain.py) moves every server off a
host through the compute API. A start rebuilds all of it from the database, so
it is also how a host is cleaned after a cloud is stopped for good.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

host_app = typer.Typer(help="This host's share of the cloud.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where state is kept")]


def cloud_processes(data_dir: Path) -> dict[int, str]:
    """`souverain serve` and QEMU processes of the cloud kept in `data_dir`: pid -> argv[0].

    A serve is recognised by its `--data-dir` argument, a guest by its files' paths."""
    root = str(data_dir.resolve())
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        is_qemu = Path(argv[0]).name.startswith("qemu-system") and root in " ".join(argv)
        is_serve = "serve" in argv and any(
            a == "--data-dir" and i + 1 < len(argv) and _same(argv[i + 1], root)
            for i, a in enumerate(argv)
        )
        if is_qemu or is_serve:
            found[int(entry.name)] = Path(argv[0]).name
    return found


def _same(path: str, root: str) -> bool:
    try:
        return str(Path(path).resolve()) == root
    except OSError:
        return False


@host_app.command("decommission")
def decommission(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Remove everything this cloud made on this host, and nothing else.

    Stop `souverain serve` and the cloud's guests on this host first."""
    from souverain.cli import _data_overrides, _settings
    from souverain.network.host import host_network

    settings = _settings(config, _data_overrides(data_dir))
    if os.geteuid() != 0:
        typer.echo("souverain: host decommission needs root (it removes kernel objects)", err=True)
        raise typer.Exit(2)
    running = cloud_processes(settings.data_dir)
    if running:
        listed = ", ".join(f"{name} {pid}" for pid, name in sorted(running.items()))
        typer.echo(
            f"souverain: refusing: this cloud still runs here ({listed}); stop `souverain "
            "serve` and delete or stop its servers on this host first",
            err=True,
        )
        raise typer.Exit(1)
    host = host_network(settings.data_dir, make_run_dir=False)
    done = host.decommission()
    for key, items in done.items():
        if key.startswith("removed") and items:
            typer.echo(f"{key.removeprefix('removed_').replace('_', ' ')}: {', '.join(items)}")
    typer.echo(f"nothing of this cloud (prefix {host.dataplane.prefix}) is left on this host")


@host_app.command("enroll")
def enroll(
    name: Annotated[str, typer.Argument(help="the host's name, as its agent will give it")],
    roles: Annotated[str, typer.Option(help="compute, network or compute,network")] = "compute",
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="write the token here (0600), not stdout")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Register a hypervisor host and print its agent's token (shown once; enrolling the
    same name again replaces it). Run it where the cloud's database is reachable."""
    from souverain.cli import _data_overrides, _settings
    from souverain.common.clock import Clock
    from souverain.common.errors import ApiError
    from souverain.compute.agents import enroll as enroll_host
    from souverain.compute.core import now_naive
    from souverain.db.engine import Database, make_engine
    from souverain.db.migrate import upgrade

    settings = _settings(config, _data_overrides(data_dir))
    db = Database(make_engine(settings.database_url))
    try:
        upgrade(db.engine)
        with db.session() as s:
            token = enroll_host(s, name, roles, now_naive(Clock()))
    except ApiError as exc:
        typer.echo(f"souverain: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    if token_file is None:
        typer.echo(token)
        return
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    typer.echo(f"host {name} enrolled; its token is in {token_file}")


@host_app.command("drain")
def drain(
    name: Annotated[str, typer.Argument(help="the host to empty")],
    cloud: Annotated[str, typer.Option("--os-cloud", help="the admin's clouds.yaml entry")] = (
        "souverain"
    ),
    clouds_file: Annotated[
        Path | None, typer.Option("--clouds-file", help="clouds.yaml (default: the data dir's)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="longest wait for one server, seconds")] = 600,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Disable a host for new servers and move every server off it (running ones live,
    stopped ones cold, confirmed), through the compute API as an admin; ends with what
    could not be moved and why (exit 1 then)."""
    from souverain.cli import _data_overrides, _settings
    from souverain.cli_drain import DrainError, Nova
    from souverain.cli_drain import drain as drain_host

    if clouds_file is None:
        env = os.environ.get("OS_CLIENT_CONFIG_FILE")
        settings = _settings(config, _data_overrides(data_dir))
        clouds_file = Path(env) if env else settings.data_dir / "clouds.yaml"
    try:
        outcomes = drain_host(Nova(clouds_file, cloud), name, typer.echo, timeout)
    except DrainError as exc:
        typer.echo(f"souverain: host drain: {exc}", err=True)
        raise typer.Exit(2) from None
    left = [o for o in outcomes if o.moved_to is None]
    typer.echo(f"host {name}: {len(outcomes) - len(left)} moved, {len(left)} left")
    for outcome in left:
        typer.echo(f"  not moved: {outcome.name} ({outcome.server}): {outcome.reason}")
    if left:
        raise typer.Exit(1)
