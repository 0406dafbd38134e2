"""Schema migrations: every revision upgrades in order, and newer schemas are refused.

Each test runs on an empty SQLite file and on an empty PostgreSQL database."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

import souverain
from souverain.db import migrate
from souverain.db.base import Base
from souverain.db.engine import make_engine
from tests.postgres import BACKENDS, shared_server


@pytest.fixture(params=BACKENDS)
def engine(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_session: None
) -> Iterator[Engine]:
    """An empty database: a SQLite file, or a new PostgreSQL database (not the template)."""
    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
        yield made
        made.dispose()
        return
    pg = shared_server()
    name = pg.create_database(migrated=False)
    made = make_engine(pg.url(name))
    try:
        yield made
    finally:
        made.dispose()
        pg.drop_database(name)


def test_upgrade_from_the_first_revision_reaches_head_with_data_kept(engine: Engine) -> None:
    config = migrate._config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO identity_domains (id, name, description, enabled, tags) "
                "VALUES ('d1', 'kept', '', true, '[]')"
            )
        )
    head = migrate.upgrade(engine)
    assert migrate.current_revision(engine) == head
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM identity_domains")).scalar() == "kept"
        assert conn.execute(text("SELECT generation FROM identity_state")).scalar() == 0


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    for module in pkgutil.iter_modules(souverain.__path__):  # every service's tables
        if module.ispkg and importlib.util.find_spec(f"souverain.{module.name}.models"):
            importlib.import_module(f"souverain.{module.name}.models")
    migrate.upgrade(engine)
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set(Base.metadata.tables)


def test_upgrade_twice_changes_nothing(engine: Engine) -> None:
    first = migrate.upgrade(engine)
    assert migrate.upgrade(engine) == first


def test_unknown_newer_revision_is_refused(engine: Engine) -> None:
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrate.SchemaTooNew, match="9999"):
        migrate.upgrade(engine)
