"""A windowed table written as is, on a real broker: every result lands in the partition of its
inner key (where a record of that key would), its key reads back as a `Windowed`, and the window
store's changelog is compacted and deleted past the retention plus a day."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from processor.query.partitioner import partition_for
from processor.serdes import IntSerde, StringSerde
from processor.windows import Windowed, WindowedSerde
from tests.integration.workers import PARTITIONS, start_worker
from tests.kafka_helpers import produce

KEYS = [f"user-{i}" for i in range(40)]


def test_windowed_results_go_to_the_partition_of_their_inner_key(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    # The input is spread by librdkafka's default partitioner (CRC32), unlike the outputs.
    produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], [(k, "x") for k in KEYS for _ in "ab"])
    worker = start_worker(
        "tests.worker_topologies:windowed_keys",
        bootstrap=kafka_bootstrap,
        env=topics,
        workdir=tmp_path,
        instance="w0",
    )
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "unused"})
    consumer.assign([TopicPartition(topics["TEST_SINK_TOPIC"], p, 0) for p in range(PARTITIONS)])
    serde = WindowedSerde(StringSerde())
    latest: dict[Windowed[str], int] = {}
    misplaced = []
    deadline = time.monotonic() + 60
    try:
        while sum(latest.values()) < 2 * len(KEYS):
            assert time.monotonic() < deadline, f"{len(latest)} windows so far"
            for message in consumer.consume(500, 0.5):
                assert message.error() is None, message.error()
                window = serde.deserialize(message.key())
                assert window is not None
                latest[window] = IntSerde().deserialize(message.value()) or 0
                if message.partition() != partition_for(window.key.encode(), PARTITIONS):
                    misplaced.append((window.key, message.partition()))
    finally:
        consumer.close()
        worker.stop_quietly()
    assert not misplaced, f"results not in their key's partition: {misplaced[:5]}"
    assert {w.key for w in latest} == set(KEYS)
    assert all(w.end_ms - w.start_ms == 1_000 for w in latest)

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    changelog = f"{topics['PROCESSOR_APPLICATION_ID']}-counts-changelog"
    [future] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, changelog)]).values()
    config = {name: entry.value for name, entry in future.result(timeout=10).items()}
    assert set(config["cleanup.policy"].split(",")) == {"compact", "delete"}
    day = 24 * 60 * 60 * 1000
    assert int(config["retention.ms"]) == 1_000 + 60_000 + day  # size + grace, plus a day
