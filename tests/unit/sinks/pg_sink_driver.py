"""Drive a sink writer as the runtime does (open, prepare each record, write batches, close),
against the session's real PostgreSQL; no Kafka."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from processor.sinks.base import Sink, SinkBatch, SinkRecord, SinkTask, SinkWriter


def sink_task(partition: int = 0, sink: str = "orders-sink") -> SinkTask:
    return SinkTask(sink=sink, application_id="app", topic="orders", partition=partition)


def record(value: Any, offset: int = 0, key: Any = None) -> SinkRecord:
    return SinkRecord(
        key=key, value=value, timestamp=0, headers=None, topic="orders", partition=0, offset=offset
    )


def batch(writer: SinkWriter, values: Sequence[Any], first_offset: int) -> SinkBatch:
    """The batch of `values` as records at consecutive offsets from `first_offset`, prepared;
    a value `(key, value)` gives the record a key."""
    items = []
    for offset, value in enumerate(values, start=first_offset):
        key, value = value if isinstance(value, tuple) else (None, value)
        items.append(writer.prepare(record(value, offset, key)))
    return SinkBatch(items=items, first_offset=first_offset, next_offset=first_offset + len(values))


def execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def query(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(statement).fetchall()


def resume_offset(sink: Sink, task: SinkTask | None = None) -> int | None:
    """What a new writer of `task` (default: partition 0) is told to resume from."""
    writer = sink.writer(task or sink_task())
    try:
        return writer.open()
    finally:
        writer.close()
