"""A sink for tests: it keeps what its writers were given, and can be made slow, failing or
exactly-once (its "destination" then holds the next offset with the rows)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from processor.sinks.base import (
    Sink,
    SinkBatch,
    SinkFencedError,
    SinkRecord,
    SinkRecordError,
    SinkTask,
    SinkWriter,
)


@dataclass
class Destination:
    """What the sink's writers wrote, shared by all of them (as a database would be)."""

    rows: list[tuple[int, Any]] = field(default_factory=list)
    next_offset: dict[int, int] = field(default_factory=dict)
    epoch: dict[int, int] = field(default_factory=dict)
    batches: list[SinkBatch] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures_left: int = 0
    write_delay_s: float = 0.0


class RecordingSink(Sink):
    def __init__(
        self,
        destination: Destination | None = None,
        *,
        exactly_once: bool = True,
        max_batch_records: int = 10_000,
        max_batch_ms: int = 500,
        max_buffer_bytes: int = 32 << 20,
    ) -> None:
        self.destination = destination or Destination()
        self.exactly_once = exactly_once
        self.max_batch_records = max_batch_records
        self.max_batch_ms = max_batch_ms
        self.max_buffer_bytes = max_buffer_bytes

    def writer(self, task: SinkTask) -> SinkWriter:
        return RecordingWriter(self, task)


class RecordingWriter(SinkWriter):
    def __init__(self, sink: RecordingSink, task: SinkTask) -> None:
        self._sink = sink
        self._task = task
        self._epoch = -1

    def open(self) -> int | None:
        d = self._sink.destination
        with d.lock:
            self._epoch = d.epoch.get(self._task.partition, 0) + 1
            d.epoch[self._task.partition] = self._epoch
            return d.next_offset.get(self._task.partition) if self._sink.exactly_once else None

    def prepare(self, record: SinkRecord) -> Any:
        if not isinstance(record.value, dict):
            raise SinkRecordError(self._sink.name, f"offset {record.offset}: not a dict")
        return (record.key, record.value)

    def write(self, batch: SinkBatch) -> int | None:
        d = self._sink.destination
        if d.write_delay_s:
            time.sleep(d.write_delay_s)
        with d.lock:
            if d.failures_left > 0:
                d.failures_left -= 1
                raise ConnectionError("destination unavailable")
            if d.epoch[self._task.partition] != self._epoch:
                raise SinkFencedError(self._sink.name, "another writer took the task over")
            d.batches.append(batch)
            d.rows.extend((self._task.partition, item) for item in batch.items)
            d.next_offset[self._task.partition] = batch.next_offset
        return batch.next_offset

    def size_of(self, item: Any) -> int:
        return 100

    def close(self) -> None:
        pass
