"""A foreign-key join in two worker processes on a real broker: orders (4 partitions) joined
with the customers they name (2 partitions: no co-partitioning needed), with customers renamed
and deleted and orders moving between customers while the workers run; the result converges to
the join of the final tables."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from tests.integration.workers import start_worker
from tests.kafka_helpers import create_topic

pytestmark = pytest.mark.integration

TOPOLOGY = "tests.integration.fk_join_scenario:orders_with_customer"
CUSTOMERS = [f"c{i}" for i in range(20)]
ORDERS = [f"o{i}" for i in range(120)]


def _produce(bootstrap: str, topic: str, records: list[tuple[str, str | None]]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "partitioner": "murmur2_random"}
    )
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=None if value is None else value.encode())
    assert producer.flush(30) == 0


def _view(bootstrap: str, topic: str, want: dict[str, str], timeout: float) -> dict[str, str]:
    """The last value per key of `topic` (a tombstone removes the key), read until it equals
    `want` or `timeout` passes."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    view: dict[str, str] = {}
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and view != want:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaException(message.error())
            key, value = message.key(), message.value()
            assert key is not None
            if value is None:
                view.pop(key.decode(), None)
            else:
                view[key.decode()] = value.decode()
    finally:
        consumer.close()
    return view


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_foreign_key_join_converges_to_the_join_of_the_final_tables(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, guarantee: str
) -> None:
    orders_topic, customers_topic = f"{unique_name}-orders", f"{unique_name}-customers"
    sink = f"{unique_name}-out"
    create_topic(kafka_bootstrap, orders_topic, 4)
    create_topic(kafka_bootstrap, customers_topic, 2)
    create_topic(kafka_bootstrap, sink, 1)
    env = {
        "TEST_SOURCE_TOPIC": orders_topic,
        "TEST_SECOND_SOURCE_TOPIC": customers_topic,
        "TEST_SINK_TOPIC": sink,
    }
    customers: dict[str, str | None] = {c: f"{c}-v1" for c in CUSTOMERS}
    orders: dict[str, str | None] = {o: f"c{i % 20}:item{i}" for i, o in enumerate(ORDERS)}
    _produce(kafka_bootstrap, customers_topic, list(customers.items()))
    _produce(kafka_bootstrap, orders_topic, list(orders.items()))
    workers = [
        start_worker(
            TOPOLOGY,
            bootstrap=kafka_bootstrap,
            env=env,
            workdir=tmp_path,
            instance=instance,
            extra=["--processing-guarantee", guarantee, "--application-id", unique_name],
        )
        for instance in ("w1", "w2")
    ]
    try:
        # While they run: both sides change, in interleaved batches.
        for round_ in range(3):
            renamed = {c: f"{c}-v{round_ + 2}" for c in CUSTOMERS[round_::3]}
            moved = {o: f"c{(i * 7 + round_) % 20}:item{i}" for i, o in enumerate(ORDERS[::5])}
            _produce(kafka_bootstrap, customers_topic, list(renamed.items()))
            _produce(kafka_bootstrap, orders_topic, list(moved.items()))
            customers.update(renamed)
            orders.update(moved)
        deleted_customers = {"c3": None, "c11": None}
        deleted_orders = {o: None for o in ORDERS[1::9]}
        _produce(kafka_bootstrap, customers_topic, list(deleted_customers.items()))
        _produce(kafka_bootstrap, orders_topic, list(deleted_orders.items()))
        customers.update(deleted_customers)
        orders.update(deleted_orders)

        want = {}
        for order_id, order in orders.items():
            if order is None:
                continue
            customer = customers.get(order.split(":")[0])
            if customer is not None:
                want[order_id] = f"{order}+{customer}"
        got = _view(kafka_bootstrap, sink, want, timeout=120)
    finally:
        for worker in workers:
            worker.stop_quietly()
    assert got == want
