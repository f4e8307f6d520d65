"""What exactly-once sinks keep of their progress outside Kafka, cleared by `processor reset`:
the PostgreSQL sink's rows in its offsets table, the file sink's files (their names are its
progress). Only the application's and the sink's own go."""

from __future__ import annotations

from pathlib import Path

from processor.sinks.base import SinkTask
from processor.sinks.file_names import TaskFiles
from processor.sinks.postgres import PostgresSink
from tests.unit.sinks.file_sink_helpers import make_sink, published, write_values
from tests.unit.sinks.pg_sink_driver import batch, execute, query, resume_offset


def test_clearing_the_postgres_sinks_progress_makes_it_write_from_the_start(pg_dsn: str) -> None:
    execute(pg_dsn, "CREATE TABLE events (n bigint)")
    sink = PostgresSink(pg_dsn, "events")
    sink.name = "pg"
    tasks = [
        SinkTask("pg", "app", "app-pg-sink", 0),
        SinkTask("pg", "app", "app-pg-sink", 1),
        SinkTask("pg", "app-v2", "app-v2-pg-sink", 0),  # another application: kept
    ]
    for task in tasks:
        writer = sink.writer(task)
        writer.open()
        writer.write(batch(writer, [{"n": 1}, {"n": 2}], first_offset=0))
        writer.close()
    progress = sink.progress("app", "app-pg-sink")
    assert progress is not None
    assert "processor_sink_offsets" in progress.describe()
    assert "2 rows" in progress.clear()
    assert [resume_offset(sink, t) for t in tasks] == [None, None, 2]
    assert query(pg_dsn, "SELECT count(*) FROM events") == [(6,)]  # the rows are user data


def test_an_at_least_once_postgres_sink_keeps_no_progress() -> None:
    assert PostgresSink("dbname=x", "t", exactly_once=False).progress("app", "t") is None


def test_a_postgres_sink_that_never_wrote_has_nothing_to_clear(pg_dsn: str) -> None:
    sink = PostgresSink(pg_dsn, "events")
    sink.name = "pg"
    progress = sink.progress("app", "app-pg-sink")
    assert progress is not None
    assert "0 rows" in progress.clear()


def test_clearing_the_file_sinks_progress_moves_its_files_aside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sink = make_sink(out, roll_bytes=1)
    sink.name = "files"
    ours = [SinkTask("files", "app", "app-files-sink", p) for p in (0, 1)]
    theirs = SinkTask("files", "app-v2", "app-v2-files-sink", 0)
    for task in [*ours, theirs]:
        writer = sink.writer(task)
        writer.open()
        write_values(writer, 0, [{"n": 1}, {"n": 2}])
        writer.close()
    before = published(out)
    progress = sink.progress("app", "app-files-sink")
    line = progress.clear()
    assert line.startswith("moved 2 files sink 'files' wrote from app-files-sink into ")
    kept = [p for p in published(out) if ".reset-" not in str(p)]
    assert [p.name for p in kept] == [p.name for p in before if "app-v2" in p.name]
    for task in ours:
        names = TaskFiles(out, "files", task.topic, task.partition, "jsonl")
        assert names.max_next_offset() is None  # it writes from offset 0 again
    moved = sorted(p.name for p in out.glob(".reset-*/*"))
    assert moved == sorted(p.name for p in before if "app-v2" not in p.name)
