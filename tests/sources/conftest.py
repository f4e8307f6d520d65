"""The source tests use the session's real PostgreSQL (`tests/postgres_fixtures.py`) under the
names they were written with."""

from __future__ import annotations

import pytest

from processor.testing.postgres import LocalPostgres


@pytest.fixture
def postgres_server(postgres: LocalPostgres) -> LocalPostgres:
    return postgres


@pytest.fixture
def postgres_dsn(pg_dsn: str) -> str:
    """A DSN to a fresh, empty database on the session's server."""
    return pg_dsn
