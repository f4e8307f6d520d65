"""Stream-stream joins, as `Stream.join(other_stream, joiner, window=JoinWindows(...))` declares
them: two STREAM_JOIN nodes (one per side, `<name>-left` and `<name>-right`) and a MERGE node
`<name>` carrying both sides' results, with the join's stores, named after `name`:

- `<name>-left-buffer`, `<name>-right-buffer`: each side's records, kept `before_ms + after_ms
  + grace_ms` of stream time (changelogs `compact,delete`);
- `<name>-outer` (left and outer joins): the records that matched nothing yet.

The two sides share the stores, so they are one sub-topology, whose sources must be
co-partitioned. A side whose keys may have changed since its source goes through a repartition
topic first, `<application_id>-<name>-left-repartition` (and `-right-`). What is joined, when
and how: `processor.topology.stream_stream_join`.
"""

from __future__ import annotations

from typing import Any

from processor.errors import TopologyError
from processor.serdes import BytesSerde
from processor.topology.graph import OperatorKind, OperatorNode, StoreKind
from processor.topology.stream_stream_join import LEFT, RIGHT, JoinSideSpec, JoinSpec
from processor.windows.spec import JoinWindows


def stream_stream_join(
    left: Any, right: Any, joiner: Any, *, how: str, window: Any, name: str | None
) -> Any:
    """The stream of `joiner(left_value, right_value)` for the records of `left` and `right`
    that match within `window` (see the module docstring)."""
    from processor.dsl.stream import Stream

    if not isinstance(window, JoinWindows):
        raise TopologyError(
            f"a stream-stream join takes window=JoinWindows(before_ms=..., after_ms=..., "
            f"grace_ms=...) (from processor.windows), not {type(window).__name__}"
        )
    if not callable(joiner):
        raise TopologyError("join(): the joiner must be a function (left_value, right_value)")
    builder = left._builder
    if right._builder is not builder:
        raise TopologyError("join(): both streams must belong to the same Topology")
    base = builder.name("join", name)
    left_node = _co_partitioned(left, f"{base}-left")
    right_node = left_node if right is left else _co_partitioned(right, f"{base}-right")
    retention = window.retention_ms
    left_store, right_store = f"{base}-left-buffer", f"{base}-right-buffer"
    unmatched_store = f"{base}-outer" if how != "inner" else None
    builder.add_store(
        left_store,
        left.key_serde,
        left.value_serde,
        kind=StoreKind.JOIN_BUFFER,
        retention_ms=retention,
    )
    builder.add_store(
        right_store,
        left.key_serde,
        right.value_serde,
        kind=StoreKind.JOIN_BUFFER,
        retention_ms=retention,
    )
    if unmatched_store is not None:
        builder.add_store(
            unmatched_store,
            left.key_serde,
            BytesSerde(),
            kind=StoreKind.JOIN_BUFFER,
            retention_ms=retention,
        )
    spec = JoinSpec(
        windows=window,
        how=how,
        joiner=joiner,
        key_serde=left.key_serde,
        left_serde=left.value_serde,
        right_serde=right.value_serde,
        left_store=left_store,
        right_store=right_store,
        unmatched_store=unmatched_store,
    )
    used = (left_store, right_store, *([unmatched_store] if unmatched_store else []))
    sides = []
    for side, parent, label in ((LEFT, left_node, "left"), (RIGHT, right_node, "right")):
        node = builder.name(OperatorKind.STREAM_JOIN.value, f"{base}-{label}")
        builder.graph.add(
            OperatorNode(
                node,
                OperatorKind.STREAM_JOIN,
                (parent,),
                function=joiner,
                stores=used,
                join=JoinSideSpec(spec, side),
            )
        )
        sides.append(node)
    merged = builder.add_operator(OperatorKind.MERGE, tuple(sides), name=base)
    return Stream(builder, merged, left.key_serde, left.value_serde)


def _co_partitioned(stream: Any, base: str) -> str:
    """The node to join `stream` from: itself, or, when its keys may have changed since its
    source, the repartition topic `<base>-repartition` it goes through."""
    if not stream.key_changed:
        return str(stream.node_name)
    return str(
        stream._builder.add_repartition(
            stream.node_name, base, stream.key_serde, stream.value_serde
        )
    )
