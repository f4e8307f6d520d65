"""Reading a small compacted topic from its beginning and then following it, outside any group.

The worker follows `<application_id>-metadata` with it: every instance's latest status. Nothing
is committed; each worker reads the topic from the start when it starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from processor.errors import BrokerError

__all__ = ["TailRecord", "TopicTail"]

# How long the topic's metadata is waited for before its partitions are assigned.
_METADATA_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class TailRecord:
    """One record of the followed topic; a value of None is a tombstone."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    topic: str
    partition: int
    offset: int

    @property
    def origin(self) -> str:
        """Where it was read, for log lines: `topic[partition]@offset`."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


class TopicTail:
    """Follows every partition of `topic` from its beginning; `poll()` never blocks long."""

    def __init__(self, settings: Mapping[str, Any], topic: str, partitions: int) -> None:
        self.topic = topic
        self._consumer = Consumer(
            {
                **settings,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                # Status updates are small and should be seen soon.
                "fetch.wait.max.ms": 100,
            }
        )
        # The topic's leaders first: a partition assigned before its topic's metadata is known
        # waits for librdkafka's once-a-second scan of unknown topics, 0.5-1 s in which a new
        # worker's claim on its tasks could not be read back (processor.runtime.handover).
        # Without an answer the assignment goes ahead, and is fetched after that scan.
        with contextlib.suppress(KafkaException):
            self._consumer.list_topics(topic, _METADATA_TIMEOUT_S)
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self._partitions = partitions
        # Per partition: the offset after the last record read.
        self.read_to: dict[int, int] = {}

    def poll(self, max_records: int = 500, timeout: float = 0.0) -> list[TailRecord]:
        """The records that arrived since the last call, in offset order per partition."""
        records: list[TailRecord] = []
        messages: list[Any] = self._consumer.consume(max_records, timeout)
        for message in messages:
            error = message.error()
            if error is None:
                self.read_to[message.partition()] = message.offset() + 1
                records.append(
                    TailRecord(
                        message.key(),
                        message.value(),
                        tuple(message.headers() or ()),
                        self.topic,
                        message.partition(),
                        message.offset(),
                    )
                )
            elif error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise BrokerError(f"reading topic {self.topic!r} failed: {error.str()}")
        return records

    def end_offsets(self, timeout: float) -> dict[int, int]:
        """Per partition, the offset the next record will get (asked of the broker)."""
        ends: dict[int, int] = {}
        try:
            for partition in range(self._partitions):
                tp = TopicPartition(self.topic, partition)
                _, ends[partition] = self._consumer.get_watermark_offsets(tp, timeout, False)
        except KafkaException as e:
            raise BrokerError(f"reading the end of topic {self.topic!r} failed: {e}") from e
        return ends

    def has_read_to(self, offsets: dict[int, int]) -> bool:
        """Whether every record before `offsets` (per partition) has been read."""
        return all(self.read_to.get(p, 0) >= o for p, o in offsets.items() if o > 0)

    def close(self) -> None:
        self._consumer.close()
