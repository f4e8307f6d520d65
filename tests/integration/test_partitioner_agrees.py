"""`partition_for` agrees with where librdkafka's `murmur2_random` partitioner (the one the workers'
producers use) really puts keyed records on a broker."""

from __future__ import annotations

import random
from typing import Any

from confluent_kafka import Producer

from processor.query.partitioner import partition_for
from tests.kafka_helpers import create_topic

PARTITIONS = 7
RECORDS = 2_000


def _keys(count: int, seed: int) -> list[bytes]:
    """Random keys of every length 0-40 (several empty ones: empty is hashed, unlike null)."""
    rng = random.Random(seed)
    keys = [b"", b"", b"\x00", b"\xff" * 4, "ключ-ü".encode()]
    while len(keys) < count:
        keys.append(rng.randbytes(rng.randint(0, 40)))
    return keys


def test_partition_for_matches_librdkafka_murmur2_random(
    kafka_bootstrap: str, unique_name: str
) -> None:
    create_topic(kafka_bootstrap, unique_name, PARTITIONS)
    keys = _keys(RECORDS, seed=20240611)
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "partitioner": "murmur2_random",
            "acks": "all",
            "linger.ms": 5,
        }
    )
    reports: list[tuple[bytes, int]] = []
    errors: list[str] = []

    def on_delivery(key: bytes) -> Any:
        def report(error: object, message: Any) -> None:
            if error is not None:
                errors.append(f"{key!r}: {error}")
            else:
                reports.append((key, message.partition()))

        return report

    for i, key in enumerate(keys):
        while True:
            try:
                producer.produce(
                    unique_name, key=key, value=b"%d" % i, on_delivery=on_delivery(key)
                )
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(30) == 0
    assert errors == []
    assert len(reports) == RECORDS

    wrong = [
        (k, p, partition_for(k, PARTITIONS))
        for k, p in reports
        if p != partition_for(k, PARTITIONS)
    ]
    assert wrong == [], (
        f"{len(wrong)} keys in another partition than partition_for says: {wrong[:5]}"
    )
    # Sanity: the keys really were spread over the topic, and empty keys were among them.
    assert {p for _, p in reports} == set(range(PARTITIONS))
    assert sum(1 for k, _ in reports if k == b"") >= 2
