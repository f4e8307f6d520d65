"""`GroupConsumer.add()` against a real broker: partitions join one by one, as tasks finish
restoring at different times, and none is read again from its committed offset."""

from __future__ import annotations

import time
from collections import Counter

from processor.kafka.consumer import GroupConsumer, Message
from tests.kafka_helpers import create_topic, produce

PARTITIONS = 3
PER_PARTITION = 20


def _drain(consumer: GroupConsumer, seconds: float = 1.5) -> list[Message]:
    """Everything the consumer hands out within `seconds` of nothing new arriving."""
    read: list[Message] = []
    idle = 0.0
    while idle < seconds:
        batch = [m for m in consumer.consume(500, 0.5) if m.error() is None]
        read += batch
        idle = 0.0 if batch else idle + 0.5
    return read


def test_partitions_added_one_at_a_time_are_each_read_once_without_a_commit(
    kafka_bootstrap: str, unique_name: str
) -> None:
    # At-least-once commits on a timer, so records are processed well before their offsets are
    # committed; here nothing is ever committed. A partition already read to its end must go on
    # from there when later partitions join, not go back to its committed offset (the start).
    topic = f"{unique_name}-in"
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    for partition in range(PARTITIONS):
        produce(
            kafka_bootstrap,
            topic,
            [(b"k%d" % i, b"p%d-%d" % (partition, i)) for i in range(PER_PARTITION)],
            partition=partition,
        )
    consumer = GroupConsumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_name,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        consumer.assign([])
        read: list[Message] = []
        for partition in range(PARTITIONS):
            consumer.add([(topic, partition)])
            read += _drain(consumer)
    finally:
        consumer.close()

    times_read = Counter((m.partition(), m.offset()) for m in read)
    assert {k: n for k, n in times_read.items() if n > 1} == {}
    assert sorted(times_read) == [
        (partition, offset) for partition in range(PARTITIONS) for offset in range(PER_PARTITION)
    ]


def test_fetched_lags_are_the_records_behind_each_partitions_end(
    kafka_bootstrap: str, unique_name: str
) -> None:
    # What /metrics reports as consumer lag: from the consumer's positions and the end offsets
    # its fetches saw, without asking the broker.
    topic = f"{unique_name}-in"
    create_topic(kafka_bootstrap, topic, 2)
    for partition in range(2):
        produce(kafka_bootstrap, topic, [(b"k", b"v")] * 50, partition=partition)
    consumer = GroupConsumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_name,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    partitions = [(topic, 0), (topic, 1)]
    try:
        consumer.assign([])
        consumer.add([(topic, 0)], start_at={(topic, 0): 40})
        read = _drain(consumer)
        assert {m.offset() for m in read} == set(range(40, 50))
        # Partition 1 is not assigned: its lag is unknown, not 0.
        assert consumer.fetched_lags(partitions) == {(topic, 0): 0}
        consumer.add([(topic, 1)], start_at={(topic, 1): 0})
        for message in _drain(consumer):
            assert message.partition() == 1
        assert consumer.fetched_lags(partitions) == {(topic, 0): 0, (topic, 1): 0}
        produce(kafka_bootstrap, topic, [(b"k", b"v")] * 7, partition=0)
        # Fetched in the background, not consumed: the end moves, the position does not.
        deadline = time.monotonic() + 10
        while consumer.fetched_lags(partitions).get((topic, 0)) != 7:
            assert time.monotonic() < deadline, consumer.fetched_lags(partitions)
            time.sleep(0.1)
    finally:
        consumer.close()
