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


def upgrade(engine: Engine) -> str:
    """Bring the schema to head; return the revision now in place."""
    from alembic import command
    from alembic.script import ScriptDirectory

    config = _config()
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    current = current_revision(engine)
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaTooNew(
            f"the database schema is at revision {current}, which this Souverain does not know "
            f"(newest known: {head}); it was upgraded by a newer version. Run that version, "
            "or restore a backup taken before the upgrade."
        )
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return str(head)
