"""Restoring a task's stores from its changelog partitions on a real broker: from scratch, only
the tail, a checkpoint that does not fit the changelog, transactions, removal mid-restore and
failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from processor.errors import BrokerError
from processor.ids import TaskId
from processor.kafka.changelog_reader import ChangelogReader
from processor.state.backend import Change, TaskStateBackend
from processor.state.memory import InMemoryBackend
from processor.state.restore import RestoreError, Restorer, RestoreState
from processor.state.rocksdb import open_rocksdb, wipe
from tests.kafka_helpers import create_topic, produce

STORE = "counts"
TASK = TaskId(0, 0)
COMPACTED = {"cleanup.policy": "compact"}

Records = list[tuple[bytes, bytes | None]]
BackendFactory = Callable[[], TaskStateBackend]
RestorerFactory = Callable[..., Restorer]


class Calls:
    """A `RestoreListener` that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def on_restore_start(self, task_id: TaskId, topic: str, start: int, end: int) -> None:
        self.calls.append(("start", task_id, topic, start, end))

    def on_batch_restored(self, task_id: TaskId, topic: str, last_offset: int, count: int) -> None:
        self.calls.append(("batch", task_id, topic, last_offset, count))

    def on_restore_end(self, task_id: TaskId, topic: str, total: int) -> None:
        self.calls.append(("end", task_id, topic, total))


def _records(prefix: str, count: int, keys: int, tombstone_every: int = 7) -> Records:
    """`count` updates of `keys` keys; every `tombstone_every`-th one deletes its key."""
    return [
        (
            f"{prefix}-key-{i % keys:04d}".encode(),
            None if i % tombstone_every == tombstone_every - 1 else f"{prefix}-v{i}".encode(),
        )
        for i in range(count)
    ]


def _latest(records: Records, into: dict[bytes, bytes] | None = None) -> dict[bytes, bytes]:
    state = dict(into or {})
    for key, value in records:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def _content(backend: TaskStateBackend) -> dict[bytes, bytes]:
    return dict(backend.range(STORE))


def _wait_completed(restorer: Restorer, task_id: TaskId, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        restorer.raise_if_failed()
        if task_id in restorer.completed():
            return
        time.sleep(0.01)
    raise TimeoutError(f"task {task_id} not restored after {timeout}s: {restorer.progress()}")


@pytest.fixture(params=["memory", "rocksdb"])
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendFactory]:
    opened: list[TaskStateBackend] = []

    def make() -> TaskStateBackend:
        backend: TaskStateBackend
        if request.param == "memory":
            backend = InMemoryBackend([STORE])
        else:
            backend = open_rocksdb(tmp_path / f"task-{len(opened)}", [STORE])
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        backend.close()


@pytest.fixture
def restorer_factory(kafka_bootstrap: str, unique_name: str) -> Iterator[RestorerFactory]:
    """`make(wipe_callback=..., read_committed=False, **restorer_kwargs)`; closed at the end."""
    made: list[Restorer] = []

    def never_wipe(task_id: TaskId, reason: str) -> TaskStateBackend:
        raise AssertionError(f"unexpected wipe of task {task_id}: {reason}")

    def make(
        *,
        wipe_callback: Callable[[TaskId, str], TaskStateBackend] = never_wipe,
        read_committed: bool = False,
        **kwargs: object,
    ) -> Restorer:
        reader = ChangelogReader(
            {"bootstrap.servers": kafka_bootstrap},
            group_id=f"{unique_name}-restore-{len(made)}",
            read_committed=read_committed,
        )
        restorer = Restorer(reader, wipe_callback=wipe_callback, **kwargs)  # type: ignore[arg-type]
        made.append(restorer)
        return restorer

    yield make
    for restorer in made:
        restorer.close()


