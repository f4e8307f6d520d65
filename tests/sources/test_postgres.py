"""PostgresSource against a real server: order, resuming, the delay for late commits, values,
errors, and reconnecting after the server restarts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from processor.sources import PostgresSource, SourceError, SourceItem, SourceUnavailableError
from processor.sources.base import Position, SourceReader
from processor.testing.postgres import LocalPostgres as PostgresServer

TABLE = """
    CREATE TABLE orders (
        id bigserial PRIMARY KEY,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        amount numeric,
        note text
    )
"""


def connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def with_orders(dsn: str, *rows: tuple[int, str]) -> None:
    """Orders (id, updated_at as an SQL expression)."""
    with connect(dsn) as conn:
        conn.execute(TABLE)
        for id_, ts in rows:
            conn.execute(
                f"INSERT INTO orders (id, updated_at, amount) VALUES (%s, {ts}, %s)",
                (id_, id_ * 10),
            )


Opener = Callable[..., SourceReader]


@pytest.fixture
def opened() -> Iterator[Opener]:
    """Opens a reader of a source at a position (through JSON, as the positions topic keeps
    it); closes them all after the test."""
    readers: list[SourceReader] = []

    def open_reader(source: PostgresSource, position: Position | None = None) -> SourceReader:
        reader = source.reader()
        reader.open(json.loads(json.dumps(position)) if position else None)
        readers.append(reader)
        return reader

    yield open_reader
    for reader in readers:
        reader.close()


def drain(reader: SourceReader, max_records: int = 1000) -> list[SourceItem]:
    items: list[SourceItem] = []
    while batch := reader.poll(max_records):
        assert len(batch) <= max_records
        items.extend(batch)
    return items


def ids(items: list[SourceItem]) -> list[int]:
    return [item.value["id"] for item in items]


def orders(dsn: str, **options: Any) -> PostgresSource:
    options.setdefault("delay_ms", 0)
    return PostgresSource(
        dsn, table="orders", timestamp_column="updated_at", id_column="id", **options
    )


def test_rows_are_read_in_timestamp_then_id_order_across_batches(
    opened: Opener, postgres_dsn: str
) -> None:
    with_orders(
        postgres_dsn,
        (1, "'2024-01-01 10:00:03+00'"),
        (2, "'2024-01-01 10:00:01+00'"),
        (3, "'2024-01-01 10:00:02+00'"),
        (4, "'2024-01-01 10:00:01+00'"),
        (5, "'2024-01-01 10:00:01.5+00'"),
    )
    reader = opened(orders(postgres_dsn, batch_rows=2))
    assert ids(drain(reader, max_records=1)) == [2, 4, 5, 3, 1]
    with connect(postgres_dsn) as conn:
        conn.execute("INSERT INTO orders (id, updated_at) VALUES (6, '2024-01-02 00:00:00+00')")
    assert ids(drain(reader)) == [6]


def test_resuming_at_any_rows_position_reads_exactly_the_rows_after_it(
    opened: Opener, postgres_dsn: str
) -> None:
    same = "'2024-01-01 10:00:00+00'"
    with_orders(
        postgres_dsn, *[(n, same if n % 3 else f"now() - interval '{n} s'") for n in range(1, 13)]
    )
    source = orders(postgres_dsn, batch_rows=4)
    items = drain(opened(source), max_records=3)
    assert len(items) == 12
    for k, item in enumerate(items):
        rest = drain(opened(source, item.position))
        assert [(i.value, i.headers) for i in rest] == [
            (i.value, i.headers) for i in items[k + 1 :]
        ]


def test_rows_are_read_only_once_delay_ms_old(opened: Opener, postgres_dsn: str) -> None:
    with_orders(postgres_dsn, (1, "now() - interval '2 hours'"), (2, "now()"))
    reader = opened(orders(postgres_dsn, delay_ms=3_600_000))
    assert ids(drain(reader)) == [1]


def _late_commit(opened: Opener, dsn: str, source: PostgresSource) -> tuple[list[int], list[int]]:
    """A transaction writes a row, another writes a later one and commits first; then the first
    commits. The ids read before and after the first commit (once the delay has passed)."""
    with connect(dsn) as conn:
        conn.execute(TABLE)
    reader = opened(source)
    with psycopg.connect(dsn) as slow, connect(dsn) as fast:
        slow.execute("INSERT INTO orders (id) VALUES (1)")  # updated_at: clock_timestamp()
        fast.execute("INSERT INTO orders (id) VALUES (2)")
        before = ids(drain(reader))
        slow.commit()
    time.sleep(source.delay_ms / 1000 + 0.2)  # now every row is older than the delay
    return before, ids(drain(reader))


def test_a_transaction_committing_late_within_the_delay_is_read_in_order(
    opened: Opener,
    postgres_dsn: str,
) -> None:
    before, after = _late_commit(opened, postgres_dsn, orders(postgres_dsn, delay_ms=1_500))
    assert (before, after) == ([], [1, 2])


def test_a_transaction_committing_after_later_rows_were_read_is_missed_the_delays_limit(
    opened: Opener,
    postgres_dsn: str,
) -> None:
    before, after = _late_commit(opened, postgres_dsn, orders(postgres_dsn, delay_ms=0))
    assert (before, after) == ([2], [])


def test_values_are_json_friendly_and_headers_name_the_table_and_cursor(
    opened: Opener, postgres_dsn: str
) -> None:
    with connect(postgres_dsn) as conn:
        conn.execute(
            "CREATE TABLE t (k uuid, at timestamp, day date, price numeric, raw bytea, "
            "tags text[], doc jsonb, n int, ok boolean)"
        )
        conn.execute(
            "INSERT INTO t VALUES ('12345678-1234-5678-1234-567812345678', "
            "'2024-03-01 12:30:00.25', '2024-03-01', 10.10, '\\x0102', '{a,b}', "
            """'{"x": [1, 2]}', 7, true)"""
        )
    source = PostgresSource(postgres_dsn, table="t", timestamp_column="at", id_column="k")
    [item] = drain(opened(source))
    assert item.value == {
        "k": "12345678-1234-5678-1234-567812345678",
        "at": "2024-03-01T12:30:00.250000",
        "day": "2024-03-01",
        "price": "10.10",
        "raw": "AQI=",
        "tags": ["a", "b"],
        "doc": {"x": [1, 2]},
        "n": 7,
        "ok": True,
    }
    assert json.loads(json.dumps(item.value)) == item.value
    cursor = ["2024-03-01T12:30:00.250000", "12345678-1234-5678-1234-567812345678"]
    assert dict(item.headers) == {
        "processor.source.table": b"t",
        "processor.source.cursor": json.dumps(cursor).encode(),
    }
    assert item.position == {"timestamp": cursor[0], "id": cursor[1]}
    assert drain(opened(source, item.position)) == []


def test_a_query_is_read_as_a_subquery_percent_signs_included(
    opened: Opener, postgres_dsn: str
) -> None:
    with_orders(postgres_dsn, (1, "now() - interval '1 day'"), (2, "now() - interval '1 day'"))
    with connect(postgres_dsn) as conn:
        conn.execute("UPDATE orders SET note = CASE id WHEN 1 THEN '50% off' ELSE 'full' END")
    query = "SELECT id, updated_at, note FROM orders WHERE note LIKE '%\\%%' ESCAPE '\\';"
    source = PostgresSource(
        postgres_dsn, query=query, timestamp_column="updated_at", id_column="id"
    )
    [item] = drain(opened(source))
    assert item.value["note"] == "50% off"
    assert dict(item.headers)["processor.source.query"] == query.encode()


def test_a_missing_column_or_table_is_an_error_naming_it(opened: Opener, postgres_dsn: str) -> None:
    with_orders(postgres_dsn)
    source = PostgresSource(
        postgres_dsn, table="orders", timestamp_column="changed", id_column="id"
    )
    with pytest.raises(SourceError, match=r"table 'orders'.*column \"changed\" does not exist"):
        opened(source).poll(10)
    source = PostgresSource(
        postgres_dsn, table="sales.orders", timestamp_column="t", id_column="id"
    )
    with pytest.raises(SourceError, match=r'relation "sales\.orders" does not exist'):
        opened(source).poll(10)


def test_settings_that_cannot_work_are_refused_without_showing_the_dsn() -> None:
    with pytest.raises(SourceError, match="either table= or query="):
        PostgresSource("postgresql://h/db", timestamp_column="t", id_column="id")
    with pytest.raises(SourceError, match="not a valid PostgreSQL connection string") as e:
        PostgresSource("host=h password=secret =x", table="t", timestamp_column="t", id_column="i")
    assert "secret" not in str(e.value)


def test_after_the_server_restarts_one_poll_fails_and_the_next_goes_on(
    opened: Opener, postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    with_orders(postgres_dsn, *[(n, f"now() - interval '{100 - n} s'") for n in range(1, 5)])
    reader = opened(orders(postgres_dsn, batch_rows=2))
    assert ids(drain(reader)) == [1, 2, 3, 4]
    postgres_server.stop()
    try:
        with pytest.raises(SourceUnavailableError, match="nothing was read"):
            reader.poll(10)  # the connection is gone
        with pytest.raises(SourceUnavailableError):
            reader.poll(10)  # and the server is still down
    finally:
        postgres_server.start()
    with connect(postgres_dsn) as conn:
        conn.execute("INSERT INTO orders (id, updated_at) VALUES (5, now() - interval '1 s')")
    assert ids(drain(reader)) == [5]
