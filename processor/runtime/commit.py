"""The commit protocol, in the order ARCHITECTURE.md gives it.

At-least-once, every commit interval:
  1. flush the stores' caches: each dirty key once to its changelog;
  2. flush the producer: every changelog and output record is acknowledged by the broker;
  3. stop if the broker refused any record (its input offset must not be committed);
  4. commit the next source offsets as the group member (a fenced member is refused);
  5. only then checkpoint the stores: their data with the changelog offsets, in one local write.

Exactly-once, every commit interval, inside the transaction begun by the first output since the
last commit:
  1. flush the stores' caches into the changelogs, in the transaction;
  2. add the source offsets to the transaction with the consumer's group metadata;
  3. commit the transaction (changelogs, outputs and offsets become visible together, or not
     at all);
  4. only then checkpoint the stores, so local state never holds uncommitted data and a crash
     never forces a wipe. If the transaction fails, the caches are dropped instead.

An output record the broker refuses goes to the production error handler (refusals.py).

Failed transactions and broker outages. A commit the broker does not take raises a non-fatal
`BrokerError`. At-least-once keeps the offsets for the next commit (the producer holds the
records meanwhile, up to its `message.timeout.ms`). Exactly-once drops the caches and the worker
rewinds its tasks to the last committed offsets; the transaction is aborted not by the producer
that ran it but by a new one with the same transactional id, whose `init_transactions()` bumps
the producer epoch, aborts the open transaction at its coordinator and fences the old producer.
librdkafka's own abort is not reliable across an outage: with the broker away it completes
locally without the epoch bump the records it purged require (the next transaction then fails on
their sequence numbers, and its `send_offsets_to_transaction` may never return), and once the
coordinator has timed the transaction out it fails fatally. A producer in a fatal state (fenced)
is replaced the same way, and so, after a commit that waited more than `_SLOW_COMMIT_S` for the
broker, is a producer that lived through an outage: such a producer's next
`send_offsets_to_transaction` was seen never to return (confluentinc/librdkafka#5456; the
producer gives up on that call after its timeout). The new producer's initialisation is tried
again at every loop until the broker answers; no transaction begins before.

One interface, `Committer`, two implementations: `AtLeastOnceCommitter` (here) and
`TransactionalCommitter` (transactional_commit.py); `make_committer` picks one. Refused outputs
are handled in refusals.py, the broker's health is watched in broker_watch.py.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from processor.errors import BrokerError
from processor.histogram import BATCH_BOUNDS_S, Histogram
from processor.ids import Partition, tasks_field, tasks_text
from processor.kafka.consumer import GroupConsumer
from processor.kafka.producer import OutputProducer
from processor.runtime.broker_watch import BrokerWatch
from processor.runtime.changelog_check import ChangelogCheck
from processor.runtime.refusals import Refusals, raise_refused
from processor.runtime.task import StreamTask, TaskOptions
from processor.topology.record import Emitter

__all__ = ["AtLeastOnceCommitter", "Committer", "make_committer"]

log = logging.getLogger("processor.commit")

TIMEOUT_S = 30.0
# Reading how far the changelogs got, for a checkpoint (which can go on without it).
_END_OFFSETS_TIMEOUT_S = 5.0
# A commit that took longer waited for a broker that was away or stalled.
SLOW_COMMIT_S = 5.0


class Committer(ABC):
    """Commits what the running tasks processed: their store changes, outputs and offsets."""

    def __init__(
        self,
        producer: OutputProducer,
        consumer: GroupConsumer,
        options: TaskOptions,
        emitter: Emitter | None,
    ) -> None:
        self._producer = producer
        self._consumer = consumer
        self._options = options
        self._accounting = options.accounting
        self._refusals = Refusals(producer, options, emitter)
        # The tasks of the last commit: they name the task of a refused record's input.
        self._last_tasks: list[StreamTask] = []
        self._next_commit_at = 0.0
        self._interval_s: float | None = None
        self.commits = 0
        # The metadata each offset of the commit in progress carries (a task's stream time).
        self._metadata: dict[Partition, str] = {}
        self.broker = BrokerWatch()
        self.producer_replacements = 0
        self.commit_seconds = Histogram(BATCH_BOUNDS_S)  # commits that carried offsets
        self._periodic = False
        self.guard: Callable[[], bool] | None = None
        """Asked right before a commit writes anything: False when this worker may have been
        replaced meanwhile (a stall) and the group does not say otherwise; the commit is then
        skipped (the guard has dropped the tasks, or holds them until it can ask)."""

    def start(self) -> None:
        self._next_commit_at = time.monotonic()

    def before_output(self) -> None:  # noqa: B027 - nothing to do unless transactional
        """Call before producing anything (exactly-once opens the transaction)."""

    def take_stale_limits(self) -> set[str]:
        """Topics whose max.message.bytes the broker has shown to be lower than last read."""
        stale, self._refusals.stale_limits = self._refusals.stale_limits, set()
        return stale

    def maybe_commit(self, tasks: Iterable[StreamTask], interval_ms: int) -> None:
        self._producer.poll()
        now = time.monotonic()
        self._interval_s = interval_ms / 1000
        if now < self._next_commit_at:
            return
        self._next_commit_at = now + self._interval_s
        self.commit(tasks, periodic=True)

    def commit(self, tasks: Iterable[StreamTask], *, periodic: bool = False) -> None:
        """Commit everything the (running) tasks processed so far. On a BrokerError nothing of
        this commit is visible (see `_forget`). `periodic`: the commit interval's, not one
        before tasks are handed over or closed."""
        if self.guard is not None and not self.guard():
            return
        self._periodic = periodic
        task_list = list(tasks)
        self._last_tasks = task_list
        offsets: dict[Partition, int] = {}
        self._metadata = {}
        for task in task_list:
            taken = task.take_offsets()
            offsets.update(taken)
            metadata = task.offset_metadata
            if metadata is not None:
                self._metadata.update(dict.fromkeys(taken, metadata))
        began = time.monotonic()
        replacements = self.producer_replacements
        try:
            self._commit(task_list, offsets, began)
        except BrokerError as e:
            self._schedule_next()
            ids = [task.id for task in task_list]
            log.warning(
                "commit of tasks [%s] failed: %s", tasks_text(ids), e, extra=tasks_field(ids)
            )
            self._forget(task_list, offsets, began, e)
            if e.fatal and self.producer_replacements > replacements:
                # The producer was in a fatal state (fenced) and has been replaced: the tasks
                # rewind, as after any failed transaction.
                raise BrokerError(f"{e}; the producer was replaced") from e
            raise
        for task in task_list:
            task.committed()
        self._schedule_next()
        took = time.monotonic() - began
        if offsets:
            self.broker.answered()
            self.commit_seconds.observe(took)
        if took > SLOW_COMMIT_S:
            self.broker.waited(took, "a commit")
            self._after_slow_commit(took)
        self._accounting.commit()
        self.commits += 1

    def _schedule_next(self) -> None:
        """The next periodic commit comes a whole interval after this one ended, whatever made
        this one (the interval, a full cache, a task let go): two commits back to back would
        stop the loop for both, and a commit that took most of the interval would leave the
        tasks little time to process before the next."""
        if self._interval_s is not None:
            self._next_commit_at = time.monotonic() + self._interval_s

    def figures(self) -> dict[str, Any]:
        """The snapshot's fields about commits and the broker (`processor.metrics`)."""
        broker = self.broker
        return {
            "commits": self.commits,
            "commit_seconds": self.commit_seconds.sample(),
            "broker_reachable": broker.reachable,
            "broker_unreachable_seconds": broker.unreachable_for(),
            "broker_errors": broker.errors,
            "producer_replacements": self.producer_replacements,
        }

    @abstractmethod
    def _commit(self, tasks: list[StreamTask], offsets: dict[Partition, int], began: float) -> None:
        """The protocol's steps; raises BrokerError when the commit did not happen."""

    @abstractmethod
    def _forget(
        self,
        tasks: list[StreamTask],
        offsets: dict[Partition, int],
        began: float,
        error: BrokerError,
    ) -> None:
        """After a failed commit: keep or drop what it carried."""

    def _after_slow_commit(self, took: float) -> None:  # noqa: B027 - transactional only
        """A commit that waited `took` seconds for the broker succeeded."""

    def fail(self, tasks: Iterable[StreamTask], error: BrokerError | None = None) -> None:
        """Processing hit a broker error (a transaction that must be aborted, or, fatal, a
        fenced producer): forget everything since the last commit, as a failed commit does;
        the worker then rewinds its tasks."""
        task_list = list(tasks)
        self._last_tasks = task_list
        self.abandon(error)
        for task in task_list:
            task.take_offsets()

    def abandon(self, error: BrokerError | None = None) -> None:
        """Forget uncommitted work. `error`: why, when it is one."""
        self._accounting.drop_pending()

    def close(self) -> None:
        self._producer.flush(TIMEOUT_S)
        raise_refused(self._producer.take_failures())

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

    def _checkpoint(
        self, tasks: list[StreamTask], ends: dict[Partition, int] | None = None
    ) -> None:
        """Write what the stores flushed to their backends, with how far each changelog got.

        Called once the broker has every changelog record, so each changelog's end offset is
        at least one past this task's last record. When it cannot be read, the data is written
        with the previous offsets: a later restore then reads some records again, which
        converges on the same state."""
        pending = [
            (task.id.partition, stores)
            for task in tasks
            if (stores := task.stores) is not None and stores.needs_checkpoint
        ]
        if not pending:
            return
        changelogs = [
            (topic, partition)
            for partition, stores in pending
            for topic in stores.changelogs.values()
        ]
        if ends is None or not all(changelog in ends for changelog in changelogs):
            try:
                ends = self._consumer.end_offsets(changelogs, _END_OFFSETS_TIMEOUT_S)
            except BrokerError as e:
                log.info("checkpointing without new changelog offsets: %s", e)
                ends = {}
        for partition, stores in pending:
            stores.checkpoint(
                {
                    topic: ends[(topic, partition)] - 1
                    for topic in stores.changelogs.values()
                    if (topic, partition) in ends
                }
            )


