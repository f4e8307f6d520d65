"""The output producer: writes sink records, waits instead of dropping when its queue is full,
and remembers every record the broker refused.

The only module touching `confluent_kafka.Producer`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from processor.errors import BrokerError, RecordRejectedError
from processor.kafka.consumer import topic_partitions

# Re-exported: the worker asks this module for the limits of what it produces.
from processor.kafka.record_size import DEFAULT_MESSAGE_MAX_BYTES as DEFAULT_MESSAGE_MAX_BYTES
from processor.kafka.record_size import RECORD_OVERHEAD as RECORD_OVERHEAD
from processor.kafka.record_size import max_record_bytes as max_record_bytes
from processor.kafka.record_size import producer_max_bytes as producer_max_bytes

Headers = list[tuple[str, bytes | None]]
# How much longer than its own timeout send_offsets_to_transaction() may take before the client
# is given up on.
_HANG_GRACE_S = 5.0
# (topic, partition, offset) of the input record an output came from
Origin = tuple[str, int, int]
# Delivery errors that are about the record itself (its size, its topic, the right to write
# there): sending it again fails again. Other failures (timeouts, records purged when a
# transaction aborts) say nothing about the record.
_RECORD_REFUSED = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.POLICY_VIOLATION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.INVALID_TIMESTAMP,
    }
)

_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
_NO_SUCH_PARTITION = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
)
# Slices in which commit_transaction() first flushes, looking for failures between them.
_FLUSH_SLICE_S = 0.05


@dataclass(frozen=True)
class DeliveryFailure:
    """An output record the broker refused, and the input it came from when that was asked
    for (`produce(..., origin=)`)."""

    topic: str
    partition: int | None  # None: never given one (its topic was unknown)
    reason: str
    key: bytes | None = None
    value: bytes | None = None
    timestamp: int = 0
    headers: Headers | None = None
    origin: Origin | None = None
    # The broker refused this record for what it is (see _RECORD_REFUSED), rather than failing
    # it along with others.
    refused: bool = False
    # Refused for its size: the topic's max.message.bytes may have changed since it was read.
    too_large: bool = False
    # Its topic, or that partition of it, does not exist (any more: deleted while it ran).
    no_such_partition: bool = False


class OutputProducer:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        # Delivery reports for failures only: a report per delivered record costs a Python call
        # and a Message object (about a microsecond, twice per counted record: the output and
        # the changelog update). How far a changelog got is asked of the broker at a checkpoint.
        self._settings = {
            **settings,
            "on_delivery": self._on_delivery,
            "delivery.report.only.error": True,
        }
        self._producer = Producer(self._settings)
        # Replaced clients a thread is still blocked in: never destroyed under it.
        self._stuck: list[Producer] = []
        self.failures: list[DeliveryFailure] = []
        self.queue_full_waits = 0
        # The largest record batch each topic accepts (its max.message.bytes), where known: a
        # record that cannot fit is refused here, at once, rather than by the broker later,
        # which under exactly-once would doom the whole transaction.
        self.topic_limits: dict[str, int] = {}

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self._failed(error, message, None)

    def _on_delivery_from(self, origin: Origin, error: Any, message: Any) -> None:
        if error is not None:
            self._failed(error, message, origin)

    def _failed(self, error: Any, message: Any, origin: Origin | None) -> None:
        timestamp = message.timestamp()[1]
        self.failures.append(
            DeliveryFailure(
                message.topic(),
                message.partition(),
                str(error),
                message.key(),
                message.value(),
                timestamp if timestamp is not None else 0,
                message.headers(),
                origin,
                error.code() in _RECORD_REFUSED,
                error.code() in _TOO_LARGE,
                error.code() in _NO_SUCH_PARTITION,
            )
        )

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Headers | None,
        partition: int = -1,
        origin: Origin | None = None,
    ) -> None:
        """Queue one record (to `partition`, or by its key when -1). When the local queue is
        full, serve delivery reports until there is room: a slow broker slows the worker down,
        it never makes it drop a record. With `origin`, a delivery failure names the input
        record the output came from (it costs about a microsecond per record).

        Raises RecordRejectedError when the producer refuses the record at once (larger than
        message.max.bytes, or a topic the cluster does not have)."""
        limit = self.topic_limits.get(topic)
        if limit is not None:
            size = RECORD_OVERHEAD + len(key or b"") + len(value or b"")
            if headers:
                size += _headers_size(headers)
            if size > limit:
                raise RecordRejectedError(
                    topic,
                    f"the record needs about {size} bytes and the topic's max.message.bytes is "
                    f"{limit}",
                )
        # Every argument positional (topic, value, key, partition, callback, on_delivery,
        # timestamp, headers): the client parses keyword arguments by name, which costs about
        # 0.7 µs per record (`bench/RESULTS.md`, per-process speed). A None callback is the
        # producer's own (`_on_delivery`).
        reported = None if origin is None else partial(self._on_delivery_from, origin)
        listed: Any = headers or None  # the client's type admits str header values too
        while True:
            try:
                self._producer.produce(
                    topic, value, key, partition, reported, None, timestamp, listed
                )
                return
            except BufferError:
                self.queue_full_waits += 1
                self._producer.poll(0.05)
            except KafkaException as e:
                error = e.args[0]
                if error.code() in _RECORD_REFUSED:
                    raise RecordRejectedError(topic, str(error.str())) from e
                # Not about this record: a transaction that must be aborted, a fenced producer.
                raise BrokerError(
                    f"producing to {topic!r} failed: {error.str()}", fatal=error.fatal()
                ) from e

    def take_failures(self) -> list[DeliveryFailure]:
        failures, self.failures = self.failures, []
        return failures

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Wait until every queued record is delivered or failed; returns how many remain."""
        remaining: int = self._producer.flush(timeout)
        return remaining

    def init_transactions(self, timeout: float) -> None:
        self._call("initialising transactions", self._producer.init_transactions, timeout)

    def begin_transaction(self) -> None:
        self._call("beginning a transaction", self._producer.begin_transaction)

    def send_offsets_to_transaction(
        self,
        offsets: Mapping[tuple[str, int], int],
        group_metadata: Any,
        timeout: float,
        metadata: Mapping[tuple[str, int], str] | None = None,
    ) -> None:
        """Add `offsets` (with each partition's `metadata`, if any) to the transaction."""
        partitions: Sequence[TopicPartition] = topic_partitions(offsets, metadata)
        # librdkafka may never return from this call, whatever its timeout, when the transaction
        # fails while it runs (confluentinc/librdkafka#5456, seen after a broker outage): it
        # runs on a thread, and a call that outlives its timeout puts the client out of use.
        client = self._producer
        outcome: list[BaseException | None] = []

        def call() -> None:
            try:
                self._call(
                    "adding offsets to the transaction",
                    client.send_offsets_to_transaction,
                    partitions,
                    group_metadata,
                    timeout,
                )
            except BaseException as e:
                outcome.append(e)
            else:
                outcome.append(None)

        thread = threading.Thread(target=call, name="processor-send-offsets", daemon=True)
        thread.start()
        thread.join(timeout + _HANG_GRACE_S)
        if not outcome:
            self._stuck.append(client)
            raise BrokerError(
                f"adding offsets to the transaction did not return within {timeout:.0f}s "
                "(confluentinc/librdkafka#5456); the producer is out of use",
                fatal=True,
            )
        if outcome[0] is not None:
            raise outcome[0]

    def commit_transaction(self, timeout: float) -> None:
        """Flush, then commit. A delivery failure dooms the transaction; but when librdkafka's
        commit starts before it hears of the failure, it waits out its whole timeout for the
        records it will no longer send. Flushing first, and stopping at the first failure, lets
        the commit return the transaction's error at once."""
        deadline = time.monotonic() + timeout
        failures = len(self.failures)
        while (
            self._producer.flush(_FLUSH_SLICE_S)
            and len(self.failures) == failures
            and time.monotonic() < deadline
        ):
            pass
        self._call(
            "committing the transaction",
            self._producer.commit_transaction,
            max(deadline - time.monotonic(), _FLUSH_SLICE_S),
        )

    def abort_transaction(self, timeout: float) -> None:
        self._call("aborting the transaction", self._producer.abort_transaction, timeout)

    def replace(self) -> None:
        """Swap the client for a new one with the same settings: for a client in a fatal state,
        or whose transaction must be aborted. What the old one still held is purged and its
        delivery reports served (as `failures`, none of them `refused`); a transactional one
        must then `init_transactions()`, which bumps the producer epoch, aborts the old client's
        open transaction and fences it."""
        old, self._producer = self._producer, Producer(self._settings)
        if old in self._stuck:
            return  # a thread is still inside it
        try:
            old.purge()
            old.poll(0)
        except (KafkaException, RuntimeError):
            pass  # a client in a fatal state may refuse even that; it is dropped anyway

    @staticmethod
    def _call(what: str, method: Any, *args: Any) -> None:
        try:
            method(*args)
        except KafkaException as e:
            error = e.args[0]
            raise BrokerError(f"{what} failed: {error}", fatal=bool(error.fatal())) from e


def _headers_size(headers: Headers) -> int:
    return sum(len(name) + len(value or b"") + 10 for name, value in headers)


def fence_transactional_id(
    settings: Mapping[str, Any], transactional_id: str, timeout: float
) -> None:
    """Abort the transaction `transactional_id` left open, and fence any producer still using
    it, by initialising transactions under that id once (what the id's next incarnation would
    do). Until then read_committed readers of every partition that transaction wrote wait for
    its timeout; after it they read on at once."""
    producer = Producer({**settings, "transactional.id": transactional_id})
    try:
        producer.init_transactions(timeout)
    except KafkaException as e:
        raise BrokerError(
            f"fencing transactional id {transactional_id!r} failed: {e.args[0]}"
        ) from e
    finally:
        producer.flush(0)
