"""PostgreSQL fixtures: one real server per test session, a fresh database per test.

The server is a `LocalPostgres` started on first use (Debian's binaries; `scripts/setup`
installs them) and stopped at the end of the session. Tests that restart or kill it leave it
running again on the same port, so the tests after them are unaffected.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from processor.testing.postgres import LocalPostgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """The session's running PostgreSQL server."""
    with LocalPostgres() as server:
        yield server


@pytest.fixture
def pg_dsn(postgres: LocalPostgres) -> str:
    """The DSN of a new, empty database of the session's server, for this test alone."""
    return postgres.create_database(f"test_{uuid.uuid4().hex[:12]}")
