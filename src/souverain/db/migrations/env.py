"""Alembic environment: runs against the connection `souverain.db.migrate` hands it."""

from __future__ import annotations

from alembic import context

import souverain.compute.models
import souverain.db.models
import souverain.identity.models
import souverain.image.models
import souverain.keymanager.models
import souverain.network.models
import souverain.objectstore.models
import souverain.volume.models  # noqa: F401 - registers every service's tables
from souverain.db.base import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # `alembic` run by hand, e.g. to autogenerate a revision
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
