"""The metadata store: SQLAlchemy engine, base model and Alembic migrations."""
