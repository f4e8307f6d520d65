"""Windowed aggregations: `GroupedStream.windowed_by(windows, emit=...)` and what it gives.

```python
counts = clicks.group_by_key().windowed_by(TumblingWindows(size_ms=60_000), emit="final").count()
counts.to_stream().map(lambda w, n: (f"{w.key}@{w.start_ms}", n)).to("per-minute")
```

A windowed aggregation's table has `Windowed(key, start_ms, end_ms)` keys; its `to_stream()`
carries a `WindowedSerde` of the group's key serde, which `to()` uses unless given another.
`emit="update"` (the default, as in Kafka Streams) forwards every change of a window's aggregate;
`emit="final"` forwards each window once, when it closes (stream time past its end plus grace).
Closed windows stay in the store, queryable, for `retention_ms` (default: the window's size plus
grace; sessions: gap plus grace; at least that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from processor.dsl.builder import GraphBuilder, WindowedAggregateSpec
from processor.dsl.stream import Table
from processor.errors import TopologyError
from processor.serdes import IntSerde, Serde
from processor.windows.serde import WindowedSerde
from processor.windows.spec import (
    HoppingWindows,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    Windowed,
    Windows,
)

K = TypeVar("K")
V = TypeVar("V")
A = TypeVar("A")

Emit = Literal["update", "final"]


def _check_emit(emit: str) -> bool:
    if emit not in ("update", "final"):
        raise TopologyError(f'windowed_by(): emit must be "update" or "final", got {emit!r}')
    return emit == "final"


def _retention(windows: Windows, retention_ms: int | None) -> int:
    least = windows.default_retention_ms
    if retention_ms is None:
        return least
    if not isinstance(retention_ms, int) or retention_ms < least:
        raise TopologyError(
            f"retention_ms={retention_ms!r} is shorter than the windows need: {windows!r} keeps "
            f"a window at least {least} ms (its size or gap plus grace); give at least that"
        )
    return retention_ms


class WindowedStream(Generic[K, V]):
    """A grouped stream cut into windows; aggregate it with `count`, `reduce` or `aggregate`."""

    def __init__(
        self,
        builder: GraphBuilder,
        node: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        windows: Windows,
        emit: Emit,
    ) -> None:
        if not isinstance(
            windows, TumblingWindows | HoppingWindows | SlidingWindows | SessionWindows
        ):
            raise TopologyError(
                f"windowed_by() takes TumblingWindows, HoppingWindows, SlidingWindows or "
                f"SessionWindows, got {windows!r}"
            )
        self._builder = builder
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.windows = windows
        self._emit_final = _check_emit(emit)

    def count(
        self, *, name: str | None = None, retention_ms: int | None = None
    ) -> Table[Windowed[K], int]:
        """The number of records per key and window (records with a null value are not
        counted)."""
        return self._aggregate(
            "count",
            name,
            retention_ms,
            lambda: 0,
            lambda _k, _v, n: n + 1,
            IntSerde(),
            lambda _k, a, b: a + b,
        )

    def reduce(
        self,
        reducer: Callable[[V, V], V],
        *,
        name: str | None = None,
        retention_ms: int | None = None,
    ) -> Table[Windowed[K], V]:
        """Per key and window, the first value, then `reducer(aggregate, value)` for each later
        one (sessions merge with `reducer` too)."""
        return self._aggregate(
            "reduce",
            name,
            retention_ms,
            None,
            lambda _k, value, agg: reducer(agg, value),
            self.value_serde,
            lambda _k, a, b: reducer(a, b),
        )

    def aggregate(
        self,
        initializer: Callable[[], A],
        aggregator: Callable[[K, V, A], A],
        *,
        value_serde: Serde[A],
        merger: Callable[[K, A, A], A] | None = None,
        name: str | None = None,
        retention_ms: int | None = None,
    ) -> Table[Windowed[K], A]:
        """Per key and window, `aggregator(key, value, aggregate)` starting from
        `initializer()`. Sessions also need `merger(key, aggregate1, aggregate2)`: how the
        aggregates of two sessions a record bridges become one."""
        if isinstance(self.windows, SessionWindows) and merger is None:
            raise TopologyError(
                "aggregate() over SessionWindows needs merger=(key, agg1, agg2) -> agg: a record "
                "that bridges two sessions merges their aggregates"
            )
        return self._aggregate(
            "aggregate", name, retention_ms, initializer, aggregator, value_serde, merger
        )

    def _aggregate(
        self,
        label: str,
        name: str | None,
        retention_ms: int | None,
        initializer: Callable[[], Any] | None,
        aggregator: Callable[[Any, Any, Any], Any],
        value_serde: Serde[Any],
        merger: Callable[[Any, Any, Any], Any] | None,
    ) -> Table[Any, Any]:
        spec = WindowedAggregateSpec(
            label=f"windowed-{label}",
            name=name,
            windows=self.windows,
            emit_final=self._emit_final,
            retention_ms=_retention(self.windows, retention_ms),
            initializer=initializer,
            aggregator=aggregator,
            merger=merger,
        )
        node, store = self._builder.add_windowed_aggregate(
            self._node,
            spec,
            key_serde=self.key_serde,
            value_serde=value_serde,
            input_serde=self.value_serde,
        )
        table: Table[Any, Any] = Table(
            self._builder, node, WindowedSerde(self.key_serde), value_serde, store
        )
        table.windowed = True
        return table
