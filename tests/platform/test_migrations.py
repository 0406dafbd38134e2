"""Schema migrations: every revision upgrades in order, and newer schemas are refused."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

import souverain
from souverain.db import migrate
from souverain.db.base import Base
from souverain.db.engine import make_engine


def test_upgrade_from_the_first_revision_reaches_head_with_data_kept(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    config = migrate._config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO identity_domains (id, name, description, enabled, tags) "
                "VALUES ('d1', 'kept', '', 1, '[]')"
            )
        )
    head = migrate.upgrade(engine)
    assert migrate.current_revision(engine) == head
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM identity_domains")).scalar() == "kept"
        assert conn.execute(text("SELECT generation FROM identity_state")).scalar() == 0


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    for module in pkgutil.iter_modules(souverain.__path__):  # every service's tables
        if module.ispkg and importlib.util.find_spec(f"souverain.{module.name}.models"):
            importlib.import_module(f"souverain.{module.name}.models")
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set(Base.metadata.tables)


def test_upgrade_twice_changes_nothing(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    first = migrate.upgrade(engine)
    assert migrate.upgrade(engine) == first


def test_unknown_newer_revision_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrate.SchemaTooNew, match="9999"):
        migrate.upgrade(engine)
