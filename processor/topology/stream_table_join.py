"""The stream-table join: each stream record looks up the table's current value for its key, in
the task's own copy of the table, when the record is processed (Kafka Streams' KStream-KTable
join). Table updates emit nothing: they only change what later stream records find.

A record is joined or dropped by these rules (Kafka Streams' `KStreamKTableJoinProcessor`,
including KIP-962's relaxed null keys):

| stream record            | table has the key  | inner                 | left                    |
| ------------------------ | ------------------ | --------------------- | ----------------------- |
| value None               | (any)              | dropped               | dropped                 |
| key None, value set      | (nothing to ask)   | dropped               | `joiner(value, None)`   |
| key set, value set       | yes: `v`           | `joiner(value, v)`    | `joiner(value, v)`      |
| key set, value set       | no                 | dropped               | `joiner(value, None)`   |

A dropped record counts as filtered. The result keeps the stream record's key, timestamp and
headers.

The table is read through `lookup(key) -> value or None`, the table's value getter
(`processor.topology.tables.TablePlan.lookup`): its store, or for a table without one (an
unnamed filter or map_values) its parent's value passed through the operator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processor.topology.graph import OperatorKind, OperatorNode
from processor.topology.operator import Operator
from processor.topology.record import RecordContext
from processor.topology.retry import Retry

Lookup = Callable[[Any], Any]

JOIN_KINDS = (OperatorKind.STREAM_TABLE_JOIN, OperatorKind.STREAM_TABLE_LEFT_JOIN)


class StreamTableJoinProcessor(Operator):
    """Joins each stream record with `lookup(key)` by `joiner(stream_value, table_value)`; see
    the module docstring for what is dropped. The joiner is retried per `retry`."""

    __slots__ = ("joiner", "left", "lookup")

    def __init__(
        self,
        name: str,
        lookup: Lookup,
        joiner: Callable[[Any, Any], Any],
        context: RecordContext,
        retry: Retry | None,
        *,
        left: bool,
    ) -> None:
        super().__init__(name, context, retry)
        self.lookup = lookup
        self.joiner = joiner
        self.left = left

    def process(self, key: Any, value: Any) -> bool:
        if value is None:
            return False
        if key is None:
            if not self.left:
                return False
            other = None
        else:
            try:
                other = self.lookup(key)
            except Exception as e:
                # A key the table's serde cannot write, a value it cannot read (a
                # `StoredValueError`): the processing error handler's.
                self.failed(e)
            if other is None and not self.left:
                return False
        try:
            joined = self.joiner(value, other)
        except Exception as e:
            joined = self.recover(e, self.joiner, value, other)
        return self.forward(key, joined)


def make_stream_table_join(
    node: OperatorNode, context: RecordContext, lookup: Lookup, retry: Retry | None
) -> StreamTableJoinProcessor:
    """The processor of join `node` (one of `JOIN_KINDS`), reading its table (`node.reads`)
    through `lookup` (`processor.topology.tables.TablePlan.lookup`)."""
    assert node.function is not None, f"join {node.name} has no joiner"
    return StreamTableJoinProcessor(
        node.name,
        lookup,
        node.function,
        context,
        retry,
        left=node.kind is OperatorKind.STREAM_TABLE_LEFT_JOIN,
    )


def describe_join(node: OperatorNode) -> str:
    """How `processor describe` shows join `node`: its kind and the table (store) it reads."""
    how = "left" if node.kind is OperatorKind.STREAM_TABLE_LEFT_JOIN else "inner"
    return f"Processor: {node.name} (stream-table join, how: {how}, table: {node.stores[0]})"
