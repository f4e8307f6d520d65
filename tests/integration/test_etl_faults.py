"""The ETL example (`topologies/etl_orders.py`, issue 18) on a real broker and a real PostgreSQL,
exactly-once, three workers: CSV files arrive while SIGKILLs hit the workers (the one running the
file source among them) and PostgreSQL restarts. Afterwards the file source has read every line
exactly once, the table holds exactly the reference rows (good orders, converted to euros), the
Parquet files hold each good order exactly once, and every bad row is a dead letter naming its
file and line."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from processor.testing.postgres import LocalPostgres
from tests.integration.test_state_faults import Cluster, new_cluster
from tests.integration.test_state_faults import cluster_factory as cluster_factory
from tests.kafka_helpers import create_topic, produce

TOPOLOGY = "topologies.etl_orders:topology"
FILES = 24
ROWS_PER_FILE = 60
RATES = {"EUR": 1.0, "USD": 0.5, "GBP": 2.0}
TABLE = (
    "CREATE TABLE orders (order_id text PRIMARY KEY, customer text NOT NULL, amount double "
    "precision NOT NULL, currency text NOT NULL, amount_eur double precision, ordered_at "
    "timestamptz NOT NULL)"
)


def _write_file(
    directory: Path, index: int, rng: random.Random
) -> tuple[dict[str, float], set[str], set[str]]:
    """One CSV file of orders, some of them bad; returns the good ones (order id -> amount in
    euros), the bad ones and the rows that are CSV of the file (good or not), as "file:line"."""
    lines = ["order_id,customer,amount,currency,ordered_at"]
    good: dict[str, float] = {}
    bad: set[str] = set()
    rows: set[str] = set()
    path = directory / f"orders-{index:03d}.csv"
    for row in range(ROWS_PER_FILE):
        order = f"o{index}-{row}"
        currency = rng.choice(sorted(RATES))
        amount = rng.randrange(1, 10_000) / 100
        kind = rng.random()
        if kind < 0.03:
            lines.append(f"{order},c{row},not-a-number,{currency},2026-12-03T10:00:00Z")
            bad.add(f"{path}:{len(lines)}")
            rows.add(f"{path}:{len(lines)}")
        elif kind < 0.05:
            lines.append(f"{order},c{row},{amount}")  # too few fields: not CSV of this file
            bad.add(f"{path}:{len(lines)}")
        else:
            lines.append(f"{order},c{row},{amount},{currency},2026-12-03T10:00:00Z")
            good[order] = round(amount * RATES[currency], 2)
            rows.add(f"{path}:{len(lines)}")
    staged = directory / f".orders-{index:03d}.tmp"
    staged.write_text("\n".join(lines) + "\n")
    staged.rename(path)  # the source sees whole files only
    return good, bad, rows


def _committed(bootstrap: str, topic: str, partitions: int) -> list[Message]:
    """Every committed record of `topic`, once nothing writes to it any more: read up to each
    partition's last stable offset (a read_committed consumer's end; an open transaction of a
    killed worker holds it back, and its records are not committed)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "isolation.level": "read_committed"}
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in range(partitions)
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        found: list[Message] = []
        deadline = time.monotonic() + 30
        while any(
            tp.offset < ends[tp.partition]  # no position yet: negative
            for tp in consumer.position([TopicPartition(topic, p) for p, e in ends.items() if e])
        ):
            assert time.monotonic() < deadline, f"read {topic} to its end, {ends}"
            # Short: consume() waits out its timeout unless 1000 records come.
            found.extend(m for m in consumer.consume(1000, 0.1) if m.error() is None)
        return found
    finally:
        consumer.close()


def _origin(message: Message) -> str:
    """The "file:line" a record came from, from its headers."""
    headers = dict(message.headers() or [])
    source_file = (headers.get("processor.source.file") or b"").decode()
    line = (headers.get("processor.source.line") or b"").decode()
    return f"{source_file}:{line}"


