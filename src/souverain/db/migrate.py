"""Schema migrations at start-up: upgrade to the newest revision this code knows.

A database whose revision this code does not know was written by a newer
Souverain; starting on it could corrupt data, so start-up stops instead.

Alembic (about 11 MiB of modules) is imported when a migration runs, not with
this module: serving processes never migrate and never carry it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaTooNew(Exception):
    """The database was migrated by a newer Souverain than this one."""


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _scripts() -> ScriptDirectory:
    """The migration scripts, read once per process (a process may open many databases)."""
    global _SCRIPTS
    if _SCRIPTS is None:
        from alembic.script import ScriptDirectory

        _SCRIPTS = ScriptDirectory.from_config(_config())
    return _SCRIPTS


_SCRIPTS: ScriptDirectory | None = None


def upgrade(engine: Engine) -> str:
    """Bring the schema to head; return the revision now in place."""
    from alembic import command

    script = _scripts()
    head = script.get_current_head()
    current = current_revision(engine)
    if current is not None and current == head:
        return str(head)  # nothing to run: a restart, or a copy of a migrated database
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaTooNew(
            f"the database schema is at revision {current}, which this Souverain does not know "
            f"(newest known: {head}); it was upgraded by a newer version. Run that version, "
            "or restore a backup taken before the upgrade."
        )
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return str(head)
