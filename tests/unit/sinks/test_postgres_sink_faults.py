"""PostgresSink when the database goes away: a write fails with a transient error
(psycopg.OperationalError, which the runtime retries with the same batch), and the retry after
the server is back writes the batch once: nothing lost, nothing doubled."""

from __future__ import annotations

import psycopg
import pytest

from processor.sinks.postgres import PostgresSink
from processor.testing.postgres import LocalPostgres
from tests.unit.sinks.pg_sink_driver import batch, execute, query, resume_offset, sink_task


def events(first: int, count: int) -> list[dict[str, int]]:
    return [{"id": n, "value": n * 2} for n in range(first, first + count)]


@pytest.mark.parametrize("fault", ["restart", "kill"])
def test_a_write_across_a_server_restart_fails_then_its_retry_applies_it_once(
    postgres: LocalPostgres, pg_dsn: str, fault: str
) -> None:
    execute(pg_dsn, "CREATE TABLE events (id integer, value integer)")
    sink = PostgresSink(pg_dsn, "events", mode="append")
    writer = sink.writer(sink_task())
    writer.open()
    assert writer.write(batch(writer, events(0, 100), 0)) == 100
    if fault == "restart":
        postgres.restart()
    else:
        postgres.kill()
    second = batch(writer, events(100, 100), 100)
    with pytest.raises(psycopg.OperationalError):
        writer.write(second)
    assert writer.write(second) == 200
    writer.close()
    assert query(pg_dsn, "SELECT count(*), count(DISTINCT id), sum(value) FROM events") == [
        (200, 200, sum(range(200)) * 2)
    ]
    assert resume_offset(sink) == 200


def test_writes_fail_while_the_server_is_down_and_succeed_when_it_is_back(
    postgres: LocalPostgres, pg_dsn: str
) -> None:
    execute(pg_dsn, "CREATE TABLE events (id integer PRIMARY KEY, value integer)")
    writer = PostgresSink(pg_dsn, "events", key_columns=["id"], mode="upsert").writer(sink_task())
    writer.open()
    writer.write(batch(writer, events(0, 10), 0))
    postgres.stop()
    try:
        pending = batch(writer, events(5, 10), 10)
        for _ in range(3):  # the runtime's retries while the server is down
            with pytest.raises(psycopg.OperationalError):
                writer.write(pending)
    finally:
        postgres.start()
    assert writer.write(pending) == 20
    writer.close()
    assert query(pg_dsn, "SELECT count(*), min(id), max(id) FROM events") == [(15, 0, 14)]
