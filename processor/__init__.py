"""processor: a Kafka-backed, distributed, stateful stream processor for Python.

Declare a `Topology` in a module, run it with `processor run MODULE`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from processor import serdes
from processor.dsl import GlobalTable, GroupedStream, GroupedTable, Stream, Table, Topology
from processor.errors import ProcessorError, TransientError
from processor.state.restore_protocols import RestoreListener
from processor.topology.context import ProcessorContext
from processor.topology.handling import ErrorHandler
from processor.topology.retry import Retry

if TYPE_CHECKING:
    from processor.kafka.schema_registry import SchemaRegistry

__all__ = [
    "ErrorHandler",
    "GlobalTable",
    "GroupedStream",
    "GroupedTable",
    "ProcessorContext",
    "ProcessorError",
    "RestoreListener",
    "Retry",
    "SchemaRegistry",
    "Stream",
    "Table",
    "Topology",
    "TransientError",
    "serdes",
]


def __getattr__(name: str) -> Any:
    # SchemaRegistry is a client of confluent_kafka's: imported when first asked for, so that
    # `import processor` (topologies, the test driver) does not load confluent_kafka.
    if name == "SchemaRegistry":
        from processor.kafka.schema_registry import SchemaRegistry

        return SchemaRegistry
    raise AttributeError(f"module 'processor' has no attribute {name!r}")
