"""The operator at the end of a sink's sub-topology: each record becomes an item of the sink's next
batch (`processor.sinks.base`); the runtime's `SinkChannel` hands batches to the sink's writer.

The operator only prepares (`SinkWriter.prepare`: checking the record on the worker's thread, so
a record the destination cannot take goes to the processing error handler with its topic,
partition and offset, like any operator's error) and notes how far the task has read: records
a handler skipped still move the sink's progress past them.
"""

from __future__ import annotations

from typing import Any, Protocol

from processor.sinks.base import SinkRecord
from processor.topology.operator import Processor
from processor.topology.record import OperatorError, RecordContext

__all__ = ["ExternalSinkProcessor", "SinkInput", "sink_input_key"]


def sink_input_key(sink: str) -> str:
    """Where a task's `SinkInput` for `sink` is found among what its processors are built over
    (the task's stores and such)."""
    return f"sink:{sink}"


class SinkInput(Protocol):
    """What the operator needs of its task's channel (`processor.runtime.sink_channel`)."""

    def prepare(self, record: SinkRecord) -> Any: ...
    def add(self, item: Any, offset: int) -> None: ...
    def read_to(self, next_offset: int) -> None: ...


class ExternalSinkProcessor(Processor):
    __slots__ = ("_context", "_input")

    def __init__(self, name: str, context: RecordContext, sink_input: SinkInput) -> None:
        super().__init__(name)
        self._context = context
        self._input = sink_input

    def process(self, key: Any, value: Any) -> bool:
        context = self._context
        offset = context.offset
        sink_input = self._input
        sink_input.read_to(offset + 1)  # also when the record is skipped below
        record = SinkRecord(
            key, value, context.timestamp, context.headers, context.topic, context.partition, offset
        )
        try:
            item = sink_input.prepare(record)
        except Exception as e:
            raise OperatorError(self.name, e) from e
        sink_input.add(item, offset)
        return True
