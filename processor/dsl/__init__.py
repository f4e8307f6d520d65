"""What users write: a `Topology`, the `Stream`s and `Table`s in it.

Modules, each importing only those before it: `builder` (the `GraphBuilder` that adds to the
logical graph), `stream` (`Stream`, `GroupedStream`, `Table`), `tables` (`GroupedTable`, the
table operators), `topology` (`Topology`).
"""

from processor.dsl.global_table import GlobalTable
from processor.dsl.stream import GroupedStream, Stream, Table
from processor.dsl.tables import GroupedTable
from processor.dsl.topology import Topology

__all__ = ["GlobalTable", "GroupedStream", "GroupedTable", "Stream", "Table", "Topology"]
