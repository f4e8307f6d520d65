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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from processor.errors import BrokerError
from processor.kafka.consumer import GroupConsumer
from processor.kafka.producer import OutputProducer
from processor.runtime.task import Partition, StreamTask

log = logging.getLogger("processor.commit")

_TIMEOUT_S = 30.0


class Committer:
    def __init__(
        self, producer: OutputProducer, consumer: GroupConsumer, *, exactly_once: bool
    ) -> None:
        self._producer = producer
        self._consumer = consumer
        self._exactly_once = exactly_once
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
            raise
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
        self._raise_delivery_failures()
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
            self.abandon()
            raise
        self._in_transaction = False
        self._raise_delivery_failures()
        self._checkpoint(tasks)

    def _raise_delivery_failures(self) -> None:
        failures = self._producer.failures
        if failures:
            first = failures[0]
            raise BrokerError(
                f"the broker refused {len(failures)} output records, first to topic "
                f"{first.topic!r} partition {first.partition}: {first.reason}; their input "
                "offsets were not committed, so a restart after the fix reprocesses them",
                fatal=True,
            )

    def abandon(self) -> None:
        """Forget uncommitted work: under exactly-once abort the open transaction."""
        if self._exactly_once and self._in_transaction:
            try:
                self._producer.abort_transaction(_TIMEOUT_S)
            except BrokerError as e:
                log.warning("aborting the transaction failed: %s", e)
            self._in_transaction = False

    def close(self) -> None:
        if self._in_transaction:
            self.abandon()
        self._producer.flush(_TIMEOUT_S)
        self._raise_delivery_failures()
