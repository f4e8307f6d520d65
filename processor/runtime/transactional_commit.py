"""The exactly-once commit: changelogs, outputs and source offsets in one Kafka transaction.

See `processor.runtime.commit` for the steps. Here: the transaction's lifecycle, and the
producer's. A failed transaction is aborted not by the producer that ran it but by a new one
with the same transactional id (`OutputProducer.replace`), whose `init_transactions()` bumps the
epoch, aborts the open transaction and fences the old producer; the new producer's
initialisation is tried again at every loop until the broker answers, and no transaction begins
before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from processor.errors import BrokerError
from processor.ids import Partition
from processor.runtime.broker_watch import OUTAGE_LIMIT_S
from processor.runtime.commit import TIMEOUT_S, Committer
from processor.runtime.refusals import raise_refused
from processor.runtime.task import StreamTask

__all__ = ["TransactionalCommitter"]

log = logging.getLogger("processor.commit")

# Adding the offsets is one request to each coordinator (librdkafka itself gives up on a
# transactional request after 10 s).
_SEND_OFFSETS_TIMEOUT_S = 10.0
# One try at initialising a replaced producer while the broker may be away; the worker's loop
# goes on between tries.
_INIT_TRY_S = 2.0
_INIT_INTERVAL_S = 1.0
# Producers found fenced (fatal) this many times within OUTAGE_LIMIT_S: another producer keeps
# using the transactional id.
_MAX_FENCED = 5


class TransactionalCommitter(Committer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_transaction = False
        # The producer was replaced and its init_transactions() has not succeeded yet; no
        # transaction begins before it has.
        self._init_pending = False
        self._next_init_at = 0.0
        self._fenced_at: list[float] = []

    def start(self) -> None:
        self._producer.init_transactions(TIMEOUT_S)
        super().start()

    def before_output(self) -> None:
        """Open the transaction (first waiting, within `OUTAGE_LIMIT_S`, until a replaced
        producer is initialised)."""
        if self._in_transaction:
            return
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
        if self._init_pending and time.monotonic() >= self._next_init_at:
            self._initialise(blocking=False)
        super().maybe_commit(tasks, interval_ms)

    def _commit(self, tasks: list[StreamTask], offsets: dict[Partition, int], began: float) -> None:
        if not self._in_transaction:
            if not offsets:
                return
            self.before_output()
        try:
            self._flush_stores(tasks)
            if offsets:
                self._producer.send_offsets_to_transaction(
                    offsets,
                    self._consumer.group_metadata(),
                    _SEND_OFFSETS_TIMEOUT_S,
                    self._metadata,
                )
            self._producer.commit_transaction(TIMEOUT_S)
        except BrokerError as e:
            # A refused record dooms the transaction but says nothing about the broker's health.
            if not self._refusals.remember(tasks) and not e.fatal:
                self.broker.failed(began, "a commit", e)
            self.abandon(e)
            raise
        self._in_transaction = False
        raise_refused(self._producer.take_failures())
        self._checkpoint(tasks)
        self._refusals.forget_handled(offsets)

    def _forget(
        self,
        tasks: list[StreamTask],
        offsets: dict[Partition, int],
        began: float,
        error: BrokerError,
    ) -> None:
        """The transaction is gone: drop the caches; the worker rewinds the tasks."""
        for task in tasks:
            if task.stores is not None:
                task.stores.drop()
        self._accounting.drop_pending()

    def _after_slow_commit(self, took: float) -> None:
        self._replace(
            f"it lived through {took:.1f}s without the broker, after which its next "
            "transaction may hang (confluentinc/librdkafka#5456)"
        )

    def fail(self, tasks: Iterable[StreamTask], error: BrokerError | None = None) -> None:
        task_list = list(tasks)
        self._last_tasks = task_list
        self._refusals.remember(task_list)
        super().fail(task_list, error)
        for task in task_list:
            if task.stores is not None:
                task.stores.drop()

    def abandon(self, error: BrokerError | None = None) -> None:
        """Forget uncommitted work and replace the producer; its successor aborts the open
        transaction (see the module docstring)."""
        if self._in_transaction:
            self._in_transaction = False
            # replace() served the delivery reports of what the old producer still held, so
            # they are not taken for failures of the next transaction.
            self._replace(
                f"the transaction failed: {error}" if error else "the transaction is abandoned",
                fenced=error if error is not None and error.fatal else None,
            )
            self._refusals.remember(self._last_tasks, raise_unhandled=False)
        super().abandon(error)

    def close(self) -> None:
        if self._in_transaction:
            self.abandon()
        super().close()

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
