"""Fusing a task's chains of stateless operators into one function each, when its processors
are built (`processors.instantiate`).

A record's cost in Python is mostly calls: through `SourceProcessor.process_bytes`, each
serde, each operator's `process`, the sink and the emitter. A chain of filters, maps,
map_values and peeks, with the deserialization before it (at a source) and the sink after it,
is written out as the body of one function, built from a template per operator kind, so that
the only calls left per record are the user functions, the serdes that are not inlined and the
emitter. What the chain does is exactly what the operators' `process` methods do, step by
step, and the operator objects stay the ones that act when a call fails: a call that raises
goes to its own operator's `recover` (which retries only that call, per that operator's retry
policy, and names that operator in the error the handlers and dead letters see), and a sink's
serde errors are the sink's.

The serdes of this package whose whole work is one expression (`StringSerde` both ways,
`BytesSerde` reading, `IntSerde` writing) are inlined as that expression: the same bytes, the
same errors. Any other serde is called.

Where a chain starts (`fuse`): at a source (its `receive`: bytes in), or after any processor
with one child (its `forward`). A chain ends before a processor that is not one of these
operators (called as its `process`), at a sink (inlined), or at an operator with several
children (its own `forward` sends the record on to each).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any

from processor.errors import RecordRejectedError, TransientError
from processor.serdes import BytesSerde, IntSerde, Serde, StringSerde
from processor.topology.operator import Processor
from processor.topology.record import SinkRejectedError
from processor.topology.stateless import (
    FilterProcessor,
    MapProcessor,
    MapValuesProcessor,
    PassThroughProcessor,
    PeekProcessor,
)

__all__ = ["chain_of", "fuse", "fused_source"]

_PACK = struct.Struct(">q").pack  # IntSerde's layout

# Per operator kind, the lines of its step (indented for the function's body); {i} is the
# operator's index in the chain: f{i} its function, o{i} the operator.
_STEPS: dict[type[Processor], str] = {
    FilterProcessor: """
    try:
        verdict = f{i}(key, value)
    except Exception as e:
        verdict = o{i}.recover(e, f{i}, key, value)
    if verdict is not {keep}:
        if verdict is {drop}:
            return False
        try:
            keep = bool(verdict)
        except Exception as e:
            o{i}.failed(e)
        if keep is not {keep}:
            return False""",
    MapProcessor: """
    try:
        pair = f{i}(key, value)
    except Exception as e:
        pair = o{i}.recover(e, f{i}, key, value)
    try:
        key, value = pair
    except Exception as e:
        o{i}.failed(e)""",
    MapValuesProcessor: """
    try:
        value = f{i}(value)
    except Exception as e:
        value = o{i}.recover(e, f{i}, value)""",
    PeekProcessor: """
    try:
        f{i}(key, value)
    except Exception as e:
        o{i}.recover(e, f{i}, key, value)""",
}

_SINK_KEYED = """
    if key is None:
        raise sink.null_key()"""

_SINK = """
    try:
        key_bytes = {key_bytes}
    except Exception as e:
        raise sink.key_error(key, e) from e
    try:
        value_bytes = {value_bytes}
    except Exception as e:
        raise sink.value_error(value, e) from e
    try:
        {emit}
    except RecordRejectedError as e:
        raise SinkRejectedError(sink.name, e) from e
    return True"""

_READ = """
    try:
        {part} = {expression}
    except TransientError as e:
        {part} = source._deserialize_again("{part}", {part}_serde, {part}, e)
    except Exception as e:
        raise source._undecodable("{part}", {part}_serde, e) from e"""

_compiled: dict[str, CodeType] = {}


def _next(processor: Processor) -> Processor | None:
    """The processor a record goes to after `processor`, past pass-through nodes; None when it
    goes to none or to several."""
    child: Processor | None = None
    while True:
        if len(processor.children) != 1:
            return child
        child = processor = processor.children[0]
        if type(child) is not PassThroughProcessor:
            return child


def chain_of(first: Processor) -> tuple[list[Processor], Processor | None]:
    """The operators that fuse from `first` on, and the processor after them (None: the last
    operator sends the record to no child or to several)."""
    chain: list[Processor] = []
    node: Processor | None = first
    while node is not None and type(node) in _STEPS:
        chain.append(node)
        node = _next(node)
    return chain, node


def fuse(processors: Iterable[Processor]) -> None:
    """Let each of `processors` with one child (past pass-through nodes) send its records
    through that child's fused chain, or call the child directly when nothing fuses."""
    for processor in processors:
        first = _next(processor)
        if first is None:
            continue
        chain, end = chain_of(first)
        if not chain and not _is_sink(end):
            passing = type(first) is PassThroughProcessor
            processor.forward = first.forward if passing else first.process
            continue
        processor.forward = _build(chain, end, head="", names={})


