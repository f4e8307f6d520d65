"""What users write: a `Topology`, the `Stream`s and `Table`s in it."""

from processor.dsl.stream import Stream
from processor.dsl.table import GroupedStream, Table
from processor.dsl.topology import Topology

__all__ = ["GroupedStream", "Stream", "Table", "Topology"]
