"""Joins, as `Stream.join` and `Table.join` dispatch them: one function per kind, each in the
module that builds it.

- stream-table (`processor.dsl.join_stream_table`): a lookup in the table's task-local state
  when the stream record is processed;
- stream-global table (`processor.dsl.global_table`): a lookup by any key in a table every
  worker holds whole;
- stream-stream (`processor.dsl.join_stream_stream`): records of both sides buffered for a
  `JoinWindows` (`processor.windows`);
- table-table, by key or by foreign key (`processor.dsl.tables`, `processor.dsl.join_foreign`).

Conventions shared by every kind: `joiner(left_value, right_value)` (the right value is None
where a left or outer join has no match; the left one None where an outer join has no left);
every extractor takes `(key, value)`; `name=` fixes the names of the join's stores and internal
topics, so they stay the same when the topology changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from processor.errors import TopologyError

How = Literal["inner", "left", "outer"]
Joiner = Callable[[Any, Any], Any]
HOWS: tuple[str, ...] = ("inner", "left", "outer")


def check_how(kind: str, how: str, allowed: tuple[str, ...] = HOWS) -> None:
    """Refuse a `how` this kind of join does not have, naming the ones it has."""
    if how not in allowed:
        raise TopologyError(
            f"{kind} join: how={how!r} is not one of {', '.join(repr(h) for h in allowed)}"
        )


def join_stream(
    stream: Any,
    other: Any,
    joiner: Joiner,
    *,
    how: str,
    key: Callable[[Any, Any], Any] | None,
    window: Any,
    name: str | None,
) -> Any:
    """`Stream.join`: which kind of join `other` (and `window`, `key`) asks for."""
    from processor.dsl.global_table import GlobalTable, stream_global_join
    from processor.dsl.join_stream_stream import stream_stream_join
    from processor.dsl.join_stream_table import stream_table_join
    from processor.dsl.stream import Stream, Table

    if isinstance(other, GlobalTable):
        if window is not None:
            raise TopologyError("a join with a global table takes no window=")
        check_how("stream-global table", how, ("inner", "left"))
        return stream_global_join(stream, other, joiner, how=how, key=key, name=name)
    if key is not None:
        raise TopologyError(
            "join(key=...) is for global tables only: a table's records are looked up by the "
            "stream's key; re-key the stream first (map, select the key) to join on another"
        )
    if isinstance(other, Table):
        if window is not None:
            raise TopologyError("a stream-table join takes no window=: the table's latest value")
        check_how("stream-table", how, ("inner", "left"))
        from processor.dsl.tables import refuse_windowed

        refuse_windowed(other, "join")
        return stream_table_join(stream, other, joiner, how=how, name=name)
    if isinstance(other, Stream):
        if window is None:
            raise TopologyError(
                "a stream-stream join needs window=JoinWindows(before_ms=..., after_ms=..., "
                "grace_ms=...) (from processor.windows): which records of the two match"
            )
        check_how("stream-stream", how)
        return stream_stream_join(stream, other, joiner, how=how, window=window, name=name)
    raise TopologyError(
        f"join(): cannot join a stream with {type(other).__name__}; join a Table, a "
        "GlobalTable or another Stream of the same Topology"
    )


def join_table(
    table: Any,
    other: Any,
    joiner: Joiner,
    *,
    how: str,
    foreign_key: Callable[[Any, Any], Any] | None,
    name: str | None,
) -> Any:
    """`Table.join`: by key, or by the foreign key `foreign_key(key, value)` of the left side."""
    from processor.dsl.join_foreign import foreign_key_join
    from processor.dsl.stream import Table
    from processor.dsl.tables import table_table_join

    if not isinstance(other, Table):
        raise TopologyError(
            f"Table.join(): cannot join a table with {type(other).__name__}; join another Table "
            "of the same Topology (a stream joins a table with Stream.join)"
        )
    from processor.dsl.tables import refuse_windowed

    refuse_windowed(table, "join")
    refuse_windowed(other, "join")
    if foreign_key is not None:
        check_how("foreign-key", how, ("inner", "left"))
        return foreign_key_join(table, other, joiner, how=how, foreign_key=foreign_key, name=name)
    check_how("table-table", how)
    return table_table_join(table, other, joiner, how=how, name=name)
