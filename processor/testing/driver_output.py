"""What the `TopologyTestDriver` collects: every record its sinks wrote, by topic, and the
records written to internal topics, which it feeds on to the sub-topologies reading them."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

from processor.topology.record import Headers, RecordContext

__all__ = ["OutputRecord"]


@dataclass(frozen=True)
class OutputRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: Headers | None


class _Collector:
    """Keeps what the sinks wrote. Records for `internal_topics` (repartition topics) are only
    fed back to the topology; records for `read_back_topics` (topics the topology also reads:
    a source or a global table's topic) are kept as output and fed back, as a broker would
    deliver them (and as Kafka Streams' TopologyTestDriver does)."""

    def __init__(self, internal_topics: set[str], read_back_topics: set[str]) -> None:
        self.records: dict[str, list[OutputRecord]] = defaultdict(list)
        self.internal: deque[OutputRecord] = deque()
        self._internal_topics = internal_topics
        self._read_back_topics = read_back_topics

    def emit(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Headers | None,
        origin: RecordContext | None = None,
    ) -> None:
        record = OutputRecord(topic, key, value, timestamp, headers)
        if topic in self._internal_topics:
            self.internal.append(record)
        else:
            self.records[topic].append(record)
            if topic in self._read_back_topics:
                self.internal.append(record)
