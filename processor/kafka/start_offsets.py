"""Where the partitions a worker starts consuming begin: the group's committed offsets, and the
leaders of their topics, read ahead of the start where the runtime can.

Starting a task's partitions (`GroupConsumer.add`) needs two broker round trips: the group's
committed offsets (an OffsetFetch to the coordinator) and, for a topic the fetcher has no
metadata for yet, a metadata request (without it the first fetch waits for librdkafka's
once-a-second scan of unknown topics). Made when the task starts, on the main loop, they stop
every other task of the worker for their time (100-400 ms on a busy machine, during the
rebalance that gave the task). A gained task usually restores its state first: `prefetch()`
asks both on a thread of its own as soon as the task is created, and `read()` takes the answers
when the task starts, waiting only for what has not come yet.

Reading ahead is exact because of when it starts: a task is created only once no other worker
claims it (`processor.runtime.handover`), i.e. after its previous owner's last commit, and no
one commits for it meanwhile but its new owner, which has not started it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from processor.background_call import in_background
from processor.ids import Partition

__all__ = ["Committed", "StartOffsets"]

Committed = tuple[int, str | None]
"""A partition's committed offset (-1: none) and the metadata committed with it."""

# Answers of a group coordinator that is moving or still loading: asking again soon succeeds.
_COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
# How long a read ahead may take: a task that starts after that reads for itself.
_PREFETCH_TIMEOUT_S = 30.0


class Fetcher(Protocol):
    """What is asked of the fetching `confluent_kafka.Consumer` here."""

    def committed(
        self, partitions: list[TopicPartition], timeout: float
    ) -> list[TopicPartition]: ...
    def list_topics(self, topic: str, timeout: float) -> object: ...


class StartOffsets:
    """Committed offsets and topic metadata for the partitions of `fetcher` about to start."""

    def __init__(self, fetcher: Fetcher) -> None:
        self._fetcher = fetcher
        self._ahead: dict[Partition, Future[dict[Partition, Committed]]] = {}
        self._topics_known: set[str] = set()

    def prefetch(self, partitions: Iterable[Partition]) -> None:
        """Start reading the committed offsets of `partitions` (and their topics' leaders) in
        the background, for a `read()` to come."""
        todo = sorted({p for p in partitions if p not in self._ahead})
        if not todo:
            return
        # A failure is kept in the future: read() reads those partitions again itself.
        future = in_background(
            lambda: self._read_now(todo, _PREFETCH_TIMEOUT_S), "processor-start-offsets"
        )
        for partition in todo:
            self._ahead[partition] = future

    def forget(self, partitions: Iterable[Partition] | None = None) -> None:
        """Drop what was read ahead for `partitions` (None: all): their tasks closed, and a later
        owner's commits may change them."""
        if partitions is None:
            self._ahead.clear()
            return
        for partition in partitions:
            self._ahead.pop(partition, None)

    def read(self, partitions: Sequence[Partition], timeout: float) -> dict[Partition, Committed]:
        """The committed offsets of `partitions`, their topics' leaders known to the fetcher:
        what was read ahead (waited for if still on its way), the rest read now. Raises
        `KafkaException`."""
        found: dict[Partition, Committed] = {}
        deadline = time.monotonic() + timeout
        for future in {id(f): f for p in partitions if (f := self._ahead.get(p))}.values():
            try:
                answer = future.result(max(0.0, deadline - time.monotonic()))
            except Exception:
                continue
            found.update((p, c) for p, c in answer.items() if p in partitions)
        self.forget(partitions)
        missing = [p for p in partitions if p not in found]
        if missing:
            found.update(self._read_now(missing, max(0.1, deadline - time.monotonic())))
        return found

    def learn_leaders(self, topics: Iterable[str], timeout: float) -> None:
        """Make the fetcher ask for the metadata of those of `topics` it has not been asked
        for yet. Raises `KafkaException`."""
        for topic in sorted(set(topics) - self._topics_known):
            self._fetcher.list_topics(topic, timeout)
            self._topics_known.add(topic)

    def _read_now(self, partitions: list[Partition], timeout: float) -> dict[Partition, Committed]:
        committed = {
            (tp.topic, tp.partition): (tp.offset, tp.metadata)
            for tp in self._committed([TopicPartition(t, p) for t, p in partitions], timeout)
        }
        self.learn_leaders({t for t, _ in partitions}, timeout)
        return committed

    def _committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        """The group's committed offsets of `partitions`. The fetcher is no group member, so its
        first request may find the group's coordinator still moving or loading: those answers
        are retried until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._fetcher.committed(partitions, timeout)
            except KafkaException as e:
                error = e.args[0]
                moving = error.code() in _COORDINATOR_MOVING or error.retriable()
                if not moving or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