def fused_source(source: Any) -> Callable[[bytes | None, bytes | None], bool]:
    """`source.process_bytes` (a `SourceProcessor`), with its chain fused after it."""
    names: dict[str, Any] = {
        "source": source,
        "key_serde": source.key_serde,
        "value_serde": source.value_serde,
        "TransientError": TransientError,
    }
    head = _READ.format(part="key", expression=_reading("key", source.key_serde, names))
    head += _READ.format(part="value", expression=_reading("value", source.value_serde, names))
    if source.timed:
        head += "\n    source._observe_time(key, value)"
    first = _next(source)
    if first is None:  # to several children, or none
        names["end"] = source.forward
        return _build([], None, head=head, names=names)
    chain, end = chain_of(first)
    return _build(chain, end, head=head, names=names)


def _build(
    chain: list[Processor],
    end: Processor | None,
    *,
    head: str,
    names: dict[str, Any],
) -> Callable[[Any, Any], bool]:
    """The function running `head` (a source's reading), then `chain`, then `end` (see
    `chain_of`; with no chain and no end, `names["end"]` is what the record goes to)."""
    body = head
    for i, operator in enumerate(chain):
        names[f"f{i}"] = operator.function  # type: ignore[attr-defined]
        names[f"o{i}"] = operator
        keep = getattr(operator, "keep_when", True)
        body += _STEPS[type(operator)].format(i=i, keep=keep, drop=not keep)
    if end is None:
        if chain:  # the last operator's own forward: to several children, or none
            names["end"] = chain[-1].forward
        body += "\n    return end(key, value)"
    elif _is_sink(end):
        body += _sink(end, names)
    else:
        names["end"] = end.process
        body += "\n    return end(key, value)"
    source = f"def run(key, value):{body}\n"
    code = _compiled.get(source)
    if code is None:
        code = _compiled[source] = compile(source, "<fused chain>", "exec")
    exec(code, names)  # defines `run` over `names`
    run: Callable[[Any, Any], bool] = names["run"]
    return run


def _is_sink(processor: Processor | None) -> bool:
    from processor.topology.sink import SinkProcessor

    return type(processor) is SinkProcessor


def _sink(sink: Any, names: dict[str, Any]) -> str:
    names.update(
        sink=sink,
        context=sink.context,
        RecordRejectedError=RecordRejectedError,
        SinkRejectedError=SinkRejectedError,
    )
    # An emitter may let the sink produce directly (`processor.runtime.output.Output.direct`).
    direct = getattr(sink.emitter, "direct", None)
    send = None if direct is None else direct(sink.topic)
    if send is None:
        names["emit"] = sink.emitter.emit
        emit = (
            "emit(sink.topic, key_bytes, value_bytes, context.timestamp, context.headers, context)"
        )
    else:
        names["send"] = send
        emit = "send(sink.topic, key_bytes, value_bytes, context.timestamp, context.headers)"
    keyed = _SINK_KEYED if sink.null_key_error is not None else ""
    return keyed + _SINK.format(
        emit=emit,
        key_bytes=_writing("key", sink.key_serde, names),
        value_bytes=_writing("value", sink.value_serde, names),
    )


def _reading(part: str, serde: Serde[Any], names: dict[str, Any]) -> str:
    """The expression that deserializes `part` (a variable holding bytes or None)."""
    if type(serde) is StringSerde:
        return f'None if {part} is None else {part}.decode("utf-8")'
    if type(serde) is BytesSerde:
        return part
    names[f"read_{part}"] = serde.deserialize
    return f"read_{part}({part})"


def _writing(part: str, serde: Serde[Any], names: dict[str, Any]) -> str:
    """The expression that serializes `part` (a variable holding the value)."""
    if type(serde) is StringSerde:
        return f'None if {part} is None else {part}.encode("utf-8")'
    if type(serde) is IntSerde:
        names["pack"] = _PACK
        return f"None if {part} is None else pack({part})"
    names[f"write_{part}"] = serde.serialize
    return f"write_{part}({part})"
