"""Driving a `FileSinkWriter` as the runtime does, and reading its files back."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from processor.sinks.base import SinkBatch, SinkRecord, SinkTask
from processor.sinks.files import FileSink, FileSinkWriter

TOPIC = "orders"
DAY_MS = 86_400_000


@dataclass
class FakeClock:
    now_ms: int = 1_000_000

    def __call__(self) -> int:
        return self.now_ms


def make_sink(directory: Path, fmt: str = "jsonl", **settings: Any) -> FileSink:
    settings.setdefault("clock", FakeClock())
    return FileSink(directory, format=fmt, **settings)


def task(partition: int = 0, sink: str = "out") -> SinkTask:
    return SinkTask(sink=sink, application_id="app", topic=TOPIC, partition=partition)


def record(offset: int, value: Any, timestamp: int = 0, partition: int = 0) -> SinkRecord:
    return SinkRecord(
        key=None,
        value=value,
        timestamp=timestamp,
        headers=None,
        topic=TOPIC,
        partition=partition,
        offset=offset,
    )


def batch(
    writer: FileSinkWriter, records: list[SinkRecord], first: int, next_offset: int
) -> SinkBatch:
    """The batch the runtime hands over for `[first, next_offset)` holding `records`."""
    return SinkBatch([writer.prepare(r) for r in records], first, next_offset)


def write_values(
    writer: FileSinkWriter, first: int, values: list[Any], timestamp: int = 0
) -> int | None:
    records = [record(first + i, v, timestamp) for i, v in enumerate(values)]
    return writer.write(batch(writer, records, first, first + len(values)))


def published(directory: Path) -> list[Path]:
    """Every published file under `directory` (subdirectories too), in name order."""
    return sorted(
        (
            Path(root) / name
            for root, _, names in os.walk(directory)
            for name in names
            if not name.startswith(".")
        ),
        key=lambda path: path.name,
    )


def offsets_of(path: Path) -> tuple[int, int]:
    first, next_offset = path.name.rsplit(".", 1)[0].split("-")[-2:]
    return int(first), int(next_offset)


def read_back(path: Path) -> list[Any]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return pq.read_table(path).to_pylist()


def temporary(directory: Path) -> list[Path]:
    return sorted(
        Path(root) / name
        for root, _, names in os.walk(directory)
        for name in names
        if name.startswith(".")
    )
