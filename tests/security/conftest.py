"""The security suite runs on both database backends, as tests/api does."""

from __future__ import annotations

from tests.postgres import _drop_test_databases, database_backend, postgres_session

__all__ = ["_drop_test_databases", "database_backend", "postgres_session"]