def test_restores_its_own_partition_then_only_the_tail(
    kafka_bootstrap: str,
    unique_name: str,
    backend_factory: BackendFactory,
    restorer_factory: RestorerFactory,
) -> None:
    topic = f"{unique_name}-changelog"
    create_topic(kafka_bootstrap, topic, 2, config=COMPACTED)
    mine = _records("p0", 3000, keys=500)
    produce(kafka_bootstrap, topic, mine, partition=0)
    produce(kafka_bootstrap, topic, _records("p1", 1000, keys=100), partition=1)
    listener = Calls()
    restorer = restorer_factory(listener=listener, batch_size=700)
    backend = backend_factory()

    restorer.add(TASK, backend, {STORE: topic})
    _wait_completed(restorer, TASK)

    assert _content(backend) == _latest(mine)
    assert backend.offsets() == {topic: len(mine) - 1}
    assert restorer.records_read(TASK) == len(mine)
    assert listener.calls[0] == ("start", TASK, topic, 0, len(mine))
    assert listener.calls[-1] == ("end", TASK, topic, len(mine))
    batches = [c for c in listener.calls if c[0] == "batch"]
    assert len(batches) >= len(mine) // 700
    assert batches[-1][3] == len(mine) - 1
    assert restorer.progress() == {}

    tail = _records("tail", 250, keys=600, tombstone_every=5)
    produce(kafka_bootstrap, topic, tail, partition=0)
    restorer.add(TASK, backend, {STORE: topic})
    _wait_completed(restorer, TASK)

    assert restorer.records_read(TASK) == len(mine) + len(tail), "read more than the tail"
    assert _content(backend) == _latest(tail, _latest(mine))
    assert backend.offsets() == {topic: len(mine) + len(tail) - 1}

    # Up to date: completes at once, without reading.
    restorer.add(TASK, backend, {STORE: topic})
    _wait_completed(restorer, TASK)
    assert restorer.records_read(TASK) == len(mine) + len(tail)


class Unreachable(ChangelogReader):
    """A reader for which the broker does not answer the first `failures` offset requests."""

    failures = 2

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        if self.failures:
            self.failures -= 1
            raise BrokerError(f"reading the offsets of changelog {topic}[{partition}] timed out")
        return super().watermarks(topic, partition, timeout)


def test_a_restore_waits_for_the_broker_to_answer(
    kafka_bootstrap: str, unique_name: str, backend_factory: BackendFactory
) -> None:
    topic = f"{unique_name}-changelog"
    create_topic(kafka_bootstrap, topic, 1, config=COMPACTED)
    records = _records("p0", 100, keys=20)
    produce(kafka_bootstrap, topic, records, partition=0)
    reader = Unreachable(
        {"bootstrap.servers": kafka_bootstrap}, group_id=unique_name, read_committed=False
    )
    restorer = Restorer(reader, wipe_callback=_never_wipe, retry_interval=0.05)
    try:
        backend = backend_factory()
        restorer.add(TASK, backend, {STORE: topic})
        _wait_completed(restorer, TASK)
        assert reader.failures == 0
        assert _content(backend) == _latest(records)
    finally:
        restorer.close()


def _never_wipe(task_id: TaskId, reason: str) -> TaskStateBackend:
    raise AssertionError(f"unexpected wipe of task {task_id}: {reason}")


def test_a_task_with_two_changelogs_completes_when_both_end(
    kafka_bootstrap: str, unique_name: str, restorer_factory: RestorerFactory
) -> None:
    first, second = f"{unique_name}-a-changelog", f"{unique_name}-b-changelog"
    for topic in (first, second):
        create_topic(kafka_bootstrap, topic, 2, config=COMPACTED)
    task = TaskId(1, 1)
    produce(kafka_bootstrap, first, _records("a", 400, keys=50), partition=1)
    produce(kafka_bootstrap, second, _records("b", 10, keys=5), partition=1)
    backend = InMemoryBackend(["a", "b", "empty"])
    empty = f"{unique_name}-empty-changelog"
    create_topic(kafka_bootstrap, empty, 2, config=COMPACTED)
    restorer = restorer_factory()

    restorer.add(task, backend, {"a": first, "b": second, "empty": empty})
    _wait_completed(restorer, task)

    assert dict(backend.range("a")) == _latest(_records("a", 400, keys=50))
    assert dict(backend.range("b")) == _latest(_records("b", 10, keys=5))
    assert backend.offsets() == {first: 399, second: 9}


