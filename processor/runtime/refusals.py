"""Output records the broker refuses, and what becomes of the inputs they came from.

An output record the broker refuses (too large, a topic it will not take) goes to the production
error handler of its input record. Under at-least-once the handler runs after the flush, before
the offsets are committed (a dead-letter record is delivered first). Under exactly-once the
refusal dooms the transaction: it is aborted, the refused record's input is remembered (in
`TaskOptions.unproducible`), and when the tasks have rewound and read that input again it goes
to the handler instead of being processed, inside the new transaction.

A refusal for size also marks the topic's `max.message.bytes` as stale (`stale_limits`): the
worker reads it again, so that the rest of the too-large records are refused before they are
sent.
"""

from __future__ import annotations

import logging

from processor.errors import BrokerError, RecordRejectedError
from processor.ids import Partition
from processor.kafka.producer import DeliveryFailure, OutputProducer
from processor.runtime.task import StreamTask, TaskOptions
from processor.topology.handling import (
    ErrorHandler,
    ErrorStage,
    Outcome,
    RecordFailure,
    handle_failure,
)
from processor.topology.record import Emitter

__all__ = ["Refusals", "raise_refused"]

log = logging.getLogger("processor.commit")

_TIMEOUT_S = 30.0
# Changelog topics are `<application_id>-<store>-changelog`.
_CHANGELOG_SUFFIX = "-changelog"


class Refusals:
    def __init__(
        self, producer: OutputProducer, options: TaskOptions, emitter: Emitter | None
    ) -> None:
        self._producer = producer
        self._options = options
        self._accounting = options.accounting
        # Dead-letter records of refused outputs go out through the emitter, like sink records.
        self._emitter = emitter
        self.stale_limits: set[str] = set()
        """Topics the broker refused a record of for its size since their max.message.bytes
        was last read: the limit changed, and should be read again."""

    def handle_after_flush(self, tasks: list[StreamTask]) -> None:
        """At-least-once, after the flush: hand each refused output to the production error
        handler (a dead-letter record is flushed before the offsets are committed)."""
        failures = self._producer.take_failures()
        if not failures:
            return
        self.stale_limits.update(f.topic for f in failures if f.too_large)
        raise_refused(failures, handled=self._handled(failures))
        assert self._emitter is not None
        retracted: set[tuple[str, int, int]] = set()
        for failure in failures:
            assert failure.origin is not None
            refusal = _refusal(failure, tasks)
            record = (failure.key, failure.value, failure.timestamp, failure.headers)
            handle_failure(self._options.handling, refusal, record, self._emitter, self._accounting)
            if failure.origin not in retracted:
                retracted.add(failure.origin)
                self._accounting.retract(Outcome.OUTPUT)
        if self._producer.flush(_TIMEOUT_S):
            raise BrokerError(
                "dead-letter records were not acknowledged within "
                f"{_TIMEOUT_S:.0f}s; their input offsets stay uncommitted"
            )
        raise_refused(self._producer.take_failures())

    def remember(self, tasks: list[StreamTask], *, raise_unhandled: bool = True) -> bool:
        """Exactly-once, the transaction failed: when outputs were refused, remember their
        inputs, which go to the production error handler when the tasks read them again.
        Records that failed only because the transaction did are sent again after the rewind.
        Refusals no handler takes raise, or with `raise_unhandled=False` are left for the
        rewound tasks to meet again. Returns whether outputs were refused."""
        refused = [f for f in self._producer.take_failures() if f.refused]
        if not refused:
            return False
        self.stale_limits.update(f.topic for f in refused if f.too_large)
        if not self._handled(refused):
            if raise_unhandled:
                raise_refused(refused)
            return True
        for failure in refused:
            assert failure.origin is not None
            record = (failure.key, failure.value, failure.timestamp, failure.headers)
            self._options.unproducible[failure.origin] = (_refusal(failure, tasks), record)
        log.warning(
            "the broker refused %d output records; the transaction is aborted and their inputs "
            "go to the production error handler when read again",
            len(refused),
        )
        return True

    def forget_handled(self, offsets: dict[Partition, int]) -> None:
        """Remembered inputs the committed offsets have passed are done with."""
        unproducible = self._options.unproducible
        for position in [p for p in unproducible if offsets.get(p[:2], -1) > p[2]]:
            del unproducible[position]

    def _handled(self, failures: list[DeliveryFailure]) -> bool:
        """Whether the production error handler takes `failures`: not when it is `fail`, and
        not for records without an input (changelog records, dead-letter records), nor for
        failures that are not about the record (a delivery timeout)."""
        return self._options.handling.production is not ErrorHandler.FAIL and all(
            f.refused
            and f.origin is not None
            and f.topic != self._options.handling.dead_letter_topic
            for f in failures
        )