class AtLeastOnceCommitter(Committer):
    def __init__(
        self,
        producer: OutputProducer,
        consumer: GroupConsumer,
        options: TaskOptions,
        emitter: Emitter | None,
    ) -> None:
        super().__init__(producer, consumer, options, emitter)
        self.changelog_check = ChangelogCheck(consumer)

    def _commit(self, tasks: list[StreamTask], offsets: dict[Partition, int], began: float) -> None:
        if any(task.outputs_before_changelog for task in tasks):
            # A store that records which windows were emitted (emit="final") must not get that
            # record to the broker before the results themselves: a restart would then skip
            # results that were never written. Outputs first, then the changelogs.
            self._flush_producer()
        self._flush_stores(tasks)
        self._flush_producer()
        self._refusals.handle_after_flush(tasks)
        ends = self.changelog_check.verify(tasks, self._flush_again, every_task=not self._periodic)
        # Offsets before the checkpoint: a worker that was replaced while it stood still (its
        # commit refused as from an unknown member) must not checkpoint, for the changelogs'
        # end offsets it would record may cover what its successor wrote since, which its
        # stores never saw. A crash between the two is safe: the next restore reads the
        # changelog from the previous checkpoint.
        self._consumer.commit(offsets, metadata=self._metadata)
        self._checkpoint(tasks, ends)

    def _flush_again(self, tasks: list[StreamTask]) -> None:
        self._flush_stores(tasks)
        self._flush_producer()

    def _flush_producer(self) -> None:
        remaining = self._producer.flush(TIMEOUT_S)
        if remaining:
            raise BrokerError(
                f"{remaining} output records were not acknowledged within {TIMEOUT_S:.0f}s; "
                "their input offsets stay uncommitted"
            )

    def _forget(
        self,
        tasks: list[StreamTask],
        offsets: dict[Partition, int],
        began: float,
        error: BrokerError,
    ) -> None:
        """The offsets are kept for the next try (the producer holds the records meanwhile)."""
        if not error.fatal:
            self.broker.failed(began, "a commit", error)
        for task in tasks:
            task.restore_offsets({p: o for p, o in offsets.items() if p in task.partitions})


def make_committer(
    producer: OutputProducer,
    consumer: GroupConsumer,
    *,
    exactly_once: bool,
    options: TaskOptions | None = None,
    emitter: Emitter | None = None,
) -> Committer:
    if exactly_once:
        # Imported here: the transactional committer builds on this module.
        from processor.runtime.transactional_commit import TransactionalCommitter

        return TransactionalCommitter(producer, consumer, options or TaskOptions(), emitter)
    return AtLeastOnceCommitter(producer, consumer, options or TaskOptions(), emitter)
