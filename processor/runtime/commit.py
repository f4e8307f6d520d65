"""The commit protocol, in the order ARCHITECTURE.md gives it.

At-least-once, every commit interval:
  1. flush the stores' caches: each dirty key once to its changelog;
  2. flush the producer: every changelog and output record is acknowledged by the broker;
  3. stop if the broker refused any record (its input offset must not be committed);
  4. checkpoint the stores: their data with the changelog offsets, in one local write;
  5. commit the next source offsets as the group member (a fenced member is refused).

Exactly-once, every commit interval, inside the transaction begun by the first output since the
last commit:
  1. flush the stores' caches into the changelogs, in the transaction;
  2. add the source offsets to the transaction with the consumer's group metadata;
  3. commit the transaction (changelogs, outputs and offsets become visible together, or not
     at all);
  4. only then checkpoint the stores, so local state never holds uncommitted data and a crash
     never forces a wipe. If the transaction fails, the caches are dropped instead.

An output record the broker refuses goes to the production error handler. Under at-least-once
the handler runs after the flush, before the offsets are committed (a dead-letter record is
delivered first). Under exactly-once the refusal dooms the transaction: it is aborted, the
refused record's input is remembered, and when the tasks have rewound and read that input
again it goes to the handler instead of being processed, inside the new transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from processor.errors import BrokerError, RecordRejectedError
from processor.kafka.consumer import GroupConsumer
from processor.kafka.producer import DeliveryFailure, OutputProducer
from processor.runtime.task import Partition, StreamTask, TaskOptions
from processor.topology.handling import (
    ErrorHandler,
    ErrorStage,
    Outcome,
    RecordFailure,
    handle_failure,
)
from processor.topology.record import Emitter

log = logging.getLogger("processor.commit")

_TIMEOUT_S = 30.0


class Committer:
    def __init__(
        self,
        producer: OutputProducer,
        consumer: GroupConsumer,
        *,
        exactly_once: bool,
        options: TaskOptions | None = None,
        emitter: Emitter | None = None,
    ) -> None:
        self._producer = producer
        self._consumer = consumer
        self._exactly_once = exactly_once
        self._options = options or TaskOptions()
        self._accounting = self._options.accounting
        # Dead-letter records of refused outputs go out through the worker, like sink records.
        self._emitter = emitter
        # The tasks of the last commit: they name the task of a refused record's input.
        self._last_tasks: list[StreamTask] = []
        self._in_transaction = False
        self._next_commit_at = 0.0
        self.commits = 0

    def start(self) -> None:
        if self._exactly_once:
            self._producer.init_transactions(_TIMEOUT_S)
        self._next_commit_at = time.monotonic()

    def before_output(self) -> None:
        """Call before producing anything: under exactly-once it opens the transaction."""
        if self._exactly_once and not self._in_transaction:
            self._producer.begin_transaction()
            self._in_transaction = True

    def maybe_commit(self, tasks: Iterable[StreamTask], interval_ms: int) -> None:
        self._producer.poll()
        now = time.monotonic()
        if now < self._next_commit_at:
            return
        self._next_commit_at = now + interval_ms / 1000
        self.commit(tasks)

    def commit(self, tasks: Iterable[StreamTask]) -> None:
        """Commit everything the (running) tasks processed so far. On a BrokerError nothing of
        this commit is visible: at-least-once keeps the offsets for the next try, exactly-once
        aborts and drops the caches."""
        task_list = list(tasks)
        self._last_tasks = task_list
        offsets: dict[Partition, int] = {}
        for task in task_list:
            offsets.update(task.take_offsets())
        try:
            if self._exactly_once:
                self._commit_transaction(task_list, offsets)
            else:
                self._commit_at_least_once(task_list, offsets)
        except BrokerError:
            for task in task_list:
                if self._exactly_once and task.stores is not None:
                    task.stores.drop()
                elif not self._exactly_once:
                    task.restore_offsets({p: o for p, o in offsets.items() if p in task.partitions})
            if self._exactly_once:
                self._accounting.drop_pending()
            raise
        self._accounting.commit()
        self.commits += 1

    def _flush_stores(self, tasks: list[StreamTask]) -> int:
        count = 0
        now_ms = int(time.time() * 1000)
        producer = self._producer
        for task in tasks:
            if task.stores is None:
                continue

            def write(
                topic: str, key: bytes, value: bytes | None, partition: int = task.id.partition
            ) -> None:
                producer.produce(topic, key, value, now_ms, None, partition)

            count += task.stores.flush(write)
        return count

    def _checkpoint(self, tasks: list[StreamTask]) -> None:
        acknowledged = self._producer.acknowledged
        for task in tasks:
            stores = task.stores
            if stores is None:
                continue
            partition = task.id.partition
            stores.checkpoint(
                {
                    topic: acknowledged[(topic, partition)]
                    for topic in stores.changelogs.values()
                    if (topic, partition) in acknowledged
                }
            )

    def _commit_at_least_once(self, tasks: list[StreamTask], offsets: dict[Partition, int]) -> None:
        self._flush_stores(tasks)
        remaining = self._producer.flush(_TIMEOUT_S)
        if remaining:
            raise BrokerError(
                f"{remaining} output records were not acknowledged within {_TIMEOUT_S:.0f}s; "
                "their input offsets stay uncommitted"
            )
        self._handle_refused_outputs(tasks)
        self._checkpoint(tasks)
        self._consumer.commit(offsets)

    def _commit_transaction(self, tasks: list[StreamTask], offsets: dict[Partition, int]) -> None:
        if not self._in_transaction:
            if not offsets:
                return
            self.before_output()
        try:
            self._flush_stores(tasks)
            if offsets:
                self._producer.send_offsets_to_transaction(
                    offsets, self._consumer.group_metadata(), _TIMEOUT_S
                )
            self._producer.commit_transaction(_TIMEOUT_S)
        except BrokerError:
            self._remember_refused_outputs(tasks)
            self.abandon()
            raise
        self._in_transaction = False
        self._raise_refused(self._producer.take_failures())
        self._checkpoint(tasks)
        self._forget_handled_refusals(offsets)

    def _forget_handled_refusals(self, offsets: dict[Partition, int]) -> None:
        unproducible = self._options.unproducible
        for position in [p for p in unproducible if offsets.get(p[:2], -1) > p[2]]:
            del unproducible[position]

    def _handle_refused_outputs(self, tasks: list[StreamTask]) -> None:
        """At-least-once, after the flush: hand each refused output to the production error
        handler (a dead-letter record is flushed before the offsets are committed)."""
        failures = self._producer.take_failures()
        if not failures:
            return
        self._raise_refused(failures, handled=self._handles_refusals(failures))
        assert self._emitter is not None
        retracted: set[tuple[str, int, int]] = set()
        for failure in failures:
            assert failure.origin is not None
            refusal = self._refusal(failure, tasks)
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
        self._raise_refused(self._producer.take_failures())

    def _remember_refused_outputs(
        self, tasks: list[StreamTask], *, raise_unhandled: bool = True
    ) -> None:
        """Exactly-once, the transaction failed: when outputs were refused, remember their
        inputs, which go to the production error handler when the tasks read them again.
        Records that failed only because the transaction did are sent again after the rewind.
        Refusals no handler takes raise, or with `raise_unhandled=False` are left for the
        rewound tasks to meet again."""
        refused = [f for f in self._producer.take_failures() if f.refused]
        if not refused:
            return
        if not self._handles_refusals(refused):
            if raise_unhandled:
                self._raise_refused(refused)
            return
        for failure in refused:
            assert failure.origin is not None
            record = (failure.key, failure.value, failure.timestamp, failure.headers)
            self._options.unproducible[failure.origin] = (self._refusal(failure, tasks), record)
        log.warning(
            "the broker refused %d output records; the transaction is aborted and their inputs "
            "go to the production error handler when read again",
            len(refused),
        )

    def _handles_refusals(self, failures: list[DeliveryFailure]) -> bool:
        """Whether the production error handler takes `failures`: not when it is `fail`, and
        not for records without an input (changelog records, dead-letter records), nor for
        failures that are not about the record (a delivery timeout)."""
        return self._options.handling.production is not ErrorHandler.FAIL and all(
            f.refused
            and f.origin is not None
            and f.topic != self._options.handling.dead_letter_topic
            for f in failures
        )

    @staticmethod
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

    @staticmethod
    def _raise_refused(failures: list[DeliveryFailure], *, handled: bool = False) -> None:
        if not failures or handled:
            return
        first = failures[0]
        origin = (
            f" (from input record {first.origin[0]}[{first.origin[1]}]@{first.origin[2]})"
            if first.origin is not None
            else ""
        )
        raise BrokerError(
            f"the broker refused {len(failures)} output records, first to topic "
            f"{first.topic!r} partition {first.partition}{origin}: {first.reason}; their input "
            "offsets were not committed, so a restart after the fix reprocesses them "
            "(production_error_handler=skip or dead_letter handles refused sink records)",
            fatal=True,
        )

    def fail(self, tasks: Iterable[StreamTask]) -> None:
        """Processing hit a broker error (a transaction that must be aborted): forget everything
        since the last commit, as a failed commit does; the worker then rewinds its tasks."""
        task_list = list(tasks)
        self._last_tasks = task_list
        if self._exactly_once:
            self._remember_refused_outputs(task_list)
        self.abandon()
        for task in task_list:
            task.take_offsets()
            if self._exactly_once and task.stores is not None:
                task.stores.drop()

    def abandon(self) -> None:
        """Forget uncommitted work: under exactly-once abort the open transaction."""
        if self._exactly_once and self._in_transaction:
            try:
                self._producer.abort_transaction(_TIMEOUT_S)
            except BrokerError as e:
                log.warning("aborting the transaction failed: %s", e)
            self._in_transaction = False
            # The abort purged what was still queued: serve those delivery reports now, so they
            # are not taken for failures of the next transaction.
            self._producer.flush(_TIMEOUT_S)
            self._remember_refused_outputs(self._last_tasks, raise_unhandled=False)
        self._accounting.drop_pending()

    def close(self) -> None:
        if self._in_transaction:
            self.abandon()
        self._producer.flush(_TIMEOUT_S)
        self._raise_refused(self._producer.take_failures())
