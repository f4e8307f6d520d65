"""`GroupConsumer.commit` waits a bounded time for the group coordinator: librdkafka's own
synchronous commit waits as long as the broker is away."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from processor.errors import BrokerError
from processor.kafka.consumer import GroupConsumer


class StalledClient:
    """Stands in for the confluent_kafka consumer: commits wait until `answer` is set."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.committed: list[Any] = []

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        assert not asynchronous
        self.answer.wait(10)
        self.committed.append(offsets)

    def close(self) -> None:
        pass


@pytest.fixture
def stalled() -> Iterator[tuple[GroupConsumer, StalledClient]]:
    # A real client that never connects (nothing listens on port 1); its commits are faked.
    consumer = GroupConsumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "unused"})
    real = consumer._member  # the group member commits
    client = StalledClient()
    consumer._member = client
    yield consumer, client
    client.answer.set()
    consumer.close()
    real.close()


def test_a_commit_the_coordinator_does_not_answer_fails_after_its_timeout(
    stalled: tuple[GroupConsumer, StalledClient],
) -> None:
    consumer, client = stalled
    with pytest.raises(BrokerError, match="did not answer within") as excinfo:
        consumer.commit({("in", 0): 5}, timeout=0.2)
    assert not excinfo.value.fatal
    with pytest.raises(BrokerError, match="an earlier commit has been waiting"):
        consumer.commit({("in", 0): 7}, timeout=0.2)
    assert client.committed == []

    client.answer.set()  # the broker is back: the earlier commit goes through first
    consumer.commit({("in", 0): 9}, timeout=5)
    assert [[(tp.partition, tp.offset) for tp in c] for c in client.committed] == [
        [(0, 5)],
        [(0, 9)],
    ]


class RecordingClient:
    """Stands in for the confluent_kafka consumer: records pause, resume and assign calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []

    def _record(self, name: str, partitions: list[Any]) -> None:
        self.calls.append((name, [(tp.topic, tp.partition) for tp in partitions]))

    def pause(self, partitions: list[Any]) -> None:
        self._record("pause", partitions)

    def resume(self, partitions: list[Any]) -> None:
        self._record("resume", partitions)

    def assign(self, partitions: list[Any]) -> None:
        self._record("assign", partitions)

    def unassign(self) -> None:
        self._record("unassign", [])

    def close(self) -> None:
        pass


@pytest.mark.parametrize("change", ["assign", "unassign"])
def test_what_was_paused_is_resumed_before_the_assignment_changes(change: str) -> None:
    """librdkafka keeps a partition paused across assignments: one paused for backpressure and
    assigned again after a rebalance would never be fetched again."""
    consumer = GroupConsumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "unused"})
    real = consumer._fetcher  # what reads the source partitions
    client = RecordingClient()
    consumer._fetcher = client
    try:
        consumer.pause_only({("in", 1), ("in", 2)})
        if change == "assign":
            consumer.assign([("in", 1), ("in", 3)])
        else:
            consumer.unassign()
        assert client.calls[-2:] == [
            ("resume", [("in", 1), ("in", 2)]),
            (change, [("in", 1), ("in", 3)] if change == "assign" else []),
        ]
        consumer.pause_only(set())  # nothing is paused any more: nothing to resume
        assert client.calls[-1][0] == change
    finally:
        real.close()


def test_removing_partitions_never_added_stops_only_those_that_were() -> None:
    """A task closed while its state was restoring (a rebalance gives it away first) never had
    its partitions added; librdkafka refuses to unassign a partition it does not consume, and
    that refusal used to stop the worker."""
    consumer = GroupConsumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "unused"})
    fetcher = consumer._fetcher
    try:
        fetcher.incremental_assign([TopicPartition("in", 0, 0), TopicPartition("in", 1, 0)])

        consumer.remove([("in", 1), ("restoring", 4)])

        assert [(tp.topic, tp.partition) for tp in fetcher.assignment()] == [("in", 0)]
        consumer.remove([("restoring", 5)])  # nothing of it is consumed: nothing to do
        assert [(tp.topic, tp.partition) for tp in fetcher.assignment()] == [("in", 0)]
    finally:
        consumer.close()
