"""Where records leave a sub-topology for a Kafka topic: the key and value serialized with the
sink's serdes and handed to the emitter (a worker's producer, the test driver's collector).

`SinkProcessor` writes one topic; `RoutedSinkProcessor` the topic a function names per record
(`Stream.to(function)`, Kafka Streams' TopicNameExtractor). Chains of stateless operators are
fused with the first into one function (`processor.topology.fusion`), not with the second, whose
topic is not known when chains are built.
"""

from __future__ import annotations

from typing import Any

from processor.errors import RecordRejectedError
from processor.topology.graph import SinkNode
from processor.topology.operator import Processor
from processor.topology.record import (
    Emitter,
    NullKeyError,
    OperatorError,
    RecordContext,
    SinkRejectedError,
)

__all__ = ["RoutedSinkProcessor", "SinkProcessor"]


class SinkProcessor(Processor):
    __slots__ = (
        "context",
        "emitter",
        "internal",
        "key_serde",
        "null_key_error",
        "topic",
        "value_serde",
    )

    def __init__(self, node: SinkNode, context: RecordContext, emitter: Emitter) -> None:
        super().__init__(node.name)
        self.topic = node.topic
        self.key_serde = node.key_serde
        self.value_serde = node.value_serde
        self.null_key_error = node.null_key_error
        self.internal = node.internal
        self.context = context
        self.emitter = emitter

    def process(self, key: Any, value: Any) -> bool:
        if key is None and self.null_key_error is not None:
            raise self.null_key()
        try:
            key_bytes = self.key_serde.serialize(key)
        except Exception as e:
            raise self.key_error(key, e) from e
        try:
            value_bytes = self.value_serde.serialize(value)
        except Exception as e:
            raise self.value_error(value, e) from e
        c = self.context
        try:
            self.emitter.emit(self.topic, key_bytes, value_bytes, c.timestamp, c.headers, c)
        except RecordRejectedError as e:
            raise SinkRejectedError(self.name, e) from e
        return True

    def null_key(self) -> NullKeyError:
        """A null key where the records must have one (`SinkNode.null_key_error`)."""
        return NullKeyError(self.name, self.null_key_error)

    def key_error(self, key: Any, error: Exception) -> OperatorError:
        """The key serde could not write `key`."""
        return self._serde_error("key", key, self.key_serde.name, error)

    def value_error(self, value: Any, error: Exception) -> OperatorError:
        """The value serde could not write `value`."""
        return self._serde_error("value", value, self.value_serde.name, error)

    def _serde_error(self, part: str, data: Any, serde: str, error: Exception) -> OperatorError:
        advice = f"give to({self.topic!r}) a matching {part}_serde"
        if self.internal:
            # A topic the topology writes itself: its serdes come from the step that made it.
            advice = (
                f"the internal topic {self.topic!r} is written with the {part} serde the stream "
                f"carries; give the group_by, group_by_key, to_table or repartition that makes "
                f"it a matching {part}_serde (after a map that changed the {part}s, "
                f"repartition({part}_serde=...) before a join)"
            )
        return OperatorError(
            self.name,
            TypeError(
                f"cannot serialize {part} {data!r} with the {serde} serde ({error}); {advice}"
            ),
        )


class RoutedSinkProcessor(SinkProcessor):
    """A sink whose topic `topic_of(key, value)` names per record (not fused into chains: its
    topic is not known when they are built)."""

    __slots__ = ("topic_of",)

    def __init__(self, node: SinkNode, context: RecordContext, emitter: Emitter) -> None:
        super().__init__(node, context, emitter)
        assert node.topic_of is not None
        self.topic_of = node.topic_of

    def process(self, key: Any, value: Any) -> bool:
        try:
            topic = self.topic_of(key, value)
        except Exception as e:
            raise OperatorError(self.name, e) from e
        if not isinstance(topic, str) or not topic:
            raise OperatorError(
                self.name,
                TypeError(f"the topic function returned {topic!r}, not a topic name (a str)"),
            )
        self.topic = topic
        return super().process(key, value)
