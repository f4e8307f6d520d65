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

`BrokerWatch` logs a WARNING when the broker stops taking requests (again every 10 s, naming for
how long) and an INFO when it takes them again; after `OUTAGE_LIMIT_S` the error is fatal and
the worker stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from processor.errors import BrokerError, RecordRejectedError
from processor.ids import Partition
from processor.kafka.consumer import GroupConsumer
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

log = logging.getLogger("processor.commit")

_TIMEOUT_S = 30.0
# Adding the offsets is one request to each coordinator (librdkafka itself gives up on a
# transactional request after 10 s).
_SEND_OFFSETS_TIMEOUT_S = 10.0
# Reading how far the changelogs got, for a checkpoint (which can go on without it).
_END_OFFSETS_TIMEOUT_S = 5.0
# A commit that took longer waited for a broker that was away or stalled.
_SLOW_COMMIT_S = 5.0
# One try at initialising a replaced producer while the broker may be away; the worker's loop
# goes on between tries.
_INIT_TRY_S = 2.0
_INIT_INTERVAL_S = 1.0
# Changelog topics are `<application_id>-<store>-changelog`.
_CHANGELOG_SUFFIX = "-changelog"
OUTAGE_LIMIT_S = 300.0
"""How long the broker may not take this worker's requests before the worker gives up."""
_WARNING_INTERVAL_S = 10.0
# Producers found fenced (fatal) this many times within OUTAGE_LIMIT_S: another producer keeps
# using the transactional id.
_MAX_FENCED = 5


