"""Where a worker's records go: the emitter sinks and error handlers write through, over the
producer, with the record-size limits of the topics it writes.

It owns the producer of outputs and changelogs (`OutputProducer` itself replaces its client
after a failed transaction, so everyone asks this one object), reads the topics'
`max.message.bytes` so that a record too large is refused before it is sent, and names the input
record an output came from when the production error handler needs it (a refused output is
handled as its input): the sink passes the record's context, nothing is stashed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from processor.errors import BrokerError
from processor.kafka.admin import Admin
from processor.kafka.producer import Headers, OutputProducer, max_record_bytes
from processor.query.partitioner import partition_for
from processor.topology.record import RecordContext
from processor.windows.serde import WindowedSerde

__all__ = ["Output"]

log = logging.getLogger("processor.worker")


class Output:
    """The worker's `Emitter`."""

    def __init__(
        self,
        producer: OutputProducer,
        admin: Admin,
        *,
        instance_id: str,
        track_origins: bool,
    ) -> None:
        self.producer = producer
        self._admin = admin
        self._instance_id = instance_id
        self._track_origins = track_origins
        # Topics whose keys are windowed (`partition_by_inner_key`): topic -> partition count.
        self._by_inner_key: dict[str, int] = {}

    def partition_by_inner_key(self, topics: Iterable[str]) -> None:
        """Put each record of `topics`, whose keys are windowed (`WindowedSerde`), in the
        partition of its inner key, where a record of that key would be: a windowed result
        lands in the same partition as the key's other data, as in Kafka Streams."""
        counts = self._admin.partition_counts(sorted(topics))
        self._by_inner_key = {t: n for t, n in counts.items() if n}

    def emit(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Headers | None,
        origin: RecordContext | None = None,
    ) -> None:
        partition = -1
        if self._by_inner_key and key is not None and topic in self._by_inner_key:
            partition = partition_for(WindowedSerde.partition_key(key), self._by_inner_key[topic])
        if self._track_origins and origin is not None:
            position = (origin.topic, origin.partition, origin.offset)
            self.producer.produce(topic, key, value, timestamp, headers, partition, position)
        else:
            self.producer.produce(topic, key, value, timestamp, headers, partition)

    def direct(
        self, topic: str
    ) -> Callable[[str, bytes | None, bytes | None, int, Headers | None], None] | None:
        """What a sink of `topic` may call instead of `emit`, with the same first five
        arguments, when `emit` would only pass them on to the producer (no partition of its own
        to choose, no origin to name): one Python call fewer per record. None otherwise."""
        if self._track_origins or topic in self._by_inner_key:
            return None
        return self.producer.produce

    def limit_records(self, topics: Iterable[str]) -> None:
        """Refuse records too large for `topics` before sending them."""
        self.producer.topic_limits.update(self.record_size_limits(topics))

    def reread_limits(self, topics: Iterable[str]) -> None:
        """The broker refused records for their size: a topic's limit was lowered since it was
        read. With the new limit, the rest of the too-large records are refused at once (under
        exactly-once: without dooming another transaction each)."""
        limits = self.record_size_limits(sorted(topics))
        log.warning(
            "worker %s: the broker refused records for their size; max.message.bytes is now %s",
            self._instance_id,
            ", ".join(f"{limit} for {topic!r}" for topic, limit in limits.items()) or "unknown",
        )
        self.producer.topic_limits.update(limits)

    def changelog_limits(self, changelogs: Iterable[str], producer_max: int) -> dict[str, int]:
        """The most key + value bytes a record of each changelog may hold: the smaller of its
        max.message.bytes and the producer's message.max.bytes, less a record's overhead. A store
        update over it goes to the production error handler when the store is written. (When
        the broker refuses a changelog record after all, its limit was lowered since: the commit
        cannot be completed, the worker stops, and its restart reads the new limit here.)"""
        topics = sorted(changelogs)
        known = self.record_size_limits(topics)
        limits = {t: max_record_bytes(known.get(t), producer_max) for t in topics}
        if limits:
            log.info(
                "worker %s: store updates over %s bytes of key and value do not fit their "
                "changelogs and go to the production error handler",
                self._instance_id,
                " or ".join(str(n) for n in sorted(set(limits.values()))),
            )
        return limits

    def record_size_limits(self, topics: Iterable[str]) -> dict[str, int]:
        """max.message.bytes of `topics`, where the broker can tell."""
        limits: dict[str, int] = {}
        for topic in topics:
            try:
                config = self._admin.topic_configs([topic])[topic]
            except BrokerError as e:
                # A topic created a moment ago may not be describable yet: the broker checks.
                log.info("worker %s: %s; the broker checks its record sizes", self._instance_id, e)
                continue
            value = config.get("max.message.bytes", "")
            if value.isdigit():
                limits[topic] = int(value)
        return limits
