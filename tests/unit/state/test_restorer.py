"""`processor.state.restore.Restorer` over an in-memory changelog source: standbys, and their
promotion to a restore of the same task that reads only the tail. (Restores on a real broker:
tests/integration/test_restore.py.)"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import pytest

from processor.errors import BrokerError, ProcessorError
from processor.ids import Partition, TaskId
from processor.state.backend import Change, TaskStateBackend
from processor.state.memory import InMemoryBackend
from processor.state.restore import Restorer, RestoreState
from processor.state.restore_protocols import ChangelogBatch, PartitionEnd

TASK = TaskId(0, 0)
STORE = "counts"
TOPIC = "app-counts-changelog"
Records = list[tuple[bytes, bytes | None]]


class MemoryChangelogs:
    """A `ChangelogSource` over lists of records. Like the Kafka reader it reports the end of
    an assigned partition once each time it gets there. `hold()` stops deliveries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[Partition, Records] = defaultdict(list)
        self._positions: dict[Partition, int] = {}
        self._at_end: set[Partition] = set()
        self._held = False
        self.assigned: list[dict[Partition, int]] = []  # every assign() call
        # Like librdkafka, a partition stays paused across unassign() and assign().
        self.paused: set[Partition] = set()
        self.pauses: list[tuple[str, list[Partition]]] = []  # every pause() and resume()
        self.unreachable = False  # watermarks() fails as when the broker does not answer

    def append(self, records: Records, partition: int = 0) -> None:
        with self._lock:
            self._logs[(TOPIC, partition)].extend(records)

    def hold(self, held: bool = True) -> None:
        with self._lock:
            self._held = held

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        if self.unreachable:
            raise BrokerError("the broker does not answer")
        with self._lock:
            return 0, len(self._logs[(topic, partition)])

    def high_watermark(self, topic: str, partition: int) -> int | None:
        with self._lock:
            return len(self._logs[(topic, partition)])

    def assign(self, start_offsets: Mapping[Partition, int]) -> None:
        with self._lock:
            self.assigned.append(dict(start_offsets))
            self._positions.update(start_offsets)
            self._at_end -= set(start_offsets)

    def unassign(self, partitions: Iterable[Partition]) -> None:
        with self._lock:
            for p in partitions:
                self._positions.pop(p, None)

    def pause(self, partitions: Iterable[Partition]) -> None:
        with self._lock:
            self.pauses.append(("pause", list(partitions)))
            self.paused.update(self.pauses[-1][1])

    def resume(self, partitions: Iterable[Partition]) -> None:
        with self._lock:
            self.pauses.append(("resume", list(partitions)))
            self.paused.difference_update(self.pauses[-1][1])

    def consume_batches(
        self, max_records: int, timeout: float
    ) -> list[ChangelogBatch | PartitionEnd]:
        items: list[ChangelogBatch | PartitionEnd] = []
        with self._lock:
            reading = [] if self._held else list(self._positions.items())
            for (topic, partition), position in reading:
                if (topic, partition) in self.paused:
                    continue
                log = self._logs[(topic, partition)]
                if position < len(log):
                    changes = log[position : position + max_records]
                    last = position + len(changes) - 1
                    items.append(ChangelogBatch(topic, partition, last, changes))
                    self._positions[(topic, partition)] = last + 1
                    self._at_end.discard((topic, partition))
                elif (topic, partition) not in self._at_end:
                    items.append(PartitionEnd(topic, partition, position))
                    self._at_end.add((topic, partition))
        if not items:
            time.sleep(timeout)
        return items

    def close(self) -> None:
        pass


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


def _records(prefix: str, count: int) -> Records:
    return [(f"key-{i % 7}".encode(), f"{prefix}-{i}".encode()) for i in range(count)]


def _never_wipe(task_id: TaskId, reason: str) -> TaskStateBackend:
    raise AssertionError(f"unexpected wipe of task {task_id}: {reason}")


@pytest.fixture
def changelogs() -> MemoryChangelogs:
    return MemoryChangelogs()


@pytest.fixture
def listener() -> Calls:
    return Calls()


@pytest.fixture
def restorer(changelogs: MemoryChangelogs, listener: Calls) -> Iterator[Restorer]:
    restorer = Restorer(
        changelogs,
        wipe_callback=_never_wipe,
        listener=listener,
        batch_size=25,
        poll_timeout=0.002,
        retry_interval=0.01,
    )
    yield restorer
    restorer.close()