class BrokerWatch:
    """Whether the broker takes this worker's commits (and transactional initialisations), for
    its logs and metrics: a WARNING when a request fails, repeated every `_WARNING_INTERVAL_S`
    while they go on failing, an INFO when one succeeds again."""

    def __init__(self, limit_s: float = OUTAGE_LIMIT_S) -> None:
        self.limit_s = limit_s
        self.errors = 0
        """Requests the broker did not take, ever."""
        self._since: float | None = None
        self._failures = 0
        self._next_warning = 0.0

    @property
    def reachable(self) -> bool:
        return self._since is None

    def unreachable_for(self) -> float:
        """Seconds since the first failed request of the current outage was sent (0: none)."""
        return 0.0 if self._since is None else time.monotonic() - self._since

    def failed(self, began: float, what: str, error: BrokerError) -> None:
        """`what`, sent at `began`, failed with `error`. Raises a fatal `BrokerError` once the
        broker has taken no request for longer than `limit_s`."""
        now = time.monotonic()
        self.errors += 1
        self._failures += 1
        if self._since is None:
            self._next_warning = now
        self._since = began if self._since is None else min(self._since, began)
        down = now - self._since
        if down > self.limit_s:
            raise BrokerError(
                f"the broker has taken no request for {down:.0f}s, longer than "
                f"{self.limit_s:.0f}s; giving up ({what} failed: {error})",
                fatal=True,
            ) from error
        if now >= self._next_warning:
            self._next_warning = now + _WARNING_INTERVAL_S
            log.warning(
                "broker unreachable for %.1fs (%d failed requests): %s failed: %s; retrying "
                "for up to %.0fs more",
                down,
                self._failures,
                what,
                error,
                self.limit_s - down,
            )

    def waited(self, seconds: float, what: str) -> None:
        """`what` succeeded, but only after `seconds` (the broker was away meanwhile)."""
        log.warning(
            "broker unreachable or stalled for up to %.1fs: %s waited that long for it",
            seconds,
            what,
        )

    def answered(self) -> None:
        if self._since is not None:
            log.info(
                "broker reachable again after %.1fs (%d failed requests meanwhile)",
                time.monotonic() - self._since,
                self._failures,
            )
            self._since = None
            self._failures = 0


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
        self.broker = BrokerWatch()
        self.producer_replacements = 0
        self._fenced_at: list[float] = []
        # Exactly-once: the producer was replaced and its init_transactions() has not succeeded
        # yet; no transaction begins before it has.
        self._init_pending = False
        self._next_init_at = 0.0
        # Topics the broker refused a record of for its size since the worker last read their
        # max.message.bytes: the limit changed, and should be read again.
        self.stale_limits: set[str] = set()

    def start(self) -> None:
        if self._exactly_once:
            self._producer.init_transactions(_TIMEOUT_S)
        self._next_commit_at = time.monotonic()

    def before_output(self) -> None:
        """Call before producing anything: under exactly-once it opens the transaction (first
        waiting, within `OUTAGE_LIMIT_S`, until a replaced producer is initialised)."""
        if self._exactly_once and not self._in_transaction:
            self._initialise(blocking=True)
            try:
                self._producer.begin_transaction()
            except BrokerError as e:
                if not e.fatal:
                    raise
                self._replace(f"beginning a transaction failed: {e}", fenced=e)
                self._initialise(blocking=True)
                self._producer.begin_transaction()
            self._in_transaction = True

    def maybe_commit(self, tasks: Iterable[StreamTask], interval_ms: int) -> None:
        self._producer.poll()
        now = time.monotonic()
        if self._init_pending and now >= self._next_init_at:
            self._initialise(blocking=False)
        if now < self._next_commit_at:
            return
        self._next_commit_at = now + interval_ms / 1000
        self.commit(tasks)

    def commit(self, tasks: Iterable[StreamTask]) -> None:
        """Commit everything the (running) tasks processed so far. On a BrokerError nothing of
        this commit is visible: at-least-once keeps the offsets for the next try, exactly-once
        abandons the transaction and drops the caches (the tasks must rewind)."""
        task_list = list(tasks)
        self._last_tasks = task_list
        offsets: dict[Partition, int] = {}
        for task in task_list:
            offsets.update(task.take_offsets())
        began = time.monotonic()
        replacements = self.producer_replacements
        try:
            if self._exactly_once:
                self._commit_transaction(task_list, offsets, began)
            else:
                self._commit_at_least_once(task_list, offsets)
        except BrokerError as e:
            if not e.fatal and not self._exactly_once:
                self.broker.failed(began, "a commit", e)
            for task in task_list:
                if self._exactly_once and task.stores is not None:
                    task.stores.drop()
                elif not self._exactly_once:
                    task.restore_offsets({p: o for p, o in offsets.items() if p in task.partitions})
            if self._exactly_once:
                self._accounting.drop_pending()
            if e.fatal and self.producer_replacements > replacements:
                # The producer was in a fatal state (fenced) and has been replaced: the tasks
                # rewind, as after any failed transaction.
                raise BrokerError(f"{e}; the producer was replaced") from e
            raise
        if offsets:
            self.broker.answered()
        took = time.monotonic() - began
        if took > _SLOW_COMMIT_S:
            self.broker.waited(took, "a commit")
            if self._exactly_once:
                self._replace(
                    f"it lived through {took:.1f}s without the broker, after which its next "
                    "transaction may hang (confluentinc/librdkafka#5456)"
                )
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

    def _commit_transaction(
        self, tasks: list[StreamTask], offsets: dict[Partition, int], began: float
    ) -> None:
        if not self._in_transaction:
            if not offsets:
                return
            self.before_output()
        try:
            self._flush_stores(tasks)
            if offsets:
                self._producer.send_offsets_to_transaction(
                    offsets, self._consumer.group_metadata(), _SEND_OFFSETS_TIMEOUT_S
                )
            self._producer.commit_transaction(_TIMEOUT_S)
        except BrokerError as e:
            # A refused record dooms the transaction but says nothing about the broker's health.
            if not self._remember_refused_outputs(tasks) and not e.fatal:
                self.broker.failed(began, "a commit", e)
            self.abandon(e)
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
        self.stale_limits.update(f.topic for f in failures if f.too_large)
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
    ) -> bool:
        """Exactly-once, the transaction failed: when outputs were refused, remember their
        inputs, which go to the production error handler when the tasks read them again.
        Records that failed only because the transaction did are sent again after the rewind.
        Refusals no handler takes raise, or with `raise_unhandled=False` are left for the
        rewound tasks to meet again. Returns whether outputs were refused."""
        refused = [f for f in self._producer.take_failures() if f.refused]
        if not refused:
            return False
        self.stale_limits.update(f.topic for f in refused if f.too_large)
        if not self._handles_refusals(refused):
            if raise_unhandled:
                self._raise_refused(refused)
            return True
        for failure in refused:
            assert failure.origin is not None
            record = (failure.key, failure.value, failure.timestamp, failure.headers)
            self._options.unproducible[failure.origin] = (self._refusal(failure, tasks), record)
        log.warning(
            "the broker refused %d output records; the transaction is aborted and their inputs "
            "go to the production error handler when read again",
            len(refused),
        )
        return True

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
        hint = "production_error_handler=skip or dead_letter handles refused sink records"
        if first.too_large and first.origin is None and first.topic.endswith(_CHANGELOG_SUFFIX):
            # Stores refuse updates too large for their changelogs as they are written: this
            # changelog's limit was lowered since the worker read it.
            hint = (
                "the changelog's max.message.bytes was lowered since this worker read it; a "
                "restart reads it again, and store updates over it then go to the production "
                "error handler"
            )
        raise BrokerError(
            f"the broker refused {len(failures)} output records, first to topic "
            f"{first.topic!r} partition {first.partition}{origin}: {first.reason}; their input "
            f"offsets were not committed, so a restart after the fix reprocesses them ({hint})",
            fatal=True,
        )

    def fail(self, tasks: Iterable[StreamTask], error: BrokerError | None = None) -> None:
        """Processing hit a broker error (a transaction that must be aborted, or, fatal, a
        fenced producer): forget everything since the last commit, as a failed commit does;
        the worker then rewinds its tasks."""
        task_list = list(tasks)
        self._last_tasks = task_list
        if self._exactly_once:
            self._remember_refused_outputs(task_list)
        self.abandon(error)
        for task in task_list:
            task.take_offsets()
            if self._exactly_once and task.stores is not None:
                task.stores.drop()

    def abandon(self, error: BrokerError | None = None) -> None:
        """Forget uncommitted work: under exactly-once, replace the producer; its successor
        aborts the open transaction (see the module docstring). `error`: why, when it is one."""
        if self._exactly_once and self._in_transaction:
            self._in_transaction = False
            # replace() served the delivery reports of what the old producer still held, so
            # they are not taken for failures of the next transaction.
            self._replace(
                f"the transaction failed: {error}" if error else "the transaction is abandoned",
                fenced=error if error is not None and error.fatal else None,
            )
            self._remember_refused_outputs(self._last_tasks, raise_unhandled=False)
        self._accounting.drop_pending()

    def _replace(self, reason: str, *, fenced: BrokerError | None = None) -> None:
        now = time.monotonic()
        if fenced is not None:
            self._fenced_at = [t for t in self._fenced_at if now - t < OUTAGE_LIMIT_S]
            if len(self._fenced_at) >= _MAX_FENCED:
                raise BrokerError(
                    f"the producer was fenced {len(self._fenced_at) + 1} times within "
                    f"{OUTAGE_LIMIT_S:.0f}s ({fenced}); is another worker using this "
                    "instance id?",
                    fatal=True,
                ) from fenced
            self._fenced_at.append(now)
        log.warning(
            "replacing the producer (%s): a new one with the same transactional id aborts the "
            "open transaction and fences the old one once the broker answers",
            reason,
        )
        self._producer.replace()
        self.producer_replacements += 1
        self._init_pending = True
        self._next_init_at = 0.0

    def _initialise(self, *, blocking: bool) -> None:
        """Initialise a replaced producer's transactions: one try, or (`blocking`) until that
        works; raises a fatal `BrokerError` after `OUTAGE_LIMIT_S` without the broker."""
        while self._init_pending:
            began = time.monotonic()
            try:
                self._producer.init_transactions(_INIT_TRY_S)
            except BrokerError as e:
                if e.fatal:
                    self._replace(f"initialising transactions failed: {e}", fenced=e)
                else:
                    self.broker.failed(began, "initialising the new producer's transactions", e)
                self._next_init_at = time.monotonic() + _INIT_INTERVAL_S
                if not blocking:
                    return
                time.sleep(max(0.0, began + 0.5 - time.monotonic()))
                continue
            self._init_pending = False
            log.info(
                "the new producer is initialised in %.2fs; transactions go on",
                time.monotonic() - began,
            )
            self.broker.answered()

    def close(self) -> None:
        if self._in_transaction:
            self.abandon()
        self._producer.flush(_TIMEOUT_S)
        self._raise_refused(self._producer.take_failures())
