"""Small synchronous helpers for tests that talk to a real broker: topics in, records in and out.

Each call makes its own short-lived client, so tests stay independent of one another.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

Data = bytes | str | None


@dataclass(frozen=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    *,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create topic `name` and wait until every partition has a leader."""
    topic = NewTopic(
        name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
    )
    admin = _admin(bootstrap)
    admin.create_topics([topic], operation_timeout=timeout)[name].result(timeout)
    deadline = time.monotonic() + timeout
    while True:
        found = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
        if (
            found is not None
            and found.error is None
            and len(found.partitions) == partitions
            and all(p.leader >= 0 for p in found.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name!r} has no leader for every partition after {timeout}s")
        time.sleep(0.05)


def delete_topic(bootstrap: str, name: str, *, timeout: float = 30.0) -> None:
    _admin(bootstrap).delete_topics([name], operation_timeout=timeout)[name].result(timeout)


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[Data, Data]],
    *,
    partition: int | None = None,
    timeout: float = 30.0,
    partitioner: str = "consistent_random",
) -> None:
    """Produce (key, value) pairs with acks=all and wait until every one is acknowledged.
    `partitioner`: librdkafka's (its default, CRC32; `murmur2_random` is Kafka Java's)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "partitioner": partitioner}
    )
    errors: list[str] = []

    def on_delivery(error: object, message: object) -> None:
        if error is not None:
            errors.append(str(error))

    target = {} if partition is None else {"partition": partition}
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery, **target)
                break
            except BufferError:  # the local queue is full: let the broker catch up
                producer.poll(0.05)
    left = producer.flush(timeout)
    if left or errors:
        raise KafkaException(f"producing to {topic!r}: {left} unacknowledged, errors {errors}")


def consume(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    timeout: float = 30.0,
    read_committed: bool = False,
) -> list[ConsumedRecord]:
    """Read `count` records of `topic` from the start of every partition, without a group."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "kafka-helpers-unused",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        }
    )
    try:
        metadata = consumer.list_topics(topic=topic, timeout=timeout).topics[topic]
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(metadata.partitions)]
        )
        records: list[ConsumedRecord] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error, partition, offset = message.error(), message.partition(), message.offset()
            if error is not None:
                raise KafkaException(error)
            assert partition is not None and offset is not None
            records.append(
                ConsumedRecord(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=message.key(),
                    value=message.value(),
                    headers=tuple(message.headers() or ()),
                )
            )
        if len(records) < count:
            raise TimeoutError(f"read {len(records)} of {count} records of {topic!r} in {timeout}s")
        return records
    finally:
        consumer.close()
