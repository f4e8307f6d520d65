"""Sinks in the `TopologyTestDriver`: each sink's writer is opened at once and gets, after every
input record (the driver commits after each), the batch of what the record sent it, on the
caller's thread. So a test of a topology with `stream.sink(...)` sees exactly what a worker's
writer would receive, in order, without threads or timing."""

from __future__ import annotations

from typing import Any

from processor.sinks.base import Sink, SinkBatch, SinkRecord, SinkTask, SinkWriter
from processor.topology.external_sink import sink_input_key
from processor.topology.subtopology import SubTopology

__all__ = ["DriverSinkInput", "flush_sinks", "sink_inputs"]


def sink_inputs(sub: SubTopology, opened: list[DriverSinkInput]) -> dict[str, DriverSinkInput]:
    """What the processors of a sink's sub-topology are built over: its sink's input (also
    added to `opened`)."""
    node = sub.external_sink
    assert node is not None
    sink_input = DriverSinkInput(node.external, sub.source_topics[0])
    opened.append(sink_input)
    return {sink_input_key(node.name): sink_input}


def flush_sinks(sinks: list[DriverSinkInput]) -> None:
    for sink in sinks:
        sink.flush()


class DriverSinkInput:
    def __init__(self, sink: Sink, topic: str) -> None:
        self.sink = sink
        self._writer: SinkWriter = sink.writer(SinkTask(sink.name, "driver", topic, 0))
        self.resume_at = self._writer.open()
        self.durable = self.resume_at
        self._items: list[Any] = []
        self._first = -1
        self._read_to = -1
        self._written_to = -1

    def prepare(self, record: SinkRecord) -> Any:
        return self._writer.prepare(record)

    def read_to(self, next_offset: int) -> None:
        if self._first < 0:
            self._first = next_offset - 1
        self._read_to = next_offset

    def add(self, item: Any, offset: int) -> None:
        self._items.append(item)

    def flush(self) -> None:
        """Write what was read since the last flush, as one batch."""
        if self._read_to <= self._written_to:
            return
        first = self._written_to if self._written_to >= 0 else self._first
        batch = SinkBatch(self._items, first, self._read_to)
        self._items = []
        self._written_to = self._read_to
        durable = self._writer.write(batch)
        if durable is not None:
            self.durable = durable

    def close(self) -> None:
        self._writer.close()
