"""The commit protocol, step by step, against recording fakes of the producer and consumer:
the order of the steps, and what each kind of failure leaves behind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from processor import Topology, serdes
from processor.errors import BrokerError
from processor.kafka.producer import DeliveryFailure
from processor.runtime.commit import Committer
from processor.runtime.task import StreamTask
from processor.runtime.task_id import TaskId
from processor.state.memory import InMemoryBackend
from processor.state.task_stores import TaskStores

CHANGELOG = "app-counts-changelog"


class FakeProducer:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.failures: list[DeliveryFailure] = []
        self.acknowledged: dict[tuple[str, int], int] = {}
        self.produced: list[tuple[str, bytes | None, bytes | None, int]] = []
        self.unacknowledged_on_flush = 0
        self.fail_commit: BrokerError | None = None
        self._next_offset = 0

    def produce(
        self, topic: str, key: Any, value: Any, ts: int, headers: Any, partition: int = -1
    ) -> None:
        self.calls.append(f"produce {topic}")
        self.produced.append((topic, key, value, partition))
        self.acknowledged[(topic, partition)] = self._next_offset
        self._next_offset += 1

    def take_failures(self) -> list[DeliveryFailure]:
        failures, self.failures = self.failures, []
        return failures

    def poll(self) -> None:
        pass

    def flush(self, timeout: float) -> int:
        self.calls.append("flush")
        return self.unacknowledged_on_flush

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init_transactions")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self.calls.append(f"send_offsets {dict(offsets)}")

    def commit_transaction(self, timeout: float) -> None:
        if self.fail_commit is not None:
            raise self.fail_commit
        self.calls.append("commit_transaction")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


class FakeConsumer:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def commit(self, offsets: Any) -> None:
        self.calls.append(f"commit_offsets {dict(offsets)}")

    def group_metadata(self) -> object:
        return object()


@dataclass
class Message:
    """A consumed record, as the task reads it."""

    _topic: str
    _offset: int
    _key: bytes
    _value: bytes

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, 1000)

    def headers(self) -> None:
        return None


def counting_task(producer: FakeProducer) -> tuple[StreamTask, InMemoryBackend]:
    topology = Topology("app")
    topology.stream("in", key_serde=serdes.StringSerde()).group_by_key().count(name="counts")
    [sub] = topology.subtopologies()
    backend = InMemoryBackend(["counts"])
    stores = TaskStores(backend, sub.stores, sub.changelog_topics, max_dirty_per_store=100)

    class Emitter:
        def emit(self, *args: Any) -> None:
            producer.produce(*args)

    task = StreamTask(TaskId(0, 2), sub, Emitter())
    task.start(stores)
    return task, backend


def feed(task: StreamTask, *keys: str, first_offset: int = 0) -> None:
    for i, key in enumerate(keys):
        task.process(Message("in", first_offset + i, key.encode(), b"x"))


def stored(backend: InMemoryBackend) -> dict[bytes, bytes]:
    return dict(backend.range("counts"))


def test_at_least_once_steps_in_order() -> None:
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer = Committer(producer, FakeConsumer(calls), exactly_once=False)  # type: ignore[arg-type]
    task, backend = counting_task(producer)
    feed(task, "a", "a", "b")
    committer.commit([task])
    assert calls == [
        f"produce {CHANGELOG}",
        f"produce {CHANGELOG}",
        "flush",
        "commit_offsets {('in', 2): 3}",
    ]
    # each dirty key once, to the task's own changelog partition, latest value
    assert [(p[1], p[3]) for p in producer.produced] == [(b"a", 2), (b"b", 2)]
    assert stored(backend) == {b"a": (2).to_bytes(8, "big"), b"b": (1).to_bytes(8, "big")}
    assert backend.offsets() == {CHANGELOG: 1}


def test_at_least_once_unacknowledged_outputs_commit_nothing_and_retry_later() -> None:
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer = Committer(producer, FakeConsumer(calls), exactly_once=False)  # type: ignore[arg-type]
    task, backend = counting_task(producer)
    feed(task, "a")
    producer.unacknowledged_on_flush = 1
    with pytest.raises(BrokerError) as excinfo:
        committer.commit([task])
    assert not excinfo.value.fatal
    assert not any(c.startswith("commit_offsets") for c in calls)
    assert stored(backend) == {}, "nothing checkpointed before the broker has it"

    producer.unacknowledged_on_flush = 0
    calls.clear()
    committer.commit([task])
    assert calls[-1] == "commit_offsets {('in', 2): 1}", "the offsets were kept for the retry"
    assert stored(backend) == {b"a": (1).to_bytes(8, "big")}


def test_refused_records_stop_the_worker_before_offsets_are_committed() -> None:
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer = Committer(producer, FakeConsumer(calls), exactly_once=False)  # type: ignore[arg-type]
    task, _ = counting_task(producer)
    feed(task, "a")
    producer.failures.append(DeliveryFailure("out", 0, "MSG_SIZE_TOO_LARGE"))
    with pytest.raises(BrokerError, match=r"topic 'out' partition 0: MSG_SIZE_TOO_LARGE") as e:
        committer.commit([task])
    assert e.value.fatal
    assert not any(c.startswith("commit_offsets") for c in calls)


def test_exactly_once_checkpoints_only_after_the_transaction_committed() -> None:
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer = Committer(producer, FakeConsumer(calls), exactly_once=True)  # type: ignore[arg-type]
    committer.start()
    task, backend = counting_task(producer)
    committer.before_output()
    feed(task, "a", "b")
    committer.commit([task])
    assert calls == [
        "init_transactions",
        "begin",
        f"produce {CHANGELOG}",
        f"produce {CHANGELOG}",
        "send_offsets {('in', 2): 2}",
        "commit_transaction",
    ]
    assert stored(backend) == {b"a": (1).to_bytes(8, "big"), b"b": (1).to_bytes(8, "big")}


def test_a_failed_transaction_aborts_and_drops_the_caches() -> None:
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer = Committer(producer, FakeConsumer(calls), exactly_once=True)  # type: ignore[arg-type]
    committer.start()
    task, backend = counting_task(producer)
    committer.before_output()
    feed(task, "a")
    committer.commit([task])
    committer.before_output()
    feed(task, "a", "c", first_offset=1)
    producer.fail_commit = BrokerError("committing the transaction failed: INVALID_PRODUCER_EPOCH")
    with pytest.raises(BrokerError):
        committer.commit([task])
    assert calls[-2:] == ["abort", "flush"]  # the flush serves the purged records' reports
    # local state is the last committed state: the aborted updates are gone from the stores
    assert stored(backend) == {b"a": (1).to_bytes(8, "big")}
    assert task.stores is not None
    assert task.stores.stores["counts"].get("a") == 1
    assert task.stores.stores["counts"].get("c") is None
