"""A source outside Kafka feeding a topic (`topology.source(...)`, `processor.sources.base`).

The source is a sub-topology of its own with exactly one task and no input partition: the task
polls the source's reader and produces each item to `topic`. The stream reading `topic` is an
ordinary stream source in another sub-topology, so partitioning, scaling and replay stay
Kafka's. Where the source stopped lives in the compacted topic
`<application_id>-source-positions`, keyed by the source's name.

`encode_item` turns one item into the record produced (or the failure a handler gets); the
worker's source task and the test driver both use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from processor.serdes import Serde
from processor.sources.base import BadLine, Position, Source, SourceError, SourceItem
from processor.topology.handling import ErrorStage, RecordBytes, RecordFailure

__all__ = [
    "ExternalSourceSpec",
    "SourceItemError",
    "decode_position",
    "encode_item",
    "encode_position",
    "source_positions_topic",
]


def source_positions_topic(application_id: str) -> str:
    """The compacted topic holding every source's last position, keyed by the source's name."""
    return f"{application_id}-source-positions"


@dataclass(frozen=True)
class ExternalSourceSpec:
    """A source of the topology: its name (its task, position key, metrics and errors), what
    reads it (`processor.sources.Source`), the topic it feeds with the partition count that
    topic is created with, and the serdes of its records (no key serde: records have no key)."""

    name: str
    source: Source
    topic: str
    partitions: int
    key_serde: Serde[Any] | None
    value_serde: Serde[Any]

    def describe(self) -> str:
        key = self.key_serde.name if self.key_serde is not None else "none"
        return (
            f"External source: {self.name} ({self.source.describe()}; topic: {self.topic}, "
            f"partitions: {self.partitions}, key: {key}, value: {self.value_serde.name})"
        )


class SourceItemError(SourceError):
    """One item of a source cannot become a record: input the reader could not parse (a
    `BadLine`), a key function that raised, a value its serde refuses."""


def encode_item(
    spec: ExternalSourceSpec, item: SourceItem, now_ms: int, task: str
) -> tuple[RecordBytes, RecordFailure | None]:
    """The record `item` becomes (key, value, timestamp, headers), and None; or, when it cannot
    become one, what a handler should send on (the raw input or what could be serialized) and
    the failure naming the source, its topic and the item's origin (in the headers)."""
    timestamp = item.timestamp if item.timestamp is not None else now_ms
    headers: list[tuple[str, bytes | None]] = list(item.headers)
    value = item.value
    if isinstance(value, BadLine):
        error = SourceItemError(spec.name, f"unparseable input at {value}")
        return (None, value.raw, timestamp, headers), _failure(
            spec, ErrorStage.DESERIALIZATION, error, task
        )
    try:
        key = spec.source.key(value) if spec.source.key is not None else None
    except Exception as e:
        error = SourceItemError(spec.name, f"its key function raised {type(e).__name__}: {e}")
        return (None, _shown(value), timestamp, headers), _failure(
            spec, ErrorStage.PROCESSING, error, task
        )
    try:
        key_bytes = spec.key_serde.serialize(key) if spec.key_serde is not None else None
        value_bytes = spec.value_serde.serialize(value)
    except Exception as e:
        error = SourceItemError(
            spec.name, f"cannot serialize a record for topic {spec.topic!r}: {e}"
        )
        return (None, _shown(value), timestamp, headers), _failure(
            spec, ErrorStage.PRODUCTION, error, task
        )
    return (key_bytes, value_bytes, timestamp, headers), None


def _failure(
    spec: ExternalSourceSpec, stage: ErrorStage, error: Exception, task: str
) -> RecordFailure:
    # No partition or offset: the item never reached Kafka; its origin is in its headers.
    target = spec.topic if stage is ErrorStage.PRODUCTION else None
    return RecordFailure(stage, error, spec.topic, -1, -1, task, spec.name, target)


def _shown(value: Any) -> bytes:
    return repr(value).encode("utf-8", "backslashreplace")


def encode_position(position: Position) -> bytes:
    return json.dumps(position, sort_keys=True, separators=(",", ":")).encode()


def decode_position(source: str, data: bytes | None) -> Position | None:
    if data is None:
        return None
    try:
        position = json.loads(data)
    except ValueError as e:
        raise SourceError(
            source,
            f"its recorded position is not JSON ({e}); delete the key {source!r} from the "
            "positions topic to read the source from the beginning",
        ) from e
    if not isinstance(position, dict):
        raise SourceError(source, f"its recorded position {position!r} is not a JSON object")
    return position
