"""The global consumer: reads every partition of the global tables' topics, outside any group.

A `ChangelogReader` (assign at chosen offsets, end-of-partition events, read_committed under
exactly-once, the bulk fetch settings) whose records may lack a key: a global table's topic is
written by producers, not by us, and a record with a null key is the table's to skip, with its
offset. Records come as `GlobalRecords`, one per run of consecutive records of a partition.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError

from processor.kafka.changelog_reader import ChangelogReader, PartitionEnd, _raise_or_log
from processor.state.global_store import GlobalRecords

__all__ = ["GlobalTopicReader"]


class GlobalTopicReader(ChangelogReader):
    """Reads assigned partitions of global tables' topics, in bulk, from given offsets on."""

    def consume_records(
        self, max_records: int, timeout: float
    ) -> list[GlobalRecords | PartitionEnd]:
        """Up to `max_records` records, consecutive ones of a partition gathered in one
        `GlobalRecords`, and end-of-partition events; a partition's in offset order."""
        messages: list[Any] = self._consumer.consume(max_records, timeout)
        result: list[GlobalRecords | PartitionEnd] = []
        topic = ""  # no topic has an empty name
        partition = -1
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        offsets: list[int] = []
        for m in messages:
            error = m.error()
            if error is not None:
                if offsets:
                    result.append(
                        GlobalRecords(topic, partition, offsets[-1], keys, values, offsets)
                    )
                    keys, values, offsets = [], [], []
                if error.code() == KafkaError._PARTITION_EOF:
                    result.append(PartitionEnd(m.topic(), m.partition(), m.offset()))
                else:
                    _raise_or_log(error, m.topic(), m.partition())
                continue
            p = m.partition()
            t = m.topic()
            if p != partition or t != topic:
                if offsets:
                    result.append(
                        GlobalRecords(topic, partition, offsets[-1], keys, values, offsets)
                    )
                    keys, values, offsets = [], [], []
                topic, partition = t, p
            keys.append(m.key())
            values.append(m.value())
            offsets.append(m.offset())
        if offsets:
            result.append(GlobalRecords(topic, partition, offsets[-1], keys, values, offsets))
        return result