def _refusal(failure: DeliveryFailure, tasks: list[StreamTask]) -> RecordFailure:
    assert failure.origin is not None
    topic, partition, offset = failure.origin
    task = next((str(t.id) for t in tasks if (topic, partition) in t.partitions), "?")
    return RecordFailure(
        ErrorStage.PRODUCTION,
        RecordRejectedError(failure.topic, failure.reason),
        topic,
        partition,
        offset,
        task,
        target_topic=failure.topic,
    )


def raise_refused(failures: list[DeliveryFailure], *, handled: bool = False) -> None:
    """Stop the worker for records not delivered that no handler takes."""
    if not failures or handled:
        return
    first = failures[0]
    if not any(f.refused for f in failures):
        raise BrokerError(
            f"{len(failures)} output records were not delivered, first to topic "
            f"{first.topic!r} partition {first.partition}: {first.reason}; the broker did "
            "not take them within the producer's message.timeout.ms; their input offsets "
            "were not committed, so a restart reprocesses them",
            fatal=True,
        )
    origin = (
        f" (from input record {first.origin[0]}[{first.origin[1]}]@{first.origin[2]})"
        if first.origin is not None
        else ""
    )
    hint = _hint(first)
    raise BrokerError(
        f"the broker refused {len(failures)} output records, first to {_where(first)}"
        f"{origin}: {first.reason}; their input "
        f"offsets were not committed, so a restart after the fix reprocesses them ({hint})",
        fatal=True,
    )


def _hint(first: DeliveryFailure) -> str:
    """What to do about the first refused record, in the stop's message."""
    changelog = first.origin is None and first.topic.endswith(_CHANGELOG_SUFFIX)
    if first.no_such_partition and changelog:
        return (
            f"changelog {_what(first)} does not exist any more: it was deleted while the worker "
            "ran, and its store is no longer backed up; a restart "
            "creates it again, empty, and the store's tasks then start over from empty state "
            "(their local state does not match it): restore the topic first to keep the state"
        )
    if first.no_such_partition:
        return (
            f"{_where(first)} does not exist (any more): create it again with its partitions, "
            "then restart; production_error_handler=skip "
            "or dead_letter handles refused sink records"
        )
    if first.too_large and changelog:
        # Stores refuse updates too large for their changelogs as they are written: this
        # changelog's limit was lowered since the worker read it.
        return (
            "the changelog's max.message.bytes was lowered since this worker read it; a "
            "restart reads it again, and store updates over it then go to the production "
            "error handler"
        )
    return "production_error_handler=skip or dead_letter handles refused sink records"


def _partition_of(failure: DeliveryFailure) -> int | None:
    """The record's partition; None for one not given a partition yet (its topic was unknown)."""
    partition = failure.partition
    return partition if partition is not None and partition >= 0 else None


def _what(failure: DeliveryFailure) -> str:
    """`'topic'[partition]`, or `'topic'` without a partition."""
    partition = _partition_of(failure)
    return repr(failure.topic) + ("" if partition is None else f"[{partition}]")


def _where(failure: DeliveryFailure) -> str:
    partition = _partition_of(failure)
    return f"topic {failure.topic!r}" + ("" if partition is None else f" partition {partition}")