@pytest.mark.integration
def test_the_etl_pipeline_is_exact_through_kills_and_a_database_restart(
    kafka_bootstrap: str,
    unique_name: str,
    postgres: LocalPostgres,
    pg_dsn: str,
    cluster_factory: list[Cluster],
    tmp_path: Path,
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(TABLE)
    incoming, output = tmp_path / "incoming", tmp_path / "orders"
    incoming.mkdir()
    output.mkdir()
    rates_topic, dead = f"{unique_name}-rates", f"{unique_name}-dead"
    create_topic(kafka_bootstrap, rates_topic, 1)
    create_topic(kafka_bootstrap, dead, 1)
    produce(
        kafka_bootstrap,
        rates_topic,
        [(code.encode(), json.dumps({"eur": rate}).encode()) for code, rate in RATES.items()],
    )
    env = {
        "ETL_INPUT": str(incoming / "*.csv"),
        "ETL_DATABASE": pg_dsn,
        "ETL_OUTPUT": str(output),
        "ETL_RAW_TOPIC": f"{unique_name}-raw",
        "ETL_RATES_TOPIC": rates_topic,
        "ETL_ROLL_MS": "1000",
        "PROCESSOR_APPLICATION_ID": unique_name,
    }
    cluster = new_cluster(
        cluster_factory,
        kafka_bootstrap,
        env,
        tmp_path,
        TOPOLOGY,
        "--processing-guarantee",
        "exactly_once",
        "--processing-error-handler",
        "dead_letter",
        "--deserialization-error-handler",
        "dead_letter",
        "--dead-letter-topic",
        dead,
    )
    names = ["w0", "w1", "w2"]
    for name in names:
        cluster.start(name)
    for name in names:
        cluster.workers[name].wait_for_log(r"members \[w0, w1, w2\]", 90)

    started = time.monotonic()
    rng = random.Random(18)
    good: dict[str, float] = {}
    bad: set[str] = set()
    csv_rows: set[str] = set()
    kills = {FILES // 4, FILES // 2, 3 * FILES // 4}
    pending: tuple[str, float] | None = None
    for index in range(FILES):
        file_good, file_bad, file_rows = _write_file(incoming, index, rng)
        good.update(file_good)
        bad |= file_bad
        csv_rows |= file_rows
        if pending is not None and time.monotonic() >= pending[1]:
            cluster.start(pending[0])
            pending = None
        if index in kills and pending is None:
            owners = cluster.final_owners()
            # The first kill takes the worker running the file source (the last task).
            source_task = max(owners, key=lambda t: int(t.split("_")[0]))
            victim = (
                owners[source_task]
                if index == min(kills)
                else rng.choice(sorted(set(owners.values())))
            )
            cluster.workers[victim].kill()
            pending = (victim, time.monotonic() + 1.0)
        if index == 3 * FILES // 5:
            postgres.restart()
        time.sleep(0.25)
    if pending is not None:
        cluster.start(pending[0])

    def table() -> dict[str, float]:
        with psycopg.connect(pg_dsn) as conn:
            return dict(conn.execute("SELECT order_id, amount_eur FROM orders").fetchall())

    def parquet_ids() -> list[str]:
        ids: list[str] = []
        for path in sorted(output.rglob("*.parquet")):
            if not path.name.startswith("."):
                ids.extend(pq.read_table(path, columns=["order_id"]).column("order_id").to_pylist())
        return ids

    print(f"produced at {time.monotonic() - started:.1f}s")
    deadline = time.monotonic() + 150
    while len(table()) < len(good) or len(parquet_ids()) < len(good):
        assert time.monotonic() < deadline, f"{len(table())} rows, {len(parquet_ids())} in files"
        time.sleep(1.0)
    print(f"complete at {time.monotonic() - started:.1f}s")
    time.sleep(3.0)
    cluster.stop_all()
    assert table() == good
    assert sorted(parquet_ids()) == sorted(good)
    assert {_origin(m) for m in _committed(kafka_bootstrap, dead, 1)} == bad
    lines = [_origin(m) for m in _committed(kafka_bootstrap, f"{unique_name}-raw", 6)]
    # The source read every line once: each row of CSV, good order or not (rows with too few
    # fields are dead letters of the source itself).
    assert len(lines) == len(set(lines)), "a line was read twice"
    assert set(lines) == csv_rows
