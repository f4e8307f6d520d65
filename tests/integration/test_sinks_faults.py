"""Sinks under faults on a real broker and a real PostgreSQL (issue 18): exactly-once, three
workers, SIGKILLs mid-stream and a PostgreSQL restart. The PostgreSQL table (append mode: a
record written twice would be two rows) and the Parquet files end with every input record
exactly once."""

from __future__ import annotations

import random
import time
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from processor.testing.postgres import LocalPostgres
from tests.integration.test_state_faults import Cluster, new_cluster
from tests.integration.test_state_faults import cluster_factory as cluster_factory
from tests.integration.workers import PARTITIONS
from tests.kafka_helpers import create_topic, produce

TOPOLOGY = "tests.integration.sink_topology:etl_sinks"
RECORDS = 3_000
STEPS = 30


def _table_ids(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM events")]


def _file_ids(directory: Path) -> list[int]:
    ids: list[int] = []
    for path in sorted(directory.rglob("*.parquet")):
        if not path.name.startswith("."):
            ids.extend(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return ids


@pytest.mark.integration
def test_every_record_lands_exactly_once_through_kills_and_a_database_restart(
    kafka_bootstrap: str,
    unique_name: str,
    postgres: LocalPostgres,
    pg_dsn: str,
    cluster_factory: list[Cluster],
    tmp_path: Path,
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE events (id bigint NOT NULL, name text, amount double precision)")
    source = f"{unique_name}-events"
    create_topic(kafka_bootstrap, source, PARTITIONS)
    files = tmp_path / "files"
    files.mkdir()
    env = {
        "TEST_SOURCE_TOPIC": source,
        "TEST_PG_DSN": pg_dsn,
        "TEST_FILES_DIR": str(files),
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
    )
    names = ["w0", "w1", "w2"]
    for name in names:
        cluster.start(name)
    for name in names:
        cluster.workers[name].wait_for_log(r"members \[w0, w1, w2\]", 90)

    rng = random.Random(18)
    kills = {STEPS // 4, STEPS // 2, 3 * STEPS // 4}
    restart_db_at = 3 * STEPS // 5
    per_step = RECORDS // STEPS
    pending: tuple[str, float] | None = None
    for step in range(STEPS):
        batch = range(step * per_step, (step + 1) * per_step)
        produce(
            kafka_bootstrap,
            source,
            [(f"k{i}".encode(), f'{{"id": {i}, "name": "n{i}"}}'.encode()) for i in batch],
        )
        if pending is not None and time.monotonic() >= pending[1]:
            cluster.start(pending[0])
            pending = None
        if step in kills and pending is None:
            victim = rng.choice(sorted(set(cluster.final_owners().values())))
            cluster.workers[victim].kill()
            pending = (victim, time.monotonic() + 1.0)
        if step == restart_db_at:
            postgres.restart()  # writes fail meanwhile; the sinks retry the same batches
        time.sleep(0.15)
    if pending is not None:
        cluster.start(pending[0])

    expected = list(range(RECORDS))
    deadline = time.monotonic() + 120
    while len(_table_ids(pg_dsn)) < RECORDS or len(_file_ids(files)) < RECORDS:
        assert time.monotonic() < deadline, (
            f"after 120 s: {len(_table_ids(pg_dsn))} rows, {len(_file_ids(files))} in files"
        )
        time.sleep(1.0)
    time.sleep(3.0)  # anything written twice would show up by now
    cluster.stop_all()
    assert sorted(_table_ids(pg_dsn)) == expected
    assert sorted(_file_ids(files)) == expected
