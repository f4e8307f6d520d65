"""Fixtures shared by the integration tests that run worker processes."""

from __future__ import annotations

import pytest

from tests.integration.workers import PARTITIONS
from tests.kafka_helpers import create_topic


@pytest.fixture
def topics(kafka_bootstrap: str, unique_name: str) -> dict[str, str]:
    """A fresh source and sink topic and application id, as the environment the test
    topologies in `tests/worker_topologies.py` read."""
    source, sink = f"{unique_name}-in", f"{unique_name}-out"
    create_topic(kafka_bootstrap, source, PARTITIONS)
    create_topic(kafka_bootstrap, sink, PARTITIONS)
    return {
        "TEST_SOURCE_TOPIC": source,
        "TEST_SINK_TOPIC": sink,
        "PROCESSOR_APPLICATION_ID": unique_name,
    }
