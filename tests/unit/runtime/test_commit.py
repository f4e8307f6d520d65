"""The commit protocol, step by step, against recording fakes of the producer and consumer:
the order of the steps, and what each kind of failure leaves behind (a broker outage
included)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from processor import Topology, serdes
from processor.errors import BrokerError
from processor.ids import TaskId
from processor.kafka.producer import DeliveryFailure
from processor.runtime import commit as commit_module
from processor.runtime.broker_watch import BrokerWatch
from processor.runtime.commit import Committer, make_committer
from processor.runtime.task import StreamTask
from processor.state.budget import MemoryBudget
from processor.state.memory import InMemoryBackend
from processor.state.task_stores import TaskStores
from processor.windows import TumblingWindows

CHANGELOG = "app-counts-changelog"


class FakeProducer:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.failures: list[DeliveryFailure] = []
        # the next offset of every partition written to (a single log for all of them)
        self.ends: dict[tuple[str, int], int] = {}
        self.produced: list[tuple[str, bytes | None, bytes | None, int]] = []
        self.unacknowledged_on_flush = 0
        self.fail_commit: BrokerError | None = None
        # raised by the next init_transactions() calls, in order
        self.fail_init: list[BrokerError] = []
        # delivery reports the old client serves when it is replaced
        self.failures_on_replace: list[DeliveryFailure] = []
        self.commit_seconds = 0.0
        self._next_offset = 0

    def produce(
        self, topic: str, key: Any, value: Any, ts: int, headers: Any, partition: int = -1
    ) -> None:
        self.calls.append(f"produce {topic}")
        self.produced.append((topic, key, value, partition))
        self._next_offset += 1
        self.ends[(topic, partition)] = self._next_offset

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
        if self.fail_init:
            raise self.fail_init.pop(0)

    def replace(self) -> None:
        self.calls.append("replace")
        self.failures.extend(self.failures_on_replace)
        self.failures_on_replace = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(
        self, offsets: Any, metadata: Any, timeout: float, notes: Any = None
    ) -> None:
        self.calls.append(f"send_offsets {dict(offsets)}")

    def commit_transaction(self, timeout: float) -> None:
        time.sleep(self.commit_seconds)
        if self.fail_commit is not None:
            raise self.fail_commit
        self.calls.append("commit_transaction")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


class FakeConsumer:
    def __init__(self, calls: list[str], producer: FakeProducer) -> None:
        self.calls = calls
        self.producer = producer

    def end_offsets(self, partitions: Any, timeout: float) -> dict[tuple[str, int], int]:
        return {p: self.producer.ends[p] for p in partitions if p in self.producer.ends}

    def commit(self, offsets: Any, metadata: Any = None) -> None:
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
    timestamp_ms: int = 1000

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
        return (1, self.timestamp_ms)

    def headers(self) -> None:
        return None


def counting_task(producer: FakeProducer) -> tuple[StreamTask, InMemoryBackend]:
    topology = Topology("app")
    topology.stream("in", key_serde=serdes.StringSerde()).group_by_key().count(name="counts")
    [sub] = topology.subtopologies()
    backend = InMemoryBackend(["counts"])
    stores = TaskStores(backend, sub.stores, sub.changelog_topics, memory=MemoryBudget(1 << 20))

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
    committer = make_committer(producer, FakeConsumer(calls, producer), exactly_once=False)  # type: ignore[arg-type]
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
    committer = make_committer(producer, FakeConsumer(calls, producer), exactly_once=False)  # type: ignore[arg-type]
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
    committer = make_committer(producer, FakeConsumer(calls, producer), exactly_once=False)  # type: ignore[arg-type]
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
    committer = make_committer(producer, FakeConsumer(calls, producer), exactly_once=True)  # type: ignore[arg-type]
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


def exactly_once() -> tuple[list[str], FakeProducer, Committer, StreamTask, InMemoryBackend]:
    """A committer and a counting task that has committed one record (key "a")."""
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer = make_committer(producer, FakeConsumer(calls, producer), exactly_once=True)  # type: ignore[arg-type]
    committer.start()
    task, backend = counting_task(producer)
    committer.before_output()
    feed(task, "a")
    committer.commit([task])
    return calls, producer, committer, task, backend


def test_a_failed_transaction_replaces_the_producer_and_drops_the_caches() -> None:
    calls, producer, committer, task, backend = exactly_once()
    committer.before_output()
    feed(task, "a", "c", first_offset=1)
    producer.fail_commit = BrokerError("committing the transaction failed: INVALID_PRODUCER_EPOCH")
    # what the old client still held fails when it is replaced: not the records' fault
    producer.failures_on_replace = [DeliveryFailure("out", 2, "Local: Purged in queue")]
    with pytest.raises(BrokerError) as excinfo:
        committer.commit([task])
    assert not excinfo.value.fatal, "the worker rewinds its tasks"
    assert calls[-1] == "replace"
    assert committer.producer_replacements == 1
    assert producer.failures == [], "taken, so not blamed on the next transaction"
    # local state is the last committed state: the aborted updates are gone from the stores
    assert stored(backend) == {b"a": (1).to_bytes(8, "big")}
    assert task.stores is not None
    assert task.stores.stores["counts"].get("a") == 1
    assert task.stores.stores["counts"].get("c") is None

    # The new producer's init_transactions() aborts the transaction (bumping the epoch) before
    # the next one begins.
    producer.fail_commit = None
    calls.clear()
    committer.before_output()
    assert calls == ["init_transactions", "begin"]


def test_while_the_broker_is_away_no_transaction_begins_before_the_new_producer_is_ready() -> None:
    calls, producer, committer, task, _ = exactly_once()
    committer.before_output()
    feed(task, "b", first_offset=1)
    producer.fail_commit = BrokerError("adding offsets to the transaction failed: _TIMED_OUT")
    producer.fail_init = [BrokerError("initialising transactions failed: _TIMED_OUT")] * 3
    with pytest.raises(BrokerError) as excinfo:
        committer.commit([task])
    assert not excinfo.value.fatal
    assert not committer.broker.reachable
    assert committer.broker.unreachable_for() > 0

    committer.maybe_commit([], 1000)  # the loop goes on: one try to initialise, no wait
    assert calls[-1] == "init_transactions"
    assert committer.broker.errors == 2, "the commit, and one initialisation"

    producer.fail_commit = None
    calls.clear()
    committer.before_output()  # waits until the broker answers
    assert calls == ["init_transactions", "init_transactions", "init_transactions", "begin"]
    assert committer.broker.reachable
    assert committer.broker.errors == 4
    feed(task, "b", first_offset=1)
    committer.commit([task])
    assert calls[-1] == "commit_transaction"


def test_a_commit_that_waited_for_the_broker_replaces_the_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls, producer, committer, task, backend = exactly_once()
    monkeypatch.setattr(commit_module, "SLOW_COMMIT_S", 0.05)
    committer.before_output()
    feed(task, "b", first_offset=1)
    producer.commit_seconds = 0.1  # the broker was away meanwhile
    committer.commit([task])
    assert calls[-2:] == ["commit_transaction", "replace"]
    assert stored(backend)[b"b"] == (1).to_bytes(8, "big"), "committed all the same"

    calls.clear()
    producer.commit_seconds = 0.0
    committer.before_output()
    assert calls == ["init_transactions", "begin"]


def test_a_fenced_producer_is_replaced_and_the_tasks_rewind() -> None:
    calls, producer, committer, task, _ = exactly_once()
    committer.before_output()
    feed(task, "b", first_offset=1)
    producer.fail_commit = BrokerError("committing the transaction failed: _FENCED", fatal=True)
    with pytest.raises(BrokerError, match="the producer was replaced") as excinfo:
        committer.commit([task])
    assert not excinfo.value.fatal
    assert calls[-1] == "replace"
    assert committer.broker.reachable, "the broker answered: it fenced the producer"


def test_a_producer_fenced_again_and_again_stops_the_worker() -> None:
    _, producer, committer, task, _ = exactly_once()
    producer.fail_commit = BrokerError("committing the transaction failed: _FENCED", fatal=True)
    for offset in range(1, 6):
        committer.before_output()
        feed(task, "b", first_offset=offset)
        with pytest.raises(BrokerError) as excinfo:
            committer.commit([task])
        assert not excinfo.value.fatal
    committer.before_output()
    feed(task, "b", first_offset=6)
    with pytest.raises(BrokerError, match="another worker using this instance id") as excinfo:
        committer.commit([task])
    assert excinfo.value.fatal


def test_a_broker_error_while_processing_replaces_the_producer() -> None:
    calls, _, committer, task, backend = exactly_once()
    committer.before_output()
    feed(task, "a", first_offset=1)
    # produce() raised: the transaction failed (e.g. across an outage) and must be aborted
    committer.fail([task], BrokerError("producing to 'out' failed: Local: Erroneous state"))
    assert calls[-1] == "replace"
    assert task.take_offsets() == {}
    assert stored(backend) == {b"a": (1).to_bytes(8, "big")}


def test_the_broker_watch_says_when_the_broker_is_back_and_gives_up_after_its_limit() -> None:
    watch = BrokerWatch(limit_s=60.0)
    watch.failed(time.monotonic() - 5.0, "a commit", BrokerError("_TIMED_OUT"))
    assert not watch.reachable and watch.unreachable_for() >= 5.0
    watch.answered()
    assert watch.reachable and watch.unreachable_for() == 0.0 and watch.errors == 1
    with pytest.raises(BrokerError, match="taken no request for 61s") as excinfo:
        watch.failed(time.monotonic() - 61.0, "a commit", BrokerError("_TIMED_OUT"))
    assert excinfo.value.fatal


def test_at_least_once_records_lost_in_an_outage_stop_the_worker() -> None:
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer = make_committer(producer, FakeConsumer(calls, producer), exactly_once=False)  # type: ignore[arg-type]
    task, _ = counting_task(producer)
    feed(task, "a")
    producer.failures.append(DeliveryFailure("out", 0, "Local: Message timed out"))
    with pytest.raises(BrokerError, match=r"message\.timeout\.ms") as excinfo:
        committer.commit([task])
    assert excinfo.value.fatal
    assert not any(c.startswith("commit_offsets") for c in calls)


def test_at_least_once_with_final_windows_flushes_the_results_before_the_changelog() -> None:
    """A window store records which windows were emitted: that record must not reach the broker
    before the results, or a restart after a crash in between would never write them."""
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer = make_committer(producer, FakeConsumer(calls, producer), exactly_once=False)  # type: ignore[arg-type]
    topology = Topology("app")
    (
        topology.stream("in", key_serde=serdes.StringSerde())
        .group_by_key()
        .windowed_by(TumblingWindows(size_ms=10), emit="final")
        .count(name="w")
        .to_stream()
        .to("out")
    )
    [sub] = topology.subtopologies()
    stores = TaskStores(
        InMemoryBackend(["w"]), sub.stores, sub.changelog_topics, memory=MemoryBudget(1 << 20)
    )

    class Emitter:
        def emit(self, *args: Any) -> None:
            producer.produce(*args[:5])

    task = StreamTask(TaskId(0, 2), sub, Emitter())
    task.start(stores)
    task.process(Message("in", 0, b"a", b"x", timestamp_ms=5))
    task.process(Message("in", 1, b"b", b"x", timestamp_ms=20))  # [0, 10) closes: "a" out
    committer.commit([task])
    first_changelog = calls.index("produce app-w-changelog")
    assert calls.index("produce out") < calls.index("flush") < first_changelog
    assert calls[first_changelog:].count("flush") == 1  # and the changelog flushed after


def _checked_committer(
    producer: FakeProducer, calls: list[str], owner: bool | None
) -> tuple[Committer, list[str]]:
    """An at-least-once committer that checks every task's changelog at every commit, reading
    keys from what the fake producer holds; `owner` is what the group says."""
    from processor.runtime import changelog_check

    committer = make_committer(producer, FakeConsumer(calls, producer), exactly_once=False)  # type: ignore[arg-type]
    check = committer.changelog_check  # type: ignore[attr-defined]
    asked: list[str] = []

    def read_keys(partition: tuple[str, int], first: int, end: int) -> set[bytes]:
        asked.append(f"{partition} {first}-{end}")
        return {key for key, *_ in _records(producer, partition)[first:end]}

    def confirm_owner() -> bool | None:
        asked.append("owner?")
        return owner

    check.read_keys, check.confirm_owner = read_keys, confirm_owner
    changelog_check.FULL_CHECK_INTERVAL_S = 0.0
    return committer, asked


def _records(producer: FakeProducer, partition: tuple[str, int]) -> list[tuple[Any, Any]]:
    return [(key, value) for topic, key, value, p in producer.produced if (topic, p) == partition]


@pytest.fixture
def restore_full_check_interval() -> Any:
    from processor.runtime import changelog_check

    before = changelog_check.FULL_CHECK_INTERVAL_S
    yield
    changelog_check.FULL_CHECK_INTERVAL_S = before


@pytest.mark.usefixtures("restore_full_check_interval")
def test_at_least_once_writes_the_owners_values_again_over_another_workers_records() -> None:
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer, asked = _checked_committer(producer, calls, owner=True)
    task, backend = counting_task(producer)
    feed(task, "a", "a", "b")
    committer.commit([task])
    assert asked == [], "only the owner wrote"
    # A replaced worker's producer sends what it held when it stopped: a stale count of "a"
    # and a key this task never had.
    for key in (b"a", b"z"):
        producer.produce(CHANGELOG, key, (1).to_bytes(8, "big"), 0, None, 2)
    committer.commit([task])  # idle: nothing new to flush, checked all the same
    assert asked == ["owner?", f"{(CHANGELOG, 2)} 2-4"]
    latest = dict(_records(producer, (CHANGELOG, 2)))
    assert latest == {b"a": (2).to_bytes(8, "big"), b"b": (1).to_bytes(8, "big"), b"z": None}
    assert stored(backend) == {b"a": (2).to_bytes(8, "big"), b"b": (1).to_bytes(8, "big")}

    asked.clear()
    committer.commit([task])
    assert asked == [], "the owner's own repair is not taken for another worker's records"


@pytest.mark.usefixtures("restore_full_check_interval")
@pytest.mark.parametrize("owner", [False, None])
def test_at_least_once_a_worker_that_is_no_longer_the_owner_writes_nothing_over_them(
    owner: bool | None,
) -> None:
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer, asked = _checked_committer(producer, calls, owner=owner)
    task, _ = counting_task(producer)
    feed(task, "a")
    committer.commit([task])
    producer.produce(CHANGELOG, b"a", (7).to_bytes(8, "big"), 0, None, 2)  # the new owner's
    feed(task, "a", first_offset=1)
    calls.clear()
    with pytest.raises(BrokerError, match="hold records of another worker"):
        committer.commit([task])
    assert asked == ["owner?"]
    assert not any(c.startswith("commit_offsets") for c in calls)
    # Its flush before the check is all it wrote; the new owner's check repairs that one.
    assert _records(producer, (CHANGELOG, 2))[2:] == [(b"a", (2).to_bytes(8, "big"))]


@pytest.mark.parametrize("exactly_once", [False, True])
def test_the_next_periodic_commit_comes_a_whole_interval_after_any_commit(
    exactly_once: bool,
) -> None:
    """A commit made for another reason (a task let go at a rebalance, a full cache) puts the
    next periodic one a whole interval later: back to back, the two would stop every task for
    both (the longest output gap of a task that kept its owner at a rebalance)."""
    calls: list[str] = []
    producer = FakeProducer(calls)
    committer = make_committer(producer, FakeConsumer(calls, producer), exactly_once=exactly_once)  # type: ignore[arg-type]
    committer.start()
    task, _ = counting_task(producer)

    def commits() -> int:
        done = committer.commits
        committer.before_output()
        feed(task, "a", first_offset=task_offset[0])
        task_offset[0] += 1
        committer.maybe_commit([task], 1000)
        return committer.commits - done

    task_offset = [0]
    assert commits() == 1, "the first periodic commit is due at once"
    time.sleep(1.05)
    committer.before_output()
    committer.commit([task])  # a commit the interval did not ask for
    assert commits() == 0, "the periodic one that was due waits a whole interval"
    time.sleep(0.4)
    assert commits() == 0
    time.sleep(0.65)
    assert commits() == 1
