"""`StartOffsets`: a task's committed offsets and topic metadata are read while it restores, so
that starting it costs the main loop no broker round trip; what was not read ahead, or failed,
is read when the task starts."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from processor.kafka.start_offsets import StartOffsets


class Fetcher:
    """Stands in for the fetching consumer: committed offsets from `offsets`, each request
    recorded; `gate` holds requests until set; `failures` fail the next requests."""

    def __init__(self, offsets: dict[tuple[str, int], int]) -> None:
        self.offsets = offsets
        self.asked: list[list[tuple[str, int]]] = []
        self.listed: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.failures = 0

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.gate.wait(timeout)
        self.asked.append([(tp.topic, tp.partition) for tp in partitions])
        if self.failures:
            self.failures -= 1
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return [
            TopicPartition(tp.topic, tp.partition, self.offsets.get((tp.topic, tp.partition), -1))
            for tp in partitions
        ]

    def list_topics(self, topic: str, timeout: float) -> object:
        self.listed.append(topic)
        return object()


def test_offsets_read_ahead_are_used_when_the_task_starts() -> None:
    fetcher = Fetcher({("in", 0): 42, ("in", 1): 7})
    starts = StartOffsets(fetcher)
    fetcher.gate.clear()  # the broker answers only once the task starts

    starts.prefetch([("in", 0), ("in", 1)])
    fetcher.gate.set()
    found = starts.read([("in", 0), ("in", 1)], timeout=5)

    assert found == {("in", 0): (42, None), ("in", 1): (7, None)}
    assert fetcher.asked == [[("in", 0), ("in", 1)]], "one request, made ahead"
    assert fetcher.listed == ["in"]


def test_what_was_not_read_ahead_or_failed_is_read_at_the_start() -> None:
    fetcher = Fetcher({("in", 0): 42, ("other", 3): 9})
    starts = StartOffsets(fetcher)
    fetcher.failures = 1
    starts.prefetch([("in", 0)])

    found = starts.read([("in", 0), ("other", 3)], timeout=5)

    assert found == {("in", 0): (42, None), ("other", 3): (9, None)}
    assert sorted(map(sorted, fetcher.asked)) == [[("in", 0)], [("in", 0), ("other", 3)]]


def test_a_forgotten_read_ahead_is_not_used() -> None:
    """A task closed before it started (given away while restoring): a later owner's commits
    may move its offsets, so the next start reads them again."""
    fetcher = Fetcher({("in", 0): 42})
    starts = StartOffsets(fetcher)
    starts.prefetch([("in", 0)])
    starts.read([], timeout=5)  # nothing asked: the read ahead stays
    starts.forget([("in", 0)])
    fetcher.offsets[("in", 0)] = 50

    assert starts.read([("in", 0)], timeout=5) == {("in", 0): (50, None)}


def test_a_read_that_keeps_failing_raises() -> None:
    fetcher = Fetcher({})
    fetcher.failures = 100
    starts = StartOffsets(fetcher)
    with pytest.raises(KafkaException):
        starts.read([("in", 0)], timeout=0.3)
