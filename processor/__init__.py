"""processor: a Kafka-backed, distributed, stateful stream processor for Python.

Declare a `Topology` in a module, run it with `processor run MODULE`.
"""

from processor import serdes
from processor.dsl import GroupedStream, Stream, Table, Topology
from processor.errors import ProcessorError
from processor.state.restore import RestoreListener
from processor.topology.context import ProcessorContext

__all__ = [
    "GroupedStream",
    "ProcessorContext",
    "ProcessorError",
    "RestoreListener",
    "Stream",
    "Table",
    "Topology",
    "serdes",
]