def test_a_checkpoint_beyond_the_changelog_end_wipes_the_task(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, restorer_factory: RestorerFactory
) -> None:
    topic = f"{unique_name}-changelog"
    create_topic(kafka_bootstrap, topic, 1, config=COMPACTED)
    records = _records("r", 40, keys=15)
    produce(kafka_bootstrap, topic, records, partition=0)
    path = tmp_path / "0_0"
    backend = open_rocksdb(path, [STORE])
    backend.write({STORE: [(b"stale", b"from another changelog")]}, {topic: 1000})
    wipes: list[tuple[TaskId, str]] = []
    reopened: list[TaskStateBackend] = []

    def wipe_and_reopen(task_id: TaskId, reason: str) -> TaskStateBackend:
        wipes.append((task_id, reason))
        backend.close()
        wipe(path)
        reopened.append(open_rocksdb(path, [STORE]))
        return reopened[-1]

    restorer = restorer_factory(wipe_callback=wipe_and_reopen, end_offset_grace=0.3)
    started = time.monotonic()
    restorer.add(TASK, backend, {STORE: topic})
    _wait_completed(restorer, TASK)

    assert time.monotonic() - started >= 0.3, "wiped without waiting for the end to catch up"
    [(task_id, reason)] = wipes
    assert task_id == TASK
    assert "stored offset 1000" in reason and "end offset 40" in reason and topic in reason
    [fresh] = reopened
    try:
        assert _content(fresh) == _latest(records)
        assert fresh.offsets() == {topic: len(records) - 1}
    finally:
        fresh.close()


def test_a_checkpoint_before_the_changelog_start_wipes_the_task(
    kafka_bootstrap: str, unique_name: str, restorer_factory: RestorerFactory
) -> None:
    topic = f"{unique_name}-changelog"
    # Records can be deleted below an offset only when the policy includes delete.
    create_topic(kafka_bootstrap, topic, 1, config={"cleanup.policy": "compact,delete"})
    records = _records("r", 30, keys=30, tombstone_every=1000)
    produce(kafka_bootstrap, topic, records, partition=0)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_records([TopicPartition(topic, 0, 10)])[TopicPartition(topic, 0, 10)].result(10)
    backend = InMemoryBackend([STORE])
    backend.write({STORE: [(b"stale", b"x")]}, {topic: 5})
    wipes: list[str] = []

    def wipe_and_reopen(task_id: TaskId, reason: str) -> TaskStateBackend:
        wipes.append(reason)
        return InMemoryBackend([STORE])

    listener = Calls()
    restorer = restorer_factory(wipe_callback=wipe_and_reopen, listener=listener)
    restorer.add(TASK, backend, {STORE: topic})
    _wait_completed(restorer, TASK)

    [reason] = wipes
    assert "stored offset 5" in reason and "start offset 10" in reason
    assert listener.calls[0] == ("start", TASK, topic, 10, 30)
    assert listener.calls[-1] == ("end", TASK, topic, 20)


def _transactional_producer(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id})
    producer.init_transactions(30)
    return producer


def test_read_committed_skips_aborted_records_and_ends_despite_markers(
    kafka_bootstrap: str, unique_name: str, restorer_factory: RestorerFactory
) -> None:
    topic = f"{unique_name}-changelog"
    create_topic(kafka_bootstrap, topic, 1, config=COMPACTED)
    producer = _transactional_producer(kafka_bootstrap, unique_name)
    committed: Records = []
    for name, commit in (("first", True), ("aborted", False), ("second", True)):
        records = _records(name, 20, keys=8, tombstone_every=6)
        producer.begin_transaction()
        for key, value in records:
            producer.produce(topic, value, key, partition=0)
        if commit:
            producer.commit_transaction(30)
            committed += records
        else:
            producer.flush(30)
            producer.abort_transaction(30)
    backend = InMemoryBackend([STORE])
    restorer = restorer_factory(read_committed=True)

    restorer.add(TASK, backend, {STORE: topic})
    _wait_completed(restorer, TASK)

    assert _content(backend) == _latest(committed)
    assert restorer.records_read(TASK) == len(committed)
    # 20 records + marker, 20 aborted + marker, 20 records + marker: the last record is at 61.
    assert backend.offsets() == {topic: 61}

    # Only a marker follows the checkpoint: that restore reads nothing and still ends.
    restorer.add(TASK, backend, {STORE: topic})
    _wait_completed(restorer, TASK)
    assert restorer.records_read(TASK) == len(committed)


