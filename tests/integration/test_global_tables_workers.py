"""Global tables on a real broker: every worker holds the whole table, a restarted worker
reads only what is new since its checkpoint, and an update while running is seen by the records
processed after it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.integration.workers import PARTITIONS, WorkerProcess, start_worker
from tests.kafka_helpers import create_topic, produce

TOPOLOGY = "tests.integration.global_topology:enriching"
COUNTRY_PARTITIONS = 3
COUNTRIES = 300


class Enriched:
    """Reads the sink: order id -> (instance, country) of its latest result."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
        )
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.results: dict[str, tuple[str, str | None]] = {}

    def read(self, order_ids: set[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not order_ids <= self.results.keys():
            missing = len(order_ids - self.results.keys())
            assert time.monotonic() < deadline, f"{missing} orders not joined after {timeout}s"
            for message in self._consumer.consume(1000, 0.2):
                assert message.error() is None, message.error()
                joined = json.loads(message.value())
                self.results[joined["order"]] = (joined["instance"], joined["country"])

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture
def env(kafka_bootstrap: str, unique_name: str) -> dict[str, str]:
    names = {
        "TEST_SOURCE_TOPIC": f"{unique_name}-orders",
        "TEST_GLOBAL_TOPIC": f"{unique_name}-countries",
        "TEST_SINK_TOPIC": f"{unique_name}-enriched",
        "PROCESSOR_APPLICATION_ID": unique_name,
    }
    create_topic(kafka_bootstrap, names["TEST_SOURCE_TOPIC"], PARTITIONS)
    create_topic(kafka_bootstrap, names["TEST_SINK_TOPIC"], PARTITIONS)
    # Not compacted: a compacted topic refuses the record without a key the test writes.
    create_topic(kafka_bootstrap, names["TEST_GLOBAL_TOPIC"], COUNTRY_PARTITIONS)
    return names


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop_quietly()


def _orders(prefix: str, count: int) -> list[tuple[bytes, bytes]]:
    """Orders keyed over every partition, each naming a country of any partition."""
    return [
        (
            f"{prefix}{i}".encode(),
            json.dumps({"id": f"{prefix}{i}", "country": f"c{i % COUNTRIES}"}).encode(),
        )
        for i in range(count)
    ]


def test_workers_hold_the_whole_table_restore_from_checkpoints_and_follow_updates(
    kafka_bootstrap: str, env: dict[str, str], workers: list[WorkerProcess], tmp_path: Path
) -> None:
    countries = env["TEST_GLOBAL_TOPIC"]
    produce(
        kafka_bootstrap,
        countries,
        [(f"c{i}".encode(), f"v1-c{i}".encode()) for i in range(COUNTRIES)],
    )
    produce(kafka_bootstrap, countries, [(None, b"no key")])  # skipped, with a warning
    a, b = (
        start_worker(TOPOLOGY, bootstrap=kafka_bootstrap, env=env, workdir=tmp_path, instance=i)
        for i in ("a", "b")
    )
    workers += [a, b]
    for worker in (a, b):
        worker.wait_for_log(rf"global tables: restored {COUNTRIES + 1} records", 60)
        # Each holds some of the orders' partitions before any order is sent.
        worker.wait_for_log(r"members \[a, b\]; active tasks \[\S", 60)
    enriched = Enriched(kafka_bootstrap, env["TEST_SINK_TOPIC"])
    try:
        # Both workers process orders, and each finds every country: each holds the whole table.
        orders = _orders("first-", 600)
        produce(kafka_bootstrap, env["TEST_SOURCE_TOPIC"], orders)
        enriched.read({k.decode() for k, _ in orders})
        first = [enriched.results[k.decode()] for k, _ in orders]
        assert {instance for instance, _ in first} == {"a", "b"}
        assert all(country == f"v1-c{i % COUNTRIES}" for i, (_, country) in enumerate(first))
        assert "has a null key" in a.log() and "has a null key" in b.log()

        # A restarted worker reads only what was written since its checkpoint.
        assert a.terminate() == 0
        produce(kafka_bootstrap, countries, [(b"c1", b"v2-c1"), (b"c2", None), (b"c3", b"v2-c3")])
        a = start_worker(
            TOPOLOGY, bootstrap=kafka_bootstrap, env=env, workdir=tmp_path, instance="a"
        )
        workers.append(a)
        a.wait_for_log(r"restoring about 3 records since the checkpoint", 60)
        a.wait_for_log(r"global tables: restored 3 records", 60)

        # An update while both run is seen by the orders processed after it.
        b.wait_for_log(r"global tables: restored", 1)
        a.wait_for_log(r"worker a: [a-z_]+ -> running", 60)
        produce(kafka_bootstrap, countries, [(b"c5", b"v3-c5")])
        time.sleep(2)  # the global threads follow within milliseconds; this is ample
        later = [
            (f"later-{i}".encode(), json.dumps({"id": f"later-{i}", "country": c}).encode())
            for i, c in enumerate(["c1", "c2", "c3", "c5"] * 10)
        ]
        produce(kafka_bootstrap, env["TEST_SOURCE_TOPIC"], later)
        enriched.read({k.decode() for k, _ in later})
        seen = {json.loads(v)["country"]: enriched.results[k.decode()][1] for k, v in later}
        assert seen == {"c1": "v2-c1", "c2": None, "c3": "v2-c3", "c5": "v3-c5"}
        assert {enriched.results[k.decode()][0] for k, _ in later} == {"a", "b"}
    finally:
        enriched.close()
