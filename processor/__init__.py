"""processor: a Kafka-backed, distributed, stateful stream processor for Python.

Declare a `Topology` in a module, run it with `processor run MODULE`.
"""

from processor import serdes
from processor.dsl import GroupedStream, Stream, Table, Topology
from processor.errors import ProcessorError, TransientError
from processor.state.restore_protocols import RestoreListener
from processor.topology.context import ProcessorContext
from processor.topology.handling import ErrorHandler
from processor.topology.retry import Retry

__all__ = [
    "ErrorHandler",
    "GroupedStream",
    "ProcessorContext",
    "ProcessorError",
    "RestoreListener",
    "Retry",
    "Stream",
    "Table",
    "Topology",
    "TransientError",
    "serdes",
]
