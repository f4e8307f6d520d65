"""PostgresSink refuses what the table cannot take, saying which table, column and type and
what to do: at open() for the configuration, at prepare() for one record (SinkRecordError, for
the processing error handler)."""

from __future__ import annotations

from typing import Any

import pytest

from processor.sinks.base import SinkError, SinkRecordError
from processor.sinks.postgres import PostgresSink, PostgresWriter
from tests.unit.sinks.pg_sink_driver import execute, record, sink_task


@pytest.fixture
def dsn(pg_dsn: str) -> str:
    execute(
        pg_dsn,
        "CREATE TABLE items (id integer NOT NULL, name varchar(5) NOT NULL, price real, "
        "note text DEFAULT 'none', made timestamptz, serial_no bigserial)",
    )
    return pg_dsn


def open_error(sink: PostgresSink) -> str:
    writer = sink.writer(sink_task())
    with pytest.raises(SinkError) as raised:
        writer.open()
    writer.close()
    return str(raised.value)


def test_a_missing_table_is_refused_at_open(dsn: str) -> None:
    message = open_error(PostgresSink(dsn, "itemz"))
    assert "table 'itemz' does not exist" in message and "create it" in message


def test_key_columns_that_are_not_columns_are_refused_at_open(dsn: str) -> None:
    message = open_error(PostgresSink(dsn, "items", key_columns=["id", "sku"], mode="upsert"))
    assert "key_columns 'sku' is not a column of public.items" in message
    message = open_error(PostgresSink(dsn, "items", include_key="kafka_key"))
    assert "include_key 'kafka_key' is not a column" in message


def test_an_upsert_without_a_unique_index_on_the_key_columns_is_refused(dsn: str) -> None:
    message = open_error(PostgresSink(dsn, "items", key_columns=["id"], mode="upsert"))
    assert "unique index on exactly (id)" in message
    assert "CREATE UNIQUE INDEX ON public.items (id)" in message
    assert "mode='upsert' needs key_columns" in open_error(
        PostgresSink(dsn, "items", mode="upsert")
    )
    execute(dsn, "CREATE UNIQUE INDEX ON items (id)")
    writer = PostgresSink(dsn, "items", key_columns=["id"], mode="upsert").writer(sink_task())
    assert writer.open() is None
    writer.close()


@pytest.fixture
def writer(dsn: str) -> Any:
    writer = PostgresSink(dsn, "items").writer(sink_task())
    writer.open()
    yield writer
    writer.close()


def record_error(writer: PostgresWriter, value: Any) -> str:
    with pytest.raises(SinkRecordError) as raised:
        writer.prepare(record(value))
    return str(raised.value)


def test_a_value_that_is_not_a_dict_is_refused(writer: PostgresWriter) -> None:
    assert "comes from a dict value, got list" in record_error(writer, [1, "a"])


def test_a_required_column_missing_from_the_value_is_refused(writer: PostgresWriter) -> None:
    message = record_error(writer, {"id": 1})
    assert "column 'name' of public.items is required" in message
    assert "the value has no key 'name'" in message
    message = record_error(writer, {"id": 1, "name": None})
    assert "column 'name' of public.items cannot be NULL" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"id": "1", "name": "a"},
            "column 'id' of public.items is integer and takes int; the record gives str",
        ),
        ({"id": True, "name": "a"}, "takes int; the record gives bool"),
        (
            {"id": 1 << 31, "name": "a"},
            "takes int from -2147483648 to 2147483647; the record "
            "gives int: 2147483648 is out of range",
        ),
        (
            {"id": 1, "name": "abcdef"},
            "column 'name' of public.items is character varying(5) "
            "and takes str of at most 5 characters; the record gives str: it has 6 characters",
        ),
        ({"id": 1, "name": 5}, "takes str of at most 5 characters; the record gives int"),
        (
            {"id": 1, "name": "a", "price": "9.99"},
            "column 'price' of public.items is real and "
            "takes int, float or Decimal; the record gives str",
        ),
        (
            {"id": 1, "name": "a", "made": "yesterday"},
            "column 'made' of public.items is timestamp with time zone and takes datetime, "
            "ISO 8601 str or int (epoch milliseconds); the record gives str: 'yesterday' is not "
            "ISO 8601",
        ),
    ],
)
def test_a_value_of_the_wrong_type_names_the_column_and_both_types(
    writer: PostgresWriter, value: dict[str, Any], expected: str
) -> None:
    assert expected in record_error(writer, value)


def test_unknown_keys_are_refused_unless_the_sink_ignores_them(dsn: str) -> None:
    value = {"id": 1, "name": "a", "colour": "red"}
    writer = PostgresSink(dsn, "items").writer(sink_task())
    writer.open()
    message = record_error(writer, value)
    writer.close()
    assert "public.items has no column for the value's key 'colour'" in message
    assert "ignore_unknown_keys=True" in message
    lenient = PostgresSink(dsn, "items", ignore_unknown_keys=True).writer(sink_task())
    lenient.open()
    lenient.prepare(record(value))
    lenient.close()


def test_invalid_configuration_is_refused_when_the_sink_is_made(dsn: str) -> None:
    with pytest.raises(SinkError, match="mode='merge': use 'append' or 'upsert'"):
        PostgresSink(dsn, "items", mode="merge")  # type: ignore[arg-type]
    with pytest.raises(SinkError, match="key_columns='id': give a list"):
        PostgresSink(dsn, "items", key_columns="id")
