"""The restore consumer: reads changelog partitions from given offsets to their end, in bulk.

It is not a member of any group: it never subscribes and never commits. Partitions are added and
removed one by one (`assign` / `unassign` are incremental), each at an offset the caller chose
from its local checkpoint. The end of a partition is reported as a `PartitionEnd` event rather
than derived from the high watermark: under read_committed the last offsets of a changelog may be
transaction markers, which are never delivered, so "position reached the high watermark" would
wait forever where the end-of-partition event arrives.

The only module that touches `confluent_kafka.Consumer` for changelogs. It implements
`processor.state.restore_protocols.ChangelogSource`, whose items (`ChangelogBatch`,
`PartitionEnd`) are defined there, free of Kafka imports, and re-exported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from processor.errors import BrokerError, RecordError, TopicError
from processor.ids import Partition
from processor.state.restore_protocols import ChangelogBatch, PartitionEnd

__all__ = [
    "BULK_READ_SETTINGS",
    "ChangelogBatch",
    "ChangelogReader",
    "ChangelogRecord",
    "PartitionEnd",
    "keys_between",
]

_log = logging.getLogger(__name__)


class ChangelogRecord(NamedTuple):
    """One changelog record; `value` None is a tombstone (the key was deleted)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


BULK_READ_SETTINGS: dict[str, Any] = {
    # One fetch brings up to 16 MB per partition (default 1 MB: ~15,000 small records), and at
    # most `fetch.max.bytes` (default 50 MB) in all.
    "max.partition.fetch.bytes": 16 * 1024 * 1024,
    # Prefetch up to a million records per partition; the memory they take stays bounded by
    # `queued.max.messages.kbytes` (default 64 MB for the whole reader).
    "queued.min.messages": 1_000_000,
    # When the prefetch queue is full, fetch again soon after it drains (default 1 s: the
    # fetcher would sit idle while the restorer empties the queue far faster than that; with
    # every one of these at its default a restore reads ~130,000 records/s instead of ~850,000).
    "fetch.queue.backoff.ms": 20,
    # At the end of a partition the broker holds a fetch this long before answering "nothing
    # new", and only that answer produces the end-of-partition event (default 500 ms).
    "fetch.wait.max.ms": 10,
}
"""Defaults tuned for reading partitions end to end; settings given to the reader override them."""

# Errors after which this partition (or the reader) cannot go on; librdkafka retries the others
# by itself, and reports them only for information.
_PARTITION_FATAL = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError._AUTO_OFFSET_RESET,
    }
)


