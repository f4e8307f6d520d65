"""Source readers alone: records/s through `poll()` for a CSV file and a PostgreSQL table.

    python -m bench.sources [--rows 100000] [--dsn postgresql://...]

The CSV part writes one file of `rows` lines (5 columns) and times reading it all. The
PostgreSQL part (only with `--dsn`: a database it may create a table in) inserts `rows` rows
and times reading them all (delay 0, the default 10,000 rows per query). Each is run 3 times;
the median and range are printed. Nothing is produced to Kafka: this is the readers' ceiling.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from processor.sources import FileSource, PostgresSource, Source

RUNS = 3
MAX_RECORDS = 1_000  # per poll, as a runtime batch


def _read_all(source: Source) -> tuple[int, float]:
    reader = source.reader()
    reader.open(None)
    start = time.perf_counter()
    count = 0
    while batch := reader.poll(MAX_RECORDS):
        count += len(batch)
    elapsed = time.perf_counter() - start
    reader.close()
    return count, elapsed


def _report(what: str, rows: int, runs: list[tuple[int, float]]) -> None:
    assert all(count == rows for count, _ in runs), runs
    rates = sorted(rows / elapsed for _, elapsed in runs)
    print(
        f"{what}: {statistics.median(rates):,.0f} records/s "
        f"(min {rates[0]:,.0f}, max {rates[-1]:,.0f}; {rows:,} records, {len(runs)} runs)"
    )


def bench_csv(rows: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "orders.csv"
        with path.open("w") as f:
            f.write("order_id,customer,amount,currency,created_at\n")
            for n in range(rows):
                f.write(f"{n},customer-{n % 977},{n % 1000}.{n % 100:02},EUR,2024-01-01T00:00:00\n")
        source = FileSource(str(path), format="csv")
        _report("FileSource csv", rows, [_read_all(source) for _ in range(RUNS)])


def bench_postgres(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_orders")
        conn.execute(
            "CREATE TABLE bench_orders (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, "
            "customer text, amount numeric(12, 2), currency text)"
        )
        conn.execute(
            "INSERT INTO bench_orders SELECT n, now() - interval '1 day' + n * interval '1 ms', "
            "'customer-' || n %% 977, (n %% 100000) / 100.0, 'EUR' FROM generate_series(1, %s) n",
            (rows,),
        )
        conn.execute("CREATE INDEX ON bench_orders (updated_at, id)")
        conn.execute("ANALYZE bench_orders")
    source = PostgresSource(
        dsn, table="bench_orders", timestamp_column="updated_at", id_column="id", delay_ms=0
    )
    _report("PostgresSource", rows, [_read_all(source) for _ in range(RUNS)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dsn", help="a PostgreSQL database to benchmark the database source on")
    args = parser.parse_args()
    bench_csv(args.rows)
    if args.dsn:
        bench_postgres(args.dsn, args.rows)


if __name__ == "__main__":
    main()
