"""A topology whose sink is a slow file writer, for the sink tests on a real broker: records
(JSON values) pass a map and go to `SlowLinesSink`, which appends one line per record to a file
per partition under $TEST_SINK_DIR, taking $TEST_SINK_DELAY_S per batch, and keeps its progress
(the next offset) in a file of its own written after the lines (so its guarantee is at least
once: a crash between the two repeats a batch)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from processor import Topology, serdes
from processor.sinks.base import Sink, SinkBatch, SinkRecord, SinkTask, SinkWriter


class SlowLinesSink(Sink):
    exactly_once = True
    max_batch_records = 200
    max_batch_ms = 100
    max_buffer_bytes = 1 << 20

    def writer(self, task: SinkTask) -> SinkWriter:
        return _SlowLinesWriter(Path(os.environ["TEST_SINK_DIR"]), task)

    def describe(self) -> str:
        return "SlowLinesSink"


class _SlowLinesWriter(SinkWriter):
    def __init__(self, directory: Path, task: SinkTask) -> None:
        self._lines = directory / f"p{task.partition}.jsonl"
        self._progress = directory / f"p{task.partition}.next"
        self._delay_s = float(os.environ.get("TEST_SINK_DELAY_S", "0"))

    def open(self) -> int | None:
        return int(self._progress.read_text()) if self._progress.exists() else None

    def prepare(self, record: SinkRecord) -> Any:
        return json.dumps([record.offset, record.key, record.value])

    def size_of(self, item: Any) -> int:
        return len(item) + 50

    def write(self, batch: SinkBatch) -> int | None:
        time.sleep(self._delay_s)
        with self._lines.open("a") as lines:
            lines.writelines(f"{item}\n" for item in batch.items)
        staged = self._progress.with_suffix(".tmp")
        staged.write_text(str(batch.next_offset))
        staged.replace(self._progress)
        return batch.next_offset

    def close(self) -> None:
        pass


slow_sink = Topology("slow-sink")
slow_sink.stream(
    os.environ.get("TEST_SOURCE_TOPIC", "in"),
    key_serde=serdes.StringSerde(),
    value_serde=serdes.JsonSerde(),
).map_values(lambda value: {**value, "seen": True}).sink(SlowLinesSink(), name="lines")


def _etl_sinks() -> Topology:
    """Events (JSON with an `id`) -> a map -> an exactly-once PostgreSQL table (append: a record
    written twice would be two rows) and exactly-once Parquet files rolled every second."""
    from processor.sinks import FileSink, PostgresSink

    topology = Topology("etl-sinks")
    events = topology.stream(
        os.environ.get("TEST_SOURCE_TOPIC", "in"),
        key_serde=serdes.StringSerde(),
        value_serde=serdes.JsonSerde(),
    ).map_values(lambda value: {**value, "amount": value["id"] / 100})
    if "TEST_PG_DSN" in os.environ:
        events.sink(PostgresSink(os.environ["TEST_PG_DSN"], "events", mode="append"), name="pg")
    if "TEST_FILES_DIR" in os.environ:
        events.sink(
            FileSink(os.environ["TEST_FILES_DIR"], format="parquet", roll_ms=1_000), name="files"
        )
    return topology


etl_sinks = _etl_sinks()
