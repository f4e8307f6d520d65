"""Async operators against the real broker and a real local HTTP service (issue 22): three
workers call the service (5 ms a call, 5% of calls refused and retried) through
`map_values_async`, and count the results per value downstream, exactly-once, while workers
are SIGKILLed with calls in flight: every count is exact, no output is duplicated. Then the
service goes down for a while: the workers wait (their partitions paused, retrying), and once
it is back every record is counted, exactly once."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer

from processor.testing.http_service import EchoService
from tests.integration.failover import metrics as scrape_metrics
from tests.integration.test_state_faults import (
    Cluster,
    Latest,
    count_of,
    kill_and_restart_while_processing,
    new_cluster,
)
from tests.integration.test_state_faults import cluster_factory as cluster_factory
from tests.kafka_helpers import produce

TOPOLOGY = "tests.worker_topologies:async_counting"


def test_exactly_once_counts_after_async_calls_are_exact_through_sigkills_and_an_outage(
    kafka_bootstrap: str, topics: dict[str, str], cluster_factory: list[Cluster], tmp_path: Path
) -> None:
    service = EchoService(delay_s=0.005, error_rate=0.05)
    try:
        keys, records = 300, 6_000
        values = [f"v{i % keys}" for i in range(records)]
        random.Random(3).shuffle(values)
        produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], [(None, v) for v in values])
        truth = Counter(values)
        env = {**topics, "TEST_SERVICE_URL": service.url}
        cluster = new_cluster(
            cluster_factory,
            kafka_bootstrap,
            env,
            tmp_path,
            TOPOLOGY,
            "--processing-guarantee",
            "exactly_once",
        )
        for instance in ("w0", "w1", "w2"):
            cluster.start(instance)
        output = Latest(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
        kill_and_restart_while_processing(cluster, output, records, seed=11, timeout=240)
        output.poll(2.0)
        duplicated = {pair: n for pair, n in output.pairs.items() if n > 1}
        assert not duplicated, f"{len(duplicated)} duplicated, e.g. {next(iter(duplicated))}"
        assert output.total == records, "one count update per input record, exactly once"
        assert {k: count_of(v) for k, v in output.latest.items()} == truth
        assert service.refused > 0, "the service refused some calls, which were retried"

        # An outage: new records wait for the service, nothing is lost or counted twice.
        service.down()
        more = [f"v{i % keys}" for i in range(1_000)]
        produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], [(None, v) for v in more])
        time.sleep(3.0)
        output.poll(0.5)
        assert output.total == records, "nothing goes on while the service is down"
        service.up()
        truth.update(more)
        deadline = time.monotonic() + 60
        while output.total < records + len(more):
            assert time.monotonic() < deadline, f"{output.total} of {records + len(more)}"
            output.poll()
        output.poll(2.0)
        assert output.total == records + len(more)
        assert {k: count_of(v) for k, v in output.latest.items()} == truth
        output.close()
    finally:
        service.close()


def test_ordered_results_keep_each_partitions_order_though_calls_finish_out_of_order(
    kafka_bootstrap: str, topics: dict[str, str], cluster_factory: list[Cluster], tmp_path: Path
) -> None:
    service = EchoService(delay_s=0.001, max_delay_s=0.03)  # later calls often finish first
    try:
        records = 3_000
        sent = [(f"k{n % 50}", f"{n}") for n in range(records)]
        produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], sent)
        env = {**topics, "TEST_SERVICE_URL": service.url}
        cluster = new_cluster(
            cluster_factory,
            kafka_bootstrap,
            env,
            tmp_path,
            "tests.worker_topologies:async_echo",
            "--processing-guarantee",
            "exactly_once",
        )
        worker = cluster.start("w0")
        by_key = read_in_topic_order(kafka_bootstrap, topics["TEST_SINK_TOPIC"], records)
        assert sorted(int(v) for values in by_key.values() for v in values) == list(range(records))
        for key, values in by_key.items():
            assert [int(v) for v in values] == sorted(int(v) for v in values), key
        # Operators see the calls in the worker's metrics.
        metrics = scrape_metrics(worker)
        assert (
            metrics["processor_async_calls_total"][(("operator", "echo"), ("outcome", "ok"))]
            >= records
        )
        assert metrics["processor_async_call_seconds_count"][(("operator", "echo"),)] >= records
        assert () in metrics["processor_async_calls_in_flight"]
    finally:
        service.close()


def read_in_topic_order(bootstrap: str, topic: str, records: int) -> dict[str, list[str]]:
    """Each key's values in the order of its partition (read_committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    found: dict[tuple[int, int], tuple[str, str]] = {}
    deadline = time.monotonic() + 90
    try:
        while len(found) < records:
            assert time.monotonic() < deadline, f"{len(found)} of {records} outputs"
            for message in consumer.consume(500, 0.5):
                if message.error() is None:
                    key, value = message.key().decode(), message.value().decode()
                    found[(message.partition(), message.offset())] = (key, value)
    finally:
        consumer.close()
    by_key: dict[str, list[str]] = {}
    for _, (key, value) in sorted(found.items()):
        by_key.setdefault(key, []).append(value)
    return by_key