def test_a_restore_waits_for_a_transaction_open_at_its_end(
    kafka_bootstrap: str, unique_name: str, restorer_factory: RestorerFactory
) -> None:
    """The commit of a transaction returns before its markers are written: a restore reading
    the changelog then must not complete without it."""
    topic = f"{unique_name}-changelog"
    create_topic(kafka_bootstrap, topic, 1, config=COMPACTED)
    producer = _transactional_producer(kafka_bootstrap, unique_name)
    first, second = _records("first", 10, keys=10), _records("second", 10, keys=10)
    for records, commit in ((first, True), (second, False)):
        producer.begin_transaction()
        for key, value in records:
            producer.produce(topic, value, key, partition=0)
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
    backend = InMemoryBackend([STORE])
    restorer = restorer_factory(read_committed=True)

    restorer.add(TASK, backend, {STORE: topic})
    deadline = time.monotonic() + 30
    while restorer.progress()[TASK].state is RestoreState.PENDING:  # its thread has not begun
        assert time.monotonic() < deadline, "the restore never began"
        time.sleep(0.05)
    time.sleep(0.5)  # reading: it reaches the open transaction, and must wait there
    assert restorer.completed() == []
    assert restorer.progress()[TASK].state is RestoreState.RESTORING
    producer.commit_transaction(30)
    _wait_completed(restorer, TASK)

    assert _content(backend) == _latest(first + second)
    assert restorer.records_read(TASK) == 20


def test_a_transaction_left_open_ends_the_restore_after_the_grace(
    kafka_bootstrap: str, unique_name: str, restorer_factory: RestorerFactory
) -> None:
    topic = f"{unique_name}-changelog"
    create_topic(kafka_bootstrap, topic, 1, config=COMPACTED)
    producer = _transactional_producer(kafka_bootstrap, unique_name)
    committed = _records("committed", 10, keys=10)
    for records, commit in ((committed, True), (_records("open", 10, keys=10), False)):
        producer.begin_transaction()
        for key, value in records:
            producer.produce(topic, value, key, partition=0)
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
    backend = InMemoryBackend([STORE])
    restorer = restorer_factory(read_committed=True, end_offset_grace=0.5)
    try:
        started = time.monotonic()
        restorer.add(TASK, backend, {STORE: topic})
        _wait_completed(restorer, TASK)

        assert time.monotonic() - started >= 0.5
        assert _content(backend) == _latest(committed)
        assert backend.offsets() == {topic: 9}
    finally:
        producer.abort_transaction(30)


class SlowBackend(InMemoryBackend):
    """Writes take `delay` seconds; counts writes, and knows when one is under way."""

    def __init__(self, delay: float) -> None:
        super().__init__([STORE])
        self.delay = delay
        self.writes = 0
        self.writing = False
        self.first_write = threading.Event()

    def write(self, changes: Mapping[str, Sequence[Change]], offsets: Mapping[str, int]) -> None:
        self.writing = True
        try:
            time.sleep(self.delay)
            super().write(changes, offsets)
            self.writes += 1
            self.first_write.set()
        finally:
            self.writing = False


def test_remove_all_returns_promptly_and_the_backend_is_left_alone(
    kafka_bootstrap: str, unique_name: str, restorer_factory: RestorerFactory
) -> None:
    topic = f"{unique_name}-changelog"
    create_topic(kafka_bootstrap, topic, 1, config=COMPACTED)
    produce(kafka_bootstrap, topic, _records("r", 5000, keys=1000), partition=0)
    backend = SlowBackend(delay=0.05)
    restorer = restorer_factory(batch_size=50)  # 100 batches, 5 s
    restorer.add(TASK, backend, {STORE: topic})
    assert backend.first_write.wait(10)
    progress = restorer.progress()[TASK]
    assert progress.state is RestoreState.RESTORING
    assert progress.end_offsets == {topic: 5000}

    started = time.monotonic()
    restorer.remove_all()
    took = time.monotonic() - started

    assert took < 0.5
    assert not backend.writing
    writes = backend.writes
    time.sleep(0.5)
    assert backend.writes == writes < 100
    assert restorer.progress() == {}
    assert restorer.completed() == []
    restorer.raise_if_failed()


