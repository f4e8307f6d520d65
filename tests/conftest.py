"""Shared fixtures: one real Kafka broker per test session, and fresh names per test.

Tests that use `kafka_bootstrap` are integration tests and get `pytest.mark.integration`
automatically (`pytest -m "not integration"` runs the rest). Set `PROCESSOR_TEST_BOOTSTRAP`
to run them against a broker you started yourself, e.g. with `scripts/kafka run`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest

from processor.testing.broker import LocalBroker

# `postgres` (the session's PostgreSQL server) and `pg_dsn` (a fresh database per test).
pytest_plugins = ["postgres_fixtures"]

BOOTSTRAP_ENV = "PROCESSOR_TEST_BOOTSTRAP"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a broker shared by the whole session: `$PROCESSOR_TEST_BOOTSTRAP`,
    or a `LocalBroker` started on first use and stopped at the end."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield external
        return
    with LocalBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A short name no other test uses, for topics and application ids: `<test>-<8 hex>`."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name.removeprefix("test_"))
    return f"{stem[:24].strip('-')}-{uuid.uuid4().hex[:8]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
