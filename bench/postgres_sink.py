"""How fast `PostgresSink`'s writer puts rows into PostgreSQL, next to a plain psycopg COPY loop.

`--rows` dict values of 5 columns (bigint key, text, double, integer, timestamptz) are
prepared (`writer.prepare`, the main thread's share) and written in batches of
`--batch` (`writer.write`, the writer thread's share) into an empty table, in append and
upsert modes, exactly-once and at-least-once. The ceiling is the same rows as ready-made
tuples COPYed by psycopg in one transaction per batch, nothing checked. No Kafka: the writer is
driven as the runtime drives it.

    PYTHONPATH=. python bench/postgres_sink.py [--rows 100000] [--batch 10000] [--runs 3]

It starts its own PostgreSQL (`LocalPostgres`) unless `--dsn` names a database.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from processor.sinks.base import SinkBatch, SinkRecord, SinkTask
from processor.sinks.postgres import Mode, PostgresSink
from processor.testing.postgres import LocalPostgres

TABLE = (
    "CREATE TABLE bench (id bigint PRIMARY KEY, name text NOT NULL, amount double precision, "
    "qty integer, at timestamptz)"
)
_START = datetime(2026, 1, 1, tzinfo=UTC)


def values(rows: int) -> list[dict[str, Any]]:
    return [
        {
            "id": n,
            "name": f"customer-{n % 997}",
            "amount": n * 0.25,
            "qty": n % 50,
            "at": _START + timedelta(seconds=n),
        }
        for n in range(rows)
    ]


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench, processor_sink_offsets")
        conn.execute(TABLE)


def run_sink(
    dsn: str, data: list[dict[str, Any]], batch: int, mode: Mode, exactly_once: bool
) -> tuple[float, float]:
    """Seconds spent in prepare and in write for every row of `data`."""
    reset(dsn)
    sink = PostgresSink(dsn, "bench", key_columns=["id"], mode=mode, exactly_once=exactly_once)
    writer = sink.writer(SinkTask("bench", "bench", "bench", 0))
    writer.open()
    prepare_s = write_s = 0.0
    for first in range(0, len(data), batch):
        chunk = data[first : first + batch]
        started = time.perf_counter()
        items = [
            writer.prepare(SinkRecord(None, value, 0, None, "bench", 0, first + i))
            for i, value in enumerate(chunk)
        ]
        prepared = time.perf_counter()
        writer.write(SinkBatch(items, first, first + len(chunk)))
        prepare_s += prepared - started
        write_s += time.perf_counter() - prepared
    writer.close()
    return prepare_s, write_s


def run_plain_copy(dsn: str, data: list[dict[str, Any]], batch: int) -> float:
    """Seconds for a plain psycopg COPY of ready-made tuples, one transaction per batch."""
    reset(dsn)
    rows = [(v["id"], v["name"], v["amount"], v["qty"], v["at"]) for v in data]
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        for first in range(0, len(rows), batch):
            with conn.transaction(), conn.cursor() as cursor:
                copy_sql = "COPY bench (id, name, amount, qty, at) FROM STDIN"
                with cursor.copy(copy_sql) as copy:
                    for row in rows[first : first + batch]:
                        copy.write_row(row)
        return time.perf_counter() - started


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    with LocalPostgres() as server:
        yield server.create_database("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    data = values(args.rows)
    contenders: list[tuple[Mode, bool]] = [("append", True), ("append", False), ("upsert", True)]
    plain: list[float] = []
    sink_runs: dict[tuple[Mode, bool], list[tuple[float, float]]] = {c: [] for c in contenders}
    with database(args.dsn) as dsn:
        # Interleaved, so that the server's background work (checkpoints, autovacuum after the
        # previous run's table was dropped) falls on every contender alike.
        for _ in range(args.runs):
            plain.append(run_plain_copy(dsn, data, args.batch))
            for mode, exactly_once in contenders:
                runs = sink_runs[mode, exactly_once]
                runs.append(run_sink(dsn, data, args.batch, mode, exactly_once))
    ceiling = statistics.median(plain)
    print(f"plain psycopg COPY: {args.rows / ceiling:,.0f} rows/s (median of {args.runs})")
    for (mode, exactly_once), runs in sink_runs.items():
        prepare = statistics.median(p for p, _ in runs)
        write = statistics.median(w for _, w in runs)
        print(
            f"{mode:6} exactly_once={exactly_once!s:5}: write {args.rows / write:,.0f} rows/s "
            f"({ceiling / write:.0%} of the plain COPY), prepare {args.rows / prepare:,.0f} "
            f"rows/s, both {args.rows / (prepare + write):,.0f} rows/s (medians of {args.runs})"
        )


if __name__ == "__main__":
    main()
