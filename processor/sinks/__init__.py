"""Destinations outside Kafka: `stream.sink(...)` (see `processor.sinks.base`).

`PostgresSink` is imported on first use, so that importing the sink contract (as the DSL and
the runtime do) does not load psycopg; `FileSink` loads pyarrow only for Parquet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from processor.sinks.base import (
    Sink,
    SinkBatch,
    SinkError,
    SinkFencedError,
    SinkRecord,
    SinkRecordError,
    SinkTask,
    SinkWriter,
)
from processor.sinks.files import FileSink

if TYPE_CHECKING:
    from processor.sinks.postgres import PostgresSink

__all__ = [
    "FileSink",
    "PostgresSink",
    "Sink",
    "SinkBatch",
    "SinkError",
    "SinkFencedError",
    "SinkRecord",
    "SinkRecordError",
    "SinkTask",
    "SinkWriter",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresSink":
        from processor.sinks.postgres import PostgresSink

        return PostgresSink
    raise AttributeError(f"module 'processor.sinks' has no attribute {name!r}")
