"""Stream-table joins in worker processes on a real broker: a stream's backlog catching up on a
table filled before it sees, for each record, the table as it was at the record's time
(timestamp synchronisation); a join of topics with different partition counts stops the worker
with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.integration.workers import WorkerProcess, start_worker
from tests.kafka_helpers import consume, create_topic

pytestmark = pytest.mark.integration

TOPOLOGY = "tests.integration.stream_table_scenario:enrich"
KEYS = [f"c{i}" for i in range(60)]
# Every customer changes at 1000 and 3000; every customer's orders come at these times.
CUSTOMER_VERSIONS = ((1000, "v1"), (3000, "v2"))
ORDER_TIMES = (500, 1500, 2500, 3500, 4500)


def _produce(bootstrap: str, topic: str, records: list[tuple[str, str, int]]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "partitioner": "murmur2_random"}
    )
    for key, value, timestamp in records:
        producer.produce(topic, key=key.encode(), value=value.encode(), timestamp=timestamp)
    assert producer.flush(30) == 0


def _topics(unique_name: str) -> dict[str, str]:
    return {
        "TEST_SOURCE_TOPIC": f"{unique_name}-orders",
        "TEST_SECOND_SOURCE_TOPIC": f"{unique_name}-customers",
        "TEST_SINK_TOPIC": f"{unique_name}-enriched",
    }


def expected_customer(at: int) -> str:
    known = [version for since, version in CUSTOMER_VERSIONS if since <= at]
    return known[-1] if known else "None"


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_backlog_joins_the_table_as_it_was_at_each_records_time(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, guarantee: str
) -> None:
    env = _topics(unique_name)
    create_topic(kafka_bootstrap, env["TEST_SOURCE_TOPIC"], 2)
    create_topic(kafka_bootstrap, env["TEST_SECOND_SOURCE_TOPIC"], 2)
    create_topic(kafka_bootstrap, env["TEST_SINK_TOPIC"], 1)
    # The table is written first, with timestamps later than most of the stream's backlog.
    _produce(
        kafka_bootstrap,
        env["TEST_SECOND_SOURCE_TOPIC"],
        [(key, f"{key}-{version}", ts) for ts, version in CUSTOMER_VERSIONS for key in KEYS],
    )
    _produce(
        kafka_bootstrap,
        env["TEST_SOURCE_TOPIC"],
        [(key, f"o{ts}", ts) for ts in ORDER_TIMES for key in KEYS],
    )
    worker = start_worker(
        TOPOLOGY,
        bootstrap=kafka_bootstrap,
        env=env,
        workdir=tmp_path,
        instance="solo",
        extra=["--processing-guarantee", guarantee, "--application-id", unique_name],
    )
    try:
        count = len(KEYS) * len(ORDER_TIMES)
        records = consume(
            kafka_bootstrap, env["TEST_SINK_TOPIC"], count, timeout=90, read_committed=True
        )
    finally:
        worker.stop_quietly()
    got = sorted((r.key.decode(), r.value.decode()) for r in records if r.key and r.value)
    expected = []
    for key in KEYS:
        for ts in ORDER_TIMES:
            customer = expected_customer(ts)
            table = "None" if customer == "None" else f"{key}-{customer}"
            expected.append((key, f"o{ts}+{table}"))
    assert got == sorted(expected)


def test_a_join_of_topics_with_different_partition_counts_stops_the_worker_with_one_line(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    env = _topics(unique_name)
    create_topic(kafka_bootstrap, env["TEST_SOURCE_TOPIC"], 4)
    create_topic(kafka_bootstrap, env["TEST_SECOND_SOURCE_TOPIC"], 2)
    create_topic(kafka_bootstrap, env["TEST_SINK_TOPIC"], 1)
    worker = WorkerProcess(
        TOPOLOGY,
        bootstrap=kafka_bootstrap,
        instance_id="solo",
        state_dir=tmp_path / "state",
        log_dir=tmp_path,
        env=env,
    )
    assert worker.wait(60) == 2
    lines = [line for line in worker.log().splitlines() if "error" in line]
    assert lines == [
        "processor: topology error: sub-topology 0 reads topics with different partition "
        f"counts ({env['TEST_SECOND_SOURCE_TOPIC']}=2, {env['TEST_SOURCE_TOPIC']}=4): a join "
        "or merge needs the records of a key in the same partition number of each; give these "
        "topics the same partition count (or, for a stream joining a table, re-key it, e.g. "
        "with map(), so it is repartitioned to the table's)"
    ]
