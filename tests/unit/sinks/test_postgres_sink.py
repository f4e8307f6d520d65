"""PostgresSink against a real PostgreSQL: appends and upserts, exactly once across writers
(resume position, fencing, retried batches), the Kafka key as a column, at-least-once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from processor.sinks.base import SinkBatch, SinkFencedError
from processor.sinks.postgres import PostgresSink
from tests.unit.sinks.pg_sink_driver import batch, execute, query, resume_offset, sink_task

ORDERS = (
    "CREATE TABLE orders (order_id bigint PRIMARY KEY, customer text NOT NULL, "
    "amount numeric(12, 2), status text NOT NULL DEFAULT 'new')"
)


@pytest.fixture
def dsn(pg_dsn: str) -> str:
    execute(pg_dsn, ORDERS)
    return pg_dsn


def order(order_id: int, amount: float = 1.0, customer: str = "c", **extra: object) -> dict:
    return {"order_id": order_id, "customer": customer, "amount": amount, **extra}


def test_append_writes_every_record_and_returns_the_batch_end(dsn: str) -> None:
    writer = PostgresSink(dsn, "orders").writer(sink_task())
    assert writer.open() is None
    first = batch(writer, [order(1, 10.5), order(2, status="paid")], first_offset=0)
    second = batch(writer, [order(3, customer="d")], first_offset=2)
    assert writer.write(first) == 2
    assert writer.write(second) == 3
    writer.close()
    assert query(dsn, "SELECT order_id, customer, amount, status FROM orders ORDER BY 1") == [
        (1, "c", Decimal("10.50"), "new"),
        (2, "c", Decimal("1.00"), "paid"),
        (3, "d", Decimal("1.00"), "new"),
    ]


def test_upsert_keeps_the_last_record_of_each_key_within_and_across_batches(dsn: str) -> None:
    sink = PostgresSink(dsn, "orders", key_columns=["order_id"], mode="upsert")
    writer = sink.writer(sink_task())
    writer.open()
    writer.write(batch(writer, [order(1, 1), order(2, 2), order(1, 3, status="paid")], 0))
    assert query(dsn, "SELECT order_id, amount, status FROM orders ORDER BY 1") == [
        (1, Decimal("3.00"), "paid"),
        (2, Decimal("2.00"), "new"),
    ]
    # A record is a whole row: order 1 leaves status out, so it gets its default again.
    writer.write(batch(writer, [order(2, 4, customer="x"), order(1, 5), order(3, 6)], 3))
    writer.close()
    assert query(dsn, "SELECT order_id, customer, amount, status FROM orders ORDER BY 1") == [
        (1, "c", Decimal("5.00"), "new"),
        (2, "x", Decimal("4.00"), "new"),
        (3, "c", Decimal("6.00"), "new"),
    ]


def test_a_new_writer_resumes_where_the_last_one_recorded(dsn: str) -> None:
    sink = PostgresSink(dsn, "orders")
    writer = sink.writer(sink_task())
    assert writer.open() is None  # nothing recorded yet: start from the group's offset
    writer.write(batch(writer, [order(1), order(2)], first_offset=40))
    writer.write(batch(writer, [order(3)], first_offset=42))
    writer.close()
    assert resume_offset(sink) == 43
    assert resume_offset(sink, sink_task(partition=1)) is None  # another task: its own row


def test_a_writer_whose_task_was_taken_over_is_fenced_and_writes_nothing(dsn: str) -> None:
    sink = PostgresSink(dsn, "orders")
    zombie, successor = sink.writer(sink_task()), sink.writer(sink_task())
    zombie.open()
    zombie.write(batch(zombie, [order(1)], 0))
    assert successor.open() == 1
    with pytest.raises(SinkFencedError, match="orders-0 was taken over"):
        zombie.write(batch(zombie, [order(2)], 1))
    assert successor.write(batch(successor, [order(3)], 1)) == 2
    # Still fenced after reconnecting: a reconnect does not take the task over again.
    zombie.close()
    with pytest.raises(SinkFencedError):
        zombie.write(batch(zombie, [order(2)], 1))
    zombie.close()
    successor.close()
    assert query(dsn, "SELECT order_id FROM orders ORDER BY 1") == [(1,), (3,)]
    assert resume_offset(sink) == 2


def test_a_batch_already_applied_is_not_applied_again(dsn: str) -> None:
    writer = PostgresSink(dsn, "orders", mode="append").writer(sink_task())
    writer.open()
    first = batch(writer, [order(1), order(2)], 0)
    assert writer.write(first) == 2
    # The runtime retries a batch whose commit outcome it does not know: the commit happened.
    assert writer.write(first) == 2
    # A batch of records the skip handler dropped entirely still moves the offset on.
    assert writer.write(SinkBatch(items=[], first_offset=2, next_offset=5)) == 5
    writer.close()
    assert query(dsn, "SELECT count(*) FROM orders") == [(2,)]


def test_include_key_writes_the_kafka_key_into_its_column(dsn: str) -> None:
    sink = PostgresSink(dsn, "orders", include_key="order_id", key_columns=["order_id"])
    writer = sink.writer(sink_task())
    writer.open()
    writer.write(batch(writer, [(7, {"customer": "k", "amount": 2})], 0))
    writer.close()
    assert query(dsn, "SELECT order_id, customer FROM orders") == [(7, "k")]


def test_at_least_once_records_no_offsets(dsn: str) -> None:
    sink = PostgresSink(dsn, "orders", exactly_once=False)
    writer = sink.writer(sink_task())
    assert writer.open() is None
    first = batch(writer, [order(1)], 0)
    assert writer.write(first) == 1
    writer.close()
    assert resume_offset(sink) is None
    assert query(dsn, "SELECT to_regclass('processor_sink_offsets') IS NULL") == [(True,)]


def test_values_are_converted_to_their_column_types(pg_dsn: str) -> None:
    execute(
        pg_dsn,
        "CREATE TABLE events (id integer, at timestamptz, local_at timestamp, day date, "
        "doc jsonb, ok boolean, ratio double precision, tag varchar(3))",
    )
    writer = PostgresSink(pg_dsn, "events", exactly_once=False).writer(sink_task())
    writer.open()
    noon = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    values = [
        {"id": 1, "at": "2024-05-01T14:00:00+02:00", "local_at": noon, "day": "2024-05-01"},
        {"id": 2, "at": 1714564800000, "local_at": 1714564800000, "day": 1714564800000},
        {"id": 3, "doc": {"a": [1, None]}, "ok": True, "ratio": 3, "tag": "abc"},
    ]
    writer.write(batch(writer, values, 0))
    writer.close()
    rows = query(pg_dsn, "SELECT id, at, local_at, day, doc, ok, ratio, tag FROM events ORDER BY 1")
    assert rows == [
        (1, noon, noon.replace(tzinfo=None), date(2024, 5, 1), None, None, None, None),
        (2, noon, noon.replace(tzinfo=None), date(2024, 5, 1), None, None, None, None),
        (3, None, None, None, {"a": [1, None]}, True, 3.0, "abc"),
    ]


def test_describe_names_the_table_and_database_without_the_password() -> None:
    sink = PostgresSink(
        "postgresql://etl:s3cret@db.example:5433/shop",
        "orders",
        key_columns=["order_id"],
        mode="upsert",
    )
    described = sink.describe()
    assert "s3cret" not in described
    assert "table=orders" in described and "mode=upsert" in described
    assert "exactly_once=True" in described and "db.example:5433/shop" in described