class ChangelogReader:
    """A consumer outside any group reading assigned changelog partitions to their end.

    `group_id` is required by librdkafka but never joined; use one per worker, e.g.
    `<application_id>-restore-<instance_id>`. With `read_committed` (exactly-once) records of
    aborted transactions are skipped and the end of a partition is its last stable offset.
    Not thread-safe: one thread calls it (close() included).
    """

    def __init__(self, settings: Mapping[str, Any], *, group_id: str, read_committed: bool) -> None:
        config: dict[str, Any] = {
            **BULK_READ_SETTINGS,
            **settings,
            "group.id": group_id,
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        }
        self._consumer = Consumer(config)
        self.read_committed = read_committed

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        """(low, high) of `topic[partition]` as the broker has them now: the first offset and
        the offset after the last one (the last stable offset under read_committed)."""
        try:
            result = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout, cached=False
            )
        except KafkaException as e:
            error = e.args[0]
            if error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
                raise TopicError(
                    topic, f"partition {partition} does not exist; cannot read its changelog"
                ) from e
            raise BrokerError(
                f"reading the offsets of changelog {topic}[{partition}] failed: {error.str()}",
                fatal=bool(error.fatal()),
            ) from e
        if result is None:
            raise BrokerError(
                f"reading the offsets of changelog {topic}[{partition}] timed out after {timeout}s"
            )
        low, high = result
        return int(low), int(high)

    def high_watermark(self, topic: str, partition: int) -> int | None:
        """The high watermark of an assigned partition as of the last fetch response (None
        before the first), uncommitted records included even under read_committed: beyond a
        `PartitionEnd` it means a transaction is still open there. No request is made."""
        try:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
        except KafkaException:
            return None
        return int(high) if high >= 0 else None

    def assign(self, start_offsets: Mapping[Partition, int]) -> None:
        """Start reading these partitions (in addition to those already assigned), each from
        its offset."""
        if start_offsets:
            self._consumer.incremental_assign(
                [TopicPartition(t, p, o) for (t, p), o in start_offsets.items()]
            )

    def unassign(self, partitions: Iterable[Partition]) -> None:
        """Stop reading these partitions; records already fetched for them are dropped."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        if tps:
            self._consumer.incremental_unassign(tps)

    def pause(self, partitions: Iterable[Partition]) -> None:
        """Stop fetching these assigned partitions; each keeps its position (records fetched
        and not yet handed out are fetched again after `resume`)."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        if tps:
            self._consumer.pause(tps)

    def resume(self, partitions: Iterable[Partition]) -> None:
        tps = [TopicPartition(t, p) for t, p in partitions]
        if tps:
            self._consumer.resume(tps)

    def consume(self, max_records: int, timeout: float) -> list[ChangelogRecord | PartitionEnd]:
        """Up to `max_records` records and end-of-partition events, in offset order per
        partition; returns when it has `max_records` of them or after `timeout` seconds."""
        messages: list[Any] = self._consumer.consume(max_records, timeout)
        result: list[ChangelogRecord | PartitionEnd] = []
        append = result.append
        for m in messages:
            error = m.error()
            if error is None:
                append(ChangelogRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value()))
            elif error.code() == KafkaError._PARTITION_EOF:
                append(PartitionEnd(m.topic(), m.partition(), m.offset()))
            else:
                _raise_or_log(error, m.topic(), m.partition())
        return result

    def consume_batches(
        self, max_records: int, timeout: float
    ) -> list[ChangelogBatch | PartitionEnd]:
        """What `consume()` returns, with consecutive records of one partition gathered into
        one `ChangelogBatch`: the bulk path, about twice as fast as one object per record.
        A partition's batches and its end come in offset order. Raises `RecordError` for a
        record without a key (a changelog record always has one)."""
        messages: list[Any] = self._consumer.consume(max_records, timeout)
        result: list[ChangelogBatch | PartitionEnd] = []
        topic = ""  # no topic has an empty name
        partition = -1
        changes: list[tuple[bytes, bytes | None]] = []
        last = -1
        for m in messages:
            error = m.error()
            if error is not None:
                if changes:
                    result.append(ChangelogBatch(topic, partition, last, changes))
                    changes = []
                if error.code() == KafkaError._PARTITION_EOF:
                    result.append(PartitionEnd(m.topic(), m.partition(), m.offset()))
                else:
                    _raise_or_log(error, m.topic(), m.partition())
                continue
            p = m.partition()
            t = m.topic()
            if p != partition or t != topic:
                if changes:
                    result.append(ChangelogBatch(topic, partition, last, changes))
                    changes = []
                topic, partition = t, p
            key = m.key()
            if key is None:
                raise RecordError(t, p, m.offset(), "a changelog record has no key")
            changes.append((key, m.value()))
            last = m.offset()
        if changes:
            result.append(ChangelogBatch(topic, partition, last, changes))
        return result

    def close(self) -> None:
        self._consumer.close()


def keys_between(
    settings: Mapping[str, Any],
    partition: Partition,
    first: int,
    end: int,
    *,
    group_id: str,
    timeout_s: float,
) -> set[bytes]:
    """The keys of the records of changelog `partition` at offsets `first` to `end` (excluded),
    read uncommitted; raises `BrokerError` when they could not all be read within `timeout_s`."""
    topic, number = partition
    reader = ChangelogReader(
        {**settings, "fetch.wait.max.ms": 50}, group_id=group_id, read_committed=False
    )
    keys: set[bytes] = set()
    try:
        reader.assign({partition: first})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for item in reader.consume(500, 0.2):
                if item.offset >= end:
                    return keys
                if isinstance(item, ChangelogRecord) and item.key is not None:
                    keys.add(item.key)
    finally:
        reader.close()
    raise BrokerError(
        f"reading changelog {topic}[{number}] offsets {first} to {end} took more than "
        f"{timeout_s:.0f}s"
    )


def _raise_or_log(error: Any, topic: str | None, partition: int | None) -> None:
    where = f"changelog {topic}[{partition}]" if topic is not None else "the changelog reader"
    if error.fatal() or error.code() in _PARTITION_FATAL:
        raise BrokerError(f"reading {where} failed: {error.str()}", fatal=bool(error.fatal()))
    _log.warning("reading %s: %s (retrying)", where, error.str())