class FailingBackend(InMemoryBackend):
    def write(self, changes: Mapping[str, Sequence[Change]], offsets: Mapping[str, int]) -> None:
        raise OSError("No space left on device")


def test_a_failed_write_surfaces_on_the_main_thread(
    kafka_bootstrap: str, unique_name: str, restorer_factory: RestorerFactory
) -> None:
    topic = f"{unique_name}-changelog"
    create_topic(kafka_bootstrap, topic, 1, config=COMPACTED)
    produce(kafka_bootstrap, topic, _records("r", 10, keys=10), partition=0)
    restorer = restorer_factory()
    restorer.add(TASK, FailingBackend([STORE]), {STORE: topic})

    with pytest.raises(RestoreError, match="No space left on device") as failure:
        _wait_completed(restorer, TASK, timeout=10)
    assert failure.value.task_id == TASK
    assert isinstance(failure.value.__cause__, OSError)
    with pytest.raises(RestoreError):  # and stays failed
        restorer.raise_if_failed()


def _wait_for(condition: Callable[[], bool], restorer: Restorer, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        restorer.raise_if_failed()
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {restorer.progress()}"
        time.sleep(0.02)


def test_a_standby_follows_its_changelog_and_a_promotion_reads_only_the_tail(
    kafka_bootstrap: str,
    unique_name: str,
    backend_factory: BackendFactory,
    restorer_factory: RestorerFactory,
) -> None:
    topic = f"{unique_name}-changelog"
    create_topic(kafka_bootstrap, topic, 1, config=COMPACTED)
    first = _records("first", 2000, keys=300)
    produce(kafka_bootstrap, topic, first, partition=0)
    listener = Calls()
    restorer = restorer_factory(listener=listener)
    backend = backend_factory()

    restorer.add(TASK, backend, {STORE: topic}, standby=True)
    _wait_for(lambda: restorer.progress()[TASK].caught_up, restorer, "the standby to catch up")
    more = _records("more", 500, keys=400)
    produce(kafka_bootstrap, topic, more, partition=0)
    total = len(first) + len(more)
    _wait_for(lambda: restorer.records_read(TASK) == total, restorer, "the standby to follow")
    _wait_for(lambda: restorer.progress()[TASK].remaining == 0, restorer, "its lag to be 0")

    assert restorer.completed() == [], "a standby never completes"
    progress = restorer.progress()[TASK]
    assert (progress.state, progress.standby) == (RestoreState.STANDBY, True)
    assert listener.calls == [], "listeners hear about restores, not standby updates"

    tail = _records("tail", 40, keys=30)
    with restorer._lock:  # hold the thread off, so that the tail is left for the promotion
        produce(kafka_bootstrap, topic, tail, partition=0)
        restorer.promote(TASK)
    _wait_completed(restorer, TASK)

    assert restorer.last_restore(TASK) is not None
    assert restorer.last_restore(TASK)[0] == len(tail)  # type: ignore[index]
    assert restorer.records_read(TASK) == total + len(tail)
    assert _content(backend) == _latest(tail, _latest(more, _latest(first)))
    assert backend.offsets() == {topic: total + len(tail) - 1}


def test_a_standby_under_read_committed_is_not_left_behind_by_commit_markers(
    kafka_bootstrap: str, unique_name: str, restorer_factory: RestorerFactory
) -> None:
    topic = f"{unique_name}-changelog"
    create_topic(kafka_bootstrap, topic, 1, config=COMPACTED)
    producer = _transactional_producer(kafka_bootstrap, unique_name)
    backend = InMemoryBackend([STORE])
    restorer = restorer_factory(read_committed=True)
    restorer.add(TASK, backend, {STORE: topic}, standby=True)
    committed: Records = []
    for round_ in range(3):
        records = _records(f"r{round_}", 10, keys=4)
        producer.begin_transaction()
        for key, value in records:
            producer.produce(topic, value, key, partition=0)
        producer.commit_transaction(30)
        committed += records
        expected = len(committed)

        def applied_without_lag(expected: int = expected) -> bool:
            return restorer.records_read(TASK) == expected and (
                restorer.progress()[TASK].remaining == 0
            )

        _wait_for(applied_without_lag, restorer, f"the standby to apply round {round_}")
    assert _content(backend) == _latest(committed)
