"""An in-memory driver that runs a topology without Kafka, through the same processors a worker
uses: pipe records into input topics, read what the sinks wrote.

>>> from processor import Topology, serdes
>>> topology = Topology("shout")
>>> topology.stream("lines", value_serde=serdes.StringSerde()).map_values(str.upper).to("out")
>>> driver = TopologyTestDriver(topology)
>>> driver.pipe("lines", None, "hello")
>>> driver.read("out")
[(None, 'HELLO')]
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from processor.dsl.topology import Topology
from processor.errors import RecordError, TopologyError
from processor.serdes import Serde
from processor.topology.graph import SinkNode
from processor.topology.processors import (
    Headers,
    OperatorError,
    RecordContext,
    SourceProcessor,
    instantiate,
)


@dataclass(frozen=True)
class OutputRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: Headers | None


class _Collector:
    def __init__(self) -> None:
        self.records: dict[str, list[OutputRecord]] = defaultdict(list)

    def emit(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Headers | None,
    ) -> None:
        self.records[topic].append(OutputRecord(topic, key, value, timestamp, headers))


class TopologyTestDriver:
    """Runs `topology` in memory. Each input topic behaves as one partition."""

    def __init__(self, topology: Topology, *, start_time_ms: int = 0) -> None:
        self._topology = topology
        self._now_ms = start_time_ms
        self._collector = _Collector()
        self._context = RecordContext()
        self._sources: dict[str, SourceProcessor] = {}
        self._offsets: dict[str, int] = defaultdict(int)
        self._sink_serdes: dict[str, tuple[Serde[Any], Serde[Any]]] = {}
        for sub in topology.subtopologies():
            self._sources.update(instantiate(sub, self._context, self._collector))
            for node in sub.nodes:
                if isinstance(node, SinkNode):
                    self._sink_serdes.setdefault(node.topic, (node.key_serde, node.value_serde))

    @property
    def now_ms(self) -> int:
        return self._now_ms

    def advance_time(self, milliseconds: int) -> None:
        self._now_ms += milliseconds

    def pipe(
        self,
        topic: str,
        key: Any,
        value: Any,
        *,
        timestamp: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Feed one record to `topic`, serialized with that source's serdes."""
        source = self._source(topic)
        self.pipe_bytes(
            topic,
            source.key_serde.serialize(key),
            source.value_serde.serialize(value),
            timestamp=timestamp,
            headers=headers,
        )

    def _source(self, topic: str) -> SourceProcessor:
        source = self._sources.get(topic)
        if source is None:
            raise TopologyError(
                f"topic {topic!r} is not a source of topology {self._topology.name!r}; "
                f"its sources are {sorted(self._sources)}"
            )
        return source

    def pipe_bytes(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        timestamp: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Feed one record as raw bytes, as a producer would have written it."""
        source = self._source(topic)
        offset = self._offsets[topic]
        self._offsets[topic] = offset + 1
        c = self._context
        c.topic, c.partition, c.offset = topic, 0, offset
        c.timestamp = self._now_ms if timestamp is None else timestamp
        c.headers = headers
        try:
            source.process_bytes(key, value)
        except OperatorError as e:
            raise RecordError(topic, 0, offset, str(e)) from e

    def read_records(self, topic: str) -> list[OutputRecord]:
        """Everything written to `topic` since the last read, as bytes; the read consumes it."""
        records = self._collector.records.pop(topic, [])
        return records

    def read(self, topic: str) -> list[tuple[Any, Any]]:
        """Everything written to `topic` since the last read, deserialized by its sink's serdes."""
        key_serde, value_serde = self._sink_serdes.get(topic, (None, None))
        if key_serde is None or value_serde is None:
            raise TopologyError(
                f"topic {topic!r} is not written by topology {self._topology.name!r}"
            )
        return [
            (key_serde.deserialize(r.key), value_serde.deserialize(r.value))
            for r in self.read_records(topic)
        ]
