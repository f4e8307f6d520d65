"""The store caches' byte budget on a real broker: a worker whose budget is tiny commits early,
long before its commit interval, and still counts every key exactly."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from processor.serdes import IntSerde
from tests.integration.workers import FAST, PARTITIONS, WorkerProcess
from tests.kafka_helpers import consume, produce

KEYS = 50
RECORDS = 3000


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=10))
    finally:
        consumer.close()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_full_budget_commits_early_and_every_count_is_exact(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, guarantee: str
) -> None:
    truth = Counter(f"k{i % KEYS}" for i in range(RECORDS))
    produce(
        kafka_bootstrap,
        topics["TEST_SOURCE_TOPIC"],
        [(f"k{i % KEYS}", "x") for i in range(RECORDS)],
    )
    worker = WorkerProcess(
        "tests.worker_topologies:keyed_counting",
        bootstrap=kafka_bootstrap,
        instance_id="c0",
        state_dir=tmp_path / "c0",
        log_dir=tmp_path,
        env=topics,
        extra_args=[
            *FAST,
            "--processing-guarantee",
            guarantee,
            # About ten entries: a batch of records fills it. With a ten-minute interval, only
            # early commits can commit anything before the worker stops.
            "--store-cache-bytes",
            "2KiB",
            "--commit-interval-ms",
            "600000",
        ],
    )
    try:
        group, source = topics["PROCESSOR_APPLICATION_ID"], topics["TEST_SOURCE_TOPIC"]
        deadline = time.monotonic() + 90
        while committed(kafka_bootstrap, group, source) < RECORDS * 0.8:
            assert time.monotonic() < deadline, f"no early commits:\n{worker.log()[-3000:]}"
            assert worker.process.poll() is None, worker.log()[-3000:]
            time.sleep(0.5)
    finally:
        assert worker.terminate() == 0, worker.log()[-3000:]
    outputs = consume(kafka_bootstrap, topics["TEST_SINK_TOPIC"], RECORDS, read_committed=True)
    final: dict[str, int] = {}
    for record in outputs:
        assert record.key is not None and record.value is not None
        key = record.key.decode()
        count = IntSerde().deserialize(record.value)
        assert count is not None
        final[key] = max(final.get(key, 0), count)
    assert final == truth
