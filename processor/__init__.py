"""processor: a Kafka-backed, distributed, stateful stream processor for Python.

Declare a `Topology` in a module, run it with `processor run MODULE`.
"""

from processor import serdes
from processor.dsl import Stream, Topology
from processor.errors import ProcessorError

__all__ = ["ProcessorError", "Stream", "Topology", "serdes"]
