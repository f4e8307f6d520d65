"""A full producer queue slows the worker down; it never drops a record."""

from __future__ import annotations

from processor.kafka.producer import OutputProducer
from tests.kafka_helpers import consume, create_topic


def test_a_full_queue_waits_for_the_broker_and_loses_nothing(
    kafka_bootstrap: str, unique_name: str
) -> None:
    create_topic(kafka_bootstrap, unique_name, 3)
    producer = OutputProducer(
        {
            "bootstrap.servers": kafka_bootstrap,
            # A queue far smaller than the burst, so produce() must wait for the broker.
            "queue.buffering.max.messages": 50,
            "linger.ms": 20,
        }
    )
    count = 5000
    for i in range(count):
        producer.produce(unique_name, str(i).encode(), b"x" * 1000, 0, None)
    assert producer.flush(30) == 0
    assert producer.queue_full_waits > 0, "the queue never filled; nothing was proven"
    assert producer.failures == []
    values = {r.key for r in consume(kafka_bootstrap, unique_name, count)}
    assert values == {str(i).encode() for i in range(count)}