def _wait_for(condition: Callable[[], bool], restorer: Restorer, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        restorer.raise_if_failed()
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {restorer.progress()}"
        time.sleep(0.002)


def _caught_up_standby(
    restorer: Restorer, changelogs: MemoryChangelogs, backend: TaskStateBackend, count: int
) -> None:
    changelogs.append(_records("first", count))
    restorer.add(TASK, backend, {STORE: TOPIC}, standby=True)
    _wait_for(lambda: restorer.records_read(TASK) == count, restorer, "the standby to apply")
    _wait_for(lambda: restorer.progress()[TASK].caught_up, restorer, "the standby to catch up")


def test_a_promoted_standby_restores_only_the_tail_as_the_same_task(
    restorer: Restorer,
    changelogs: MemoryChangelogs,
    listener: Calls,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = InMemoryBackend([STORE])
    _caught_up_standby(restorer, changelogs, backend, 100)
    standby = restorer.progress()[TASK]
    assert (standby.state, standby.standby, standby.restored) == (RestoreState.STANDBY, True, 100)
    assert listener.calls == [], "listeners hear about restores, not standby updates"

    changelogs.hold()
    changelogs.append(_records("tail", 30))
    with caplog.at_level(logging.INFO, logger="processor.state.restore"):
        restorer.promote(TASK)
    assert "promoted from standby (100 records applied)" in caplog.text
    promoted = restorer.progress_of(TASK)
    assert promoted is not None
    assert promoted.state in (RestoreState.PENDING, RestoreState.RESTORING)
    assert (promoted.standby, promoted.caught_up, promoted.restored) == (False, False, 0)
    changelogs.hold(False)
    _wait_for(lambda: TASK in restorer.completed(), restorer, "the promoted task to complete")

    assert restorer.last_restore(TASK) is not None
    assert restorer.last_restore(TASK)[0] == 30  # type: ignore[index]
    assert restorer.records_read(TASK) == 130
    assert changelogs.assigned == [{(TOPIC, 0): 0}, {(TOPIC, 0): 100}], "read from the checkpoint"
    assert listener.calls == [
        ("start", TASK, TOPIC, 100, 130),
        ("batch", TASK, TOPIC, 124, 25),
        ("batch", TASK, TOPIC, 129, 5),
        ("end", TASK, TOPIC, 30),
    ]
    assert backend.offsets() == {TOPIC: 129}
    assert dict(backend.range(STORE)) == dict(_records("first", 100) + _records("tail", 30))
    assert restorer.progress() == {}


def test_a_standby_promoted_at_the_end_completes_without_reading(
    restorer: Restorer, changelogs: MemoryChangelogs, listener: Calls
) -> None:
    _caught_up_standby(restorer, changelogs, InMemoryBackend([STORE]), 10)
    _wait_for(lambda: restorer.progress()[TASK].remaining == 0, restorer, "no lag")
    restorer.promote(TASK)
    _wait_for(lambda: TASK in restorer.completed(), restorer, "the promoted task to complete")
    assert restorer.last_restore(TASK) == (0, pytest.approx(0, abs=5))
    assert listener.calls == [("start", TASK, TOPIC, 10, 10), ("end", TASK, TOPIC, 0)]


def test_a_standby_promoted_before_it_started_is_restored(
    restorer: Restorer, changelogs: MemoryChangelogs, listener: Calls
) -> None:
    changelogs.unreachable = True
    changelogs.append(_records("first", 12))
    backend = InMemoryBackend([STORE])
    restorer.add(TASK, backend, {STORE: TOPIC}, standby=True)
    time.sleep(0.05)  # a few tries to read its offsets
    assert restorer.progress()[TASK].state is RestoreState.PENDING

    restorer.promote(TASK)
    assert restorer.progress()[TASK].standby is False
    changelogs.unreachable = False
    _wait_for(lambda: TASK in restorer.completed(), restorer, "the promoted task to complete")

    assert restorer.last_restore(TASK)[0] == 12  # type: ignore[index]
    assert listener.calls[0] == ("start", TASK, TOPIC, 0, 12)
    assert listener.calls[-1] == ("end", TASK, TOPIC, 12)
    assert backend.offsets() == {TOPIC: 11}


def test_only_a_standby_held_here_can_be_promoted(
    restorer: Restorer, changelogs: MemoryChangelogs
) -> None:
    with pytest.raises(ProcessorError, match="not a standby here"):
        restorer.promote(TASK)
    changelogs.hold()
    changelogs.append(_records("first", 5))
    restorer.add(TASK, InMemoryBackend([STORE]), {STORE: TOPIC})
    with pytest.raises(ProcessorError, match="not a standby here"):
        restorer.promote(TASK)
    restorer.remove([TASK])

    changelogs.hold(False)
    restorer.add(TASK, InMemoryBackend([STORE]), {STORE: TOPIC}, standby=True)
    _wait_for(lambda: restorer.progress()[TASK].caught_up, restorer, "the standby to catch up")
    restorer.promote(TASK)
    with pytest.raises(ProcessorError, match="not a standby here"):
        restorer.promote(TASK)


def test_a_promoted_standby_removed_mid_restore_is_forgotten(
    restorer: Restorer, changelogs: MemoryChangelogs
) -> None:
    _caught_up_standby(restorer, changelogs, InMemoryBackend([STORE]), 20)
    changelogs.hold()
    changelogs.append(_records("tail", 50))
    restorer.promote(TASK)
    _wait_for(
        lambda: restorer.progress()[TASK].state is RestoreState.RESTORING,
        restorer,
        "the restore to begin",
    )
    restorer.remove([TASK])
    changelogs.hold(False)
    time.sleep(0.05)
    assert restorer.progress() == {}
    assert restorer.completed() == []
    assert restorer.records_read(TASK) == 20
    restorer.raise_if_failed()


class BlockingListener(Calls):
    """Blocks in `on_batch_restored` until released, as a slow user listener would."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.release = threading.Event()

    def on_batch_restored(self, task_id: TaskId, topic: str, last_offset: int, count: int) -> None:
        super().on_batch_restored(task_id, topic, last_offset, count)
        self.inside.set()
        assert self.release.wait(10), "never released"


def test_a_slow_listener_holds_up_neither_adding_tasks_nor_reading_progress(
    changelogs: MemoryChangelogs,
) -> None:
    listener = BlockingListener()
    restorer = Restorer(
        changelogs, wipe_callback=_never_wipe, listener=listener, batch_size=25, poll_timeout=0.002
    )
    try:
        changelogs.append(_records("first", 60))
        restorer.add(TASK, InMemoryBackend([STORE]), {STORE: TOPIC})
        assert listener.inside.wait(10), "the restore never applied a batch"
        began = time.monotonic()
        other = TaskId(0, 1)
        restorer.add(other, InMemoryBackend([STORE]), {STORE: TOPIC})
        progress = restorer.progress()
        assert time.monotonic() - began < 1.0, "the main thread waited for the listener"
        assert progress[TASK].restored > 0 and set(progress) == {TASK, other}
        assert restorer.completed() == []
        listener.release.set()
        _wait_for(lambda: TASK in restorer.completed(), restorer, "the restore to complete")
        # Handed back only after the listener heard the end: the task runs after it.
        assert ("end", TASK, TOPIC, 60) in listener.calls
    finally:
        listener.release.set()
        restorer.close()


class SlowWrites(InMemoryBackend):
    """A backend whose writes wait until released, as a large RocksDB batch takes long."""

    def __init__(self, stores: list[str]) -> None:
        super().__init__(stores)
        self.writing = threading.Event()
        self.release = threading.Event()
        self.closed_while_writing = False
        self._in_write = False

    def write(self, changes: Mapping[str, Sequence[Change]], offsets: Mapping[str, int]) -> None:
        self._in_write = True
        self.writing.set()
        assert self.release.wait(10), "never released"
        super().write(changes, offsets)
        self._in_write = False

    def close(self) -> None:
        self.closed_while_writing |= self._in_write
        super().close()


def test_the_main_thread_does_not_wait_for_a_write_but_removing_its_task_does(
    restorer: Restorer, changelogs: MemoryChangelogs
) -> None:
    backend = SlowWrites([STORE])
    changelogs.append(_records("first", 60))
    restorer.add(TASK, backend, {STORE: TOPIC})
    assert backend.writing.wait(10), "the restore never wrote"
    began = time.monotonic()
    assert TASK in restorer.progress() and restorer.completed() == []
    restorer.add(TaskId(0, 1), InMemoryBackend([STORE]), {STORE: TOPIC})
    assert time.monotonic() - began < 1.0, "the main thread waited for the write"
    removed = threading.Event()
    remover = threading.Thread(target=lambda: (restorer.remove([TASK]), removed.set()))
    remover.start()
    assert not removed.wait(0.3), "remove() returned while the restorer wrote the task's backend"
    backend.release.set()
    assert removed.wait(10)
    remover.join()
    backend.close()  # the caller's again, as after any remove()
    assert not backend.closed_while_writing


def test_standbys_wait_while_an_active_task_restores_even_one_promoted_meanwhile(
    restorer: Restorer, changelogs: MemoryChangelogs
) -> None:
    """One reader serves both, and the Kafka reader hands out what it fetched in order: a new
    standby hundreds of thousands of records behind kept an active task's short tail waiting
    (2.2 s in the scale-out benchmark). A standby promoted while held is read as a restore."""
    standby, active = TaskId(0, 1), TaskId(0, 0)
    changelogs.append(_records("standby", 50), partition=1)
    restorer.add(standby, InMemoryBackend([STORE]), {STORE: TOPIC}, standby=True)
    _wait_for(lambda: restorer.progress()[standby].caught_up, restorer, "the standby")
    assert changelogs.paused == set(), "no active restore: standbys read"

    changelogs.hold()  # the active task's restore stays under way until released
    changelogs.append(_records("active", 30), partition=0)
    restorer.add(active, InMemoryBackend([STORE]), {STORE: TOPIC})
    _wait_for(lambda: changelogs.paused == {(TOPIC, 1)}, restorer, "the standby held")

    changelogs.append(_records("more", 20), partition=1)
    restorer.promote(standby)  # while held: resumed before it is unassigned
    changelogs.hold(False)
    _wait_for(lambda: {active, standby} <= set(restorer.completed()), restorer, "both restores")
    assert restorer.last_restore(standby)[0] == 20  # type: ignore[index]
    assert changelogs.paused == set()
