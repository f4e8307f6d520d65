"""Restoring tasks' stores from their changelogs, on a thread of its own.

The main thread hands a task over with `add()` (the task's backend, its stores' changelog
topics) and from then on leaves that backend alone until the task shows up in `completed()`, or
until `remove()` has returned. The restorer thread reads each changelog partition from the
task's checkpoint (stored offset + 1) to its end, and applies every batch it reads as one atomic
`backend.write()` of the changes together with the new offsets, so a restore interrupted at any
point resumes where it stopped.

A task's restore, per `add()`:

```
PENDING --(offsets read, records to read)--> RESTORING --(every changelog's end)--> COMPLETED
   |                                                                                  ^
   +--------------------(nothing to read: the checkpoint is at the end)---------------+
```

A *standby* (`add(..., standby=True)`) takes the same path but never completes: once at the
end it stays assigned and applies what the active task's commits append, checkpointing every
batch like a restore, so that the task can later start (`promote()`) by reading only the tail:

```
PENDING --(offsets read)--> STANDBY --(promote)--> PENDING (a restore as above, from its checkpoint)
```

A PENDING task whose changelog offsets cannot be read (the broker is unreachable) stays PENDING
and is tried again every `retry_interval` seconds; the reads themselves wait for the broker.

`remove()` drops a task in any state. A checkpoint that cannot belong to the changelog as it is
now (stored offset at or beyond the changelog's end, or before its start) makes the task wipe
its state through `wipe_callback` and restore from the beginning.

Under exactly-once (read_committed) the end of a changelog is its last stable offset. That
trails a transaction whose commit has returned until the broker has written its markers, and a
transaction still open (a fenced worker's, about to be aborted). So a checkpoint beyond the end
is believed only after `end_offset_grace` seconds, and a changelog whose end event comes with
records beyond it (the high watermark is further) is finished only when a later end event
reaches the high watermark, or after `end_offset_grace` seconds with a warning: completing
early would miss the changes of a transaction that just committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from processor.errors import BrokerError, ProcessorError, RecordError, StateError
from processor.kafka.changelog_reader import ChangelogBatch, PartitionEnd
from processor.runtime.task_id import TaskId
from processor.state.backend import Change, TaskStateBackend

__all__ = [
    "ChangelogSource",
    "RestoreError",
    "RestoreListener",
    "RestoreProgress",
    "RestoreState",
    "Restorer",
    "WipeCallback",
]

_log = logging.getLogger(__name__)

Partition = tuple[str, int]

WipeCallback = Callable[[TaskId, str], TaskStateBackend]
"""`(task_id, reason) -> new backend`: delete the task's local state, reopen it empty, log
`reason` as a warning. Called on the restorer thread; the returned backend replaces the one
given to `add()` (the caller keeps track of it: it is the one restored)."""


class RestoreError(StateError):
    """Restoring failed and the restorer thread stopped; `task_id` names the task whose
    restore failed, when there is one."""

    def __init__(self, task_id: TaskId | None, problem: str) -> None:
        self.task_id = task_id
        self.problem = problem
        where = f"restoring task {task_id}" if task_id is not None else "restoring"
        super().__init__(f"{where} failed: {problem}")


class RestoreState(Enum):
    PENDING = "pending"
    RESTORING = "restoring"
    COMPLETED = "completed"
    STANDBY = "standby"


_TRANSITIONS: dict[RestoreState, frozenset[RestoreState]] = {
    RestoreState.PENDING: frozenset(
        {RestoreState.RESTORING, RestoreState.COMPLETED, RestoreState.STANDBY}
    ),
    RestoreState.STANDBY: frozenset(),
    RestoreState.RESTORING: frozenset({RestoreState.COMPLETED}),
    RestoreState.COMPLETED: frozenset(),
}


class ChangelogSource(Protocol):
    """What the restorer reads from: `processor.kafka.changelog_reader.ChangelogReader`."""

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]: ...
    def high_watermark(self, topic: str, partition: int) -> int | None: ...
    def assign(self, start_offsets: Mapping[Partition, int]) -> None: ...
    def unassign(self, partitions: Iterable[Partition]) -> None: ...
    def consume_batches(
        self, max_records: int, timeout: float
    ) -> Sequence[ChangelogBatch | PartitionEnd]: ...
    def close(self) -> None: ...


class RestoreListener(Protocol):
    """Hooks called on the restorer thread, per changelog of a task. A changelog with nothing to
    read gets `on_restore_start(.., start, end)` with `start >= end`, then `on_restore_end(.., 0)`.
    An exception raised by a hook fails the restorer like any other error."""

    def on_restore_start(self, task_id: TaskId, topic: str, start: int, end: int) -> None: ...
    def on_batch_restored(
        self, task_id: TaskId, topic: str, last_offset: int, count: int
    ) -> None: ...
    def on_restore_end(self, task_id: TaskId, topic: str, total: int) -> None: ...


@dataclass(frozen=True)
class RestoreProgress:
    """Where one task's restore stands. Offsets are per changelog topic; `end_offsets` are the
    ends read when the restore started (a standby's: the latest ends it has seen).
    `remaining` is an upper bound (compaction leaves gaps in the offsets): for a standby, its
    lag behind the changelogs' ends. `rate` is records per second since the restore started.
    `caught_up` is whether a standby has reached the ends at least once (a restore: False)."""

    task_id: TaskId
    changelogs: tuple[Partition, ...]
    start_offsets: Mapping[str, int]
    end_offsets: Mapping[str, int]
    restored: int
    remaining: int
    rate: float
    state: RestoreState
    standby: bool = False
    caught_up: bool = False


@dataclass(eq=False)
class _Changelog:
    store: str
    topic: str
    partition: int
    start: int = 0  # first offset to read
    end: int = 0  # end offset when the restore started
    position: int = 0  # next offset to read
    restored: int = 0
    done: bool = False
    open_transaction_since: float | None = None  # at its end, records beyond it


@dataclass(eq=False)
class _Task:
    task_id: TaskId
    backend: TaskStateBackend
    changelogs: list[_Changelog]
    standby: bool = False
    state: RestoreState = RestoreState.PENDING
    started: float = 0.0
    restored: int = 0
    last_log: float = 0.0
    beyond_end_since: float | None = None
    retry_at: float = 0.0  # PENDING: when to read the changelogs' offsets (again)
    partitions: list[Partition] = field(default_factory=list)  # assigned to the reader
    caught_up: bool = False  # a standby reached its changelogs' ends

    def transition(self, target: RestoreState) -> None:
        if target not in _TRANSITIONS[self.state]:
            raise ProcessorError(
                f"restore of task {self.task_id}: illegal transition "
                f"{self.state.value} -> {target.value}"
            )
        self.state = target

    def remaining(self) -> int:
        return sum(
            max(0, c.end - c.position) for c in self.changelogs if self.standby or not c.done
        )


class Restorer:
    """Restores tasks' stores on a daemon thread; see the module docstring for the contract.

    Keyword arguments, with their defaults:

    - `wipe_callback` (required): deletes a task's state and reopens it empty, see `WipeCallback`.
    - `listener` (None): a `RestoreListener`.
    - `batch_size` (20,000): the most records read, and applied, at once.
    - `poll_timeout` (0.02 s): how long one read waits for a full batch.
    - `request_timeout` (10 s): for reading a changelog's offsets.
    - `progress_interval` (5 s): between progress log lines of a task.
    - `end_offset_grace` (10 s): how long a changelog's stable end is given to catch up with a
      checkpoint beyond it (before the task is wiped) or with its high watermark (before the
      restore completes without the open transaction); see the module docstring.
    - `retry_interval` (1 s): between tries to read the offsets of a task's changelogs, while
      the broker does not answer.
    """

    def __init__(
        self,
        reader: ChangelogSource,
        *,
        wipe_callback: WipeCallback,
        listener: RestoreListener | None = None,
        batch_size: int = 20_000,
        poll_timeout: float = 0.02,
        request_timeout: float = 10.0,
        progress_interval: float = 5.0,
        end_offset_grace: float = 10.0,
        retry_interval: float = 1.0,
    ) -> None:
        self._reader = reader
        self._wipe = wipe_callback
        self._listener = listener
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._request_timeout = request_timeout
        self._progress_interval = progress_interval
        self._end_offset_grace = end_offset_grace
        self._retry_interval = retry_interval
        # Everything below is guarded by _lock; the restorer thread holds it whenever it touches
        # a backend, so remove() returning means the thread is done with those backends.
        self._lock = threading.Condition()
        self._tasks: dict[TaskId, _Task] = {}
        self._partitions: dict[Partition, tuple[_Task, _Changelog]] = {}
        self._to_unassign: list[Partition] = []
        self._completed: list[TaskId] = []
        self._records_read: dict[TaskId, int] = {}
        self._last_restore: dict[TaskId, tuple[int, float]] = {}
        self._failure: RestoreError | None = None
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="processor-restorer", daemon=True)
        self._thread.start()

    # --- main thread ---------------------------------------------------------------------------

    def add(
        self,
        task_id: TaskId,
        backend: TaskStateBackend,
        changelogs: Mapping[str, str],
        *,
        standby: bool = False,
    ) -> None:
        """Start restoring `task_id` into `backend`: each store's changelog topic (store ->
        topic), partition `task_id.partition`. The backend belongs to the restorer until the
        task is in `completed()` or `remove()` has returned. A standby keeps following the
        changelogs until `promote()` or `remove()`."""
        if len(set(changelogs.values())) != len(changelogs):
            raise ProcessorError(f"task {task_id}: two stores share a changelog ({changelogs})")
        with self._lock:
            if self._closed:
                raise ProcessorError("the restorer is closed")
            if task_id in self._tasks:
                raise ProcessorError(f"task {task_id} is already being restored")
            if task_id in self._completed:
                self._completed.remove(task_id)
            self._tasks[task_id] = _Task(
                task_id,
                backend,
                [
                    _Changelog(store, topic, task_id.partition)
                    for store, topic in changelogs.items()
                ],
                standby=standby,
            )
            self._records_read.setdefault(task_id, 0)
            self._lock.notify_all()

    def promote(self, task_id: TaskId) -> None:
        """Turn the standby `task_id` into a restore: it reads from its checkpoint to the
        changelogs' current ends (only the tail, when it kept up) and then completes."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or not task.standby:
                raise ProcessorError(f"task {task_id} is not a standby here; cannot promote it")
            self._forget_partitions(task)
            self._tasks[task_id] = _Task(
                task_id,
                task.backend,
                [_Changelog(c.store, c.topic, c.partition) for c in task.changelogs],
            )
            _log.info("task %s: promoted from standby; reading the changelog tail", task_id)
            self._lock.notify_all()

    def last_restore(self, task_id: TaskId) -> tuple[int, float] | None:
        """(records read, seconds) of `task_id`'s last completed restore, if there was one."""
        with self._lock:
            return self._last_restore.get(task_id)

    def remove(self, task_ids: Iterable[TaskId]) -> None:
        """Stop restoring these tasks (and forget them if completed but not yet collected).
        Returns once the restorer thread no longer touches their backends."""
        with self._lock:
            for task_id in task_ids:
                task = self._tasks.pop(task_id, None)
                if task is not None:
                    self._forget_partitions(task)
                    _log.info("task %s: restore stopped (%s)", task_id, task.state.value)
                if task_id in self._completed:
                    self._completed.remove(task_id)
            self._lock.notify_all()

    def remove_all(self) -> None:
        with self._lock:
            self.remove(list(self._tasks))
            self._completed.clear()

    def completed(self) -> list[TaskId]:
        """Tasks restored since the last call; their backends are the caller's again."""
        with self._lock:
            done, self._completed = self._completed, []
            return done

    def progress(self) -> dict[TaskId, RestoreProgress]:
        """Every task added and neither completed nor removed."""
        now = time.monotonic()
        with self._lock:
            return {task_id: _progress(task, now) for task_id, task in self._tasks.items()}

    def progress_of(self, task_id: TaskId) -> RestoreProgress | None:
        """`progress()` of one task (None: not added, or completed)."""
        with self._lock:
            task = self._tasks.get(task_id)
            return _progress(task, time.monotonic()) if task is not None else None

    def records_read(self, task_id: TaskId) -> int:
        """Changelog records applied to `task_id`'s stores by this restorer, over all its
        restores."""
        with self._lock:
            return self._records_read.get(task_id, 0)

    def raise_if_failed(self) -> None:
        """Raise the error that stopped the restorer thread, if one did."""
        with self._lock:
            if self._failure is not None:
                raise self._failure

    def close(self) -> None:
        """Stop the thread and close the reader. Backends are left to their owners."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            self._lock.notify_all()
        self._thread.join()
        self._reader.close()

    # --- restorer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    pending = self._wait_for_work()
                    if pending is None:
                        return
                    unassign, self._to_unassign = self._to_unassign, []
                if unassign:
                    self._reader.unassign(unassign)
                for task in pending:
                    try:
                        self._start(task)
                    except RestoreError:
                        raise
                    except BrokerError as e:
                        if e.fatal:
                            raise RestoreError(task.task_id, str(e)) from e
                        _log.warning("task %s: %s; trying again", task.task_id, e)
                        with self._lock:
                            task.retry_at = time.monotonic() + self._retry_interval
                    except Exception as e:
                        raise RestoreError(task.task_id, f"{type(e).__name__}: {e}") from e
                with self._lock:
                    reading = bool(self._partitions)
                if reading:
                    try:
                        items = self._reader.consume_batches(self._batch_size, self._poll_timeout)
                    except RecordError as e:
                        raise self._record_error(e) from e
                    with self._lock:
                        if items:
                            self._apply(items)
                        self._check_open_transactions()
                        self._log_progress()
        except RestoreError as e:
            self._fail(e)
        except BaseException as e:
            failure = RestoreError(None, f"{type(e).__name__}: {e}")
            failure.__cause__ = e
            self._fail(failure)

    def _wait_for_work(self) -> list[_Task] | None:
        """Under the lock: wait until there is something to do; the PENDING tasks due to start
        (None: stop)."""
        while not self._stopping:
            now = time.monotonic()
            pending = [t for t in self._tasks.values() if t.state is RestoreState.PENDING]
            due = [t for t in pending if t.retry_at <= now]
            if due or self._partitions or self._to_unassign:
                return due
            self._lock.wait(min((t.retry_at - now for t in pending), default=None))
        return None

    def _record_error(self, error: RecordError) -> RestoreError:
        with self._lock:
            entry = self._partitions.get((error.topic, error.partition))
        return RestoreError(entry[0].task_id if entry else None, str(error))

    def _fail(self, failure: RestoreError) -> None:
        _log.error("%s; the restorer stopped", failure)
        with self._lock:
            self._failure = failure

    def _start(self, task: _Task) -> None:
        """Read the task's checkpoint and its changelogs' offsets; wipe the task if they do not
        fit together; assign what there is to read, or complete the task."""
        with self._lock:
            if self._tasks.get(task.task_id) is not task:
                return  # removed meanwhile
            stored = task.backend.offsets()
        ends = {
            c.topic: self._reader.watermarks(c.topic, c.partition, self._request_timeout)
            for c in task.changelogs
        }
        with self._lock:
            if self._tasks.get(task.task_id) is not task:
                return
            beyond = [
                f"stored offset {stored[c.topic]} of changelog {c.topic}[{c.partition}] is at or "
                f"beyond its end offset {ends[c.topic][1]}"
                for c in task.changelogs
                if c.topic in stored and stored[c.topic] >= ends[c.topic][1]
            ]
            before = [
                f"stored offset {stored[c.topic]} of changelog {c.topic}[{c.partition}] is "
                f"before its start offset {ends[c.topic][0]}"
                for c in task.changelogs
                if c.topic in stored and stored[c.topic] + 1 < ends[c.topic][0]
            ]
            now = time.monotonic()
            if beyond and not before:
                if task.beyond_end_since is None:
                    task.beyond_end_since = now
                if now - task.beyond_end_since < self._end_offset_grace:
                    task.retry_at = now + min(0.1, self._end_offset_grace)
                    return  # the end may still be catching up with the checkpoint
            if beyond or before:
                reason = f"{'; '.join(beyond + before)}: the local state does not match it"
                task.backend = self._wipe(task.task_id, reason)
                stored = {}
            task.started = task.last_log = now
            for c in task.changelogs:
                low, high = ends[c.topic]
                c.start = c.position = stored[c.topic] + 1 if c.topic in stored else low
                c.end = high
            self._begin(task)

    def _begin(self, task: _Task) -> None:
        if task.standby:
            self._begin_standby(task)
            return
        listener = self._listener
        to_read: dict[Partition, int] = {}
        for c in task.changelogs:
            if listener is not None:
                listener.on_restore_start(task.task_id, c.topic, c.start, c.end)
            if c.start >= c.end:
                c.done = True
                if listener is not None:
                    listener.on_restore_end(task.task_id, c.topic, 0)
            else:
                to_read[(c.topic, c.partition)] = c.start
                self._partitions[(c.topic, c.partition)] = (task, c)
        if not to_read:
            task.transition(RestoreState.COMPLETED)
            _log.info(
                "task %s: state is up to date with %s, nothing to restore",
                task.task_id,
                _describe(task),
            )
            self._complete(task)
            return
        task.transition(RestoreState.RESTORING)
        task.partitions = list(to_read)
        _log.info(
            "task %s: restoring from %s; about %d records to read",
            task.task_id,
            _describe(task),
            task.remaining(),
        )
        self._reader.assign(to_read)

    def _begin_standby(self, task: _Task) -> None:
        task.transition(RestoreState.STANDBY)
        to_read = {(c.topic, c.partition): c.start for c in task.changelogs}
        for c in task.changelogs:
            self._partitions[(c.topic, c.partition)] = (task, c)
        task.partitions = list(to_read)
        _log.info(
            "task %s: standby following %s; about %d records behind",
            task.task_id,
            _describe(task),
            task.remaining(),
        )
        self._reader.assign(to_read)

    def _apply(self, items: Sequence[ChangelogBatch | PartitionEnd]) -> None:
        """Write what `items` hold: one write per task, then take note of partition ends."""
        partitions = self._partitions
        # task -> changelog -> (its changes in `items`, offset of the last one)
        by_task: dict[_Task, dict[_Changelog, tuple[list[Change], int]]] = {}
        ends: list[PartitionEnd] = []
        for item in items:
            if isinstance(item, PartitionEnd):
                ends.append(item)
                continue
            entry = partitions.get((item.topic, item.partition))
            if entry is None:  # removed, or read before a re-assignment
                continue
            task, changelog = entry
            changelogs = by_task.setdefault(task, {})
            earlier = changelogs.get(changelog)
            if earlier is None:
                changelogs[changelog] = (item.changes, item.last_offset)
            else:
                changelogs[changelog] = (earlier[0] + item.changes, item.last_offset)
        for task, changelogs in by_task.items():
            self._write(task, changelogs)
        for end in ends:
            self._end(end)

    def _write(self, task: _Task, changelogs: dict[_Changelog, tuple[list[Change], int]]) -> None:
        offsets = {c.topic: last for c, (_, last) in changelogs.items()}
        try:
            task.backend.write(
                {c.store: changes for c, (changes, _) in changelogs.items()}, offsets
            )
        except Exception as e:
            raise RestoreError(
                task.task_id,
                f"writing changelog records up to offsets {offsets} failed: "
                f"{type(e).__name__}: {e}",
            ) from e
        for c, (changes, last) in changelogs.items():
            count = len(changes)
            c.position = last + 1
            if task.standby:
                high = self._reader.high_watermark(c.topic, c.partition)
                c.end = max(c.end, c.position, high or 0)
            c.restored += count
            task.restored += count
            self._records_read[task.task_id] += count
            if self._listener is not None and not task.standby:
                self._listener.on_batch_restored(task.task_id, c.topic, last, count)

    def _end(self, end: PartitionEnd) -> None:
        entry = self._partitions.get((end.topic, end.partition))
        if entry is None or (entry[1].done and not entry[0].standby):
            return
        task, changelog = entry
        changelog.position = max(changelog.position, end.offset)
        high = self._reader.high_watermark(end.topic, end.partition)
        if task.standby:
            changelog.end = max(changelog.position, high or 0)
            changelog.done = True  # reached the end once; a standby reads on regardless
            if not task.caught_up and all(c.done for c in task.changelogs):
                task.caught_up = True
                _log.info(
                    "task %s: standby caught up after %d records in %.1f s",
                    task.task_id,
                    task.restored,
                    time.monotonic() - task.started,
                )
            return
        if high is not None and high > end.offset:
            if changelog.open_transaction_since is None:
                changelog.open_transaction_since = time.monotonic()
                _log.info(
                    "task %s: changelog %s[%d] ends at stable offset %d below its high watermark "
                    "%d: a transaction is still open; waiting up to %.1f s for it to end",
                    task.task_id,
                    end.topic,
                    end.partition,
                    end.offset,
                    high,
                    self._end_offset_grace,
                )
            return  # finished by a later end event, or by _check_open_transactions()
        self._finish(task, changelog)

    def _check_open_transactions(self) -> None:
        now = time.monotonic()
        for task, changelog in list(self._partitions.values()):
            since = changelog.open_transaction_since
            if since is not None and now - since >= self._end_offset_grace and not changelog.done:
                _log.warning(
                    "task %s: a transaction in changelog %s[%d] is still open after %.1f s; "
                    "restored up to its last stable offset %d",
                    task.task_id,
                    changelog.topic,
                    changelog.partition,
                    now - since,
                    changelog.position,
                )
                self._finish(task, changelog)

    def _finish(self, task: _Task, changelog: _Changelog) -> None:
        changelog.done = True
        if self._listener is not None:
            self._listener.on_restore_end(task.task_id, changelog.topic, changelog.restored)
        if all(c.done for c in task.changelogs):
            task.transition(RestoreState.COMPLETED)
            seconds = max(time.monotonic() - task.started, 1e-9)
            _log.info(
                "task %s: restored %d records in %.1f s (%.0f records/s)",
                task.task_id,
                task.restored,
                seconds,
                task.restored / seconds,
            )
            self._complete(task)

    def _complete(self, task: _Task) -> None:
        del self._tasks[task.task_id]
        self._last_restore[task.task_id] = (task.restored, time.monotonic() - task.started)
        if task.partitions:
            self._forget_partitions(task)
            self._reader.unassign(self._to_unassign)
            self._to_unassign = []
        self._completed.append(task.task_id)

    def _forget_partitions(self, task: _Task) -> None:
        for p in task.partitions:
            del self._partitions[p]
        self._to_unassign.extend(task.partitions)
        task.partitions = []

    def _log_progress(self) -> None:
        now = time.monotonic()
        for task in self._tasks.values():
            catching_up = task.state is RestoreState.STANDBY and not task.caught_up
            if (
                task.state is RestoreState.RESTORING or catching_up
            ) and now - task.last_log >= self._progress_interval:
                task.last_log = now
                p = _progress(task, now)
                _log.info(
                    "task %s: %s %d records, about %d remaining, %.0f records/s",
                    task.task_id,
                    "standby applied" if task.standby else "restored",
                    p.restored,
                    p.remaining,
                    p.rate,
                )


def _progress(task: _Task, now: float) -> RestoreProgress:
    started = task.state is not RestoreState.PENDING
    elapsed = now - task.started
    return RestoreProgress(
        task_id=task.task_id,
        changelogs=tuple((c.topic, c.partition) for c in task.changelogs),
        start_offsets={c.topic: c.start for c in task.changelogs} if started else {},
        end_offsets={c.topic: c.end for c in task.changelogs} if started else {},
        restored=task.restored,
        remaining=task.remaining() if started else 0,
        rate=task.restored / elapsed if started and elapsed > 0 else 0.0,
        state=task.state,
        standby=task.standby,
        caught_up=task.caught_up,
    )


def _describe(task: _Task) -> str:
    return ", ".join(
        f"store {c.store!r} changelog {c.topic}[{c.partition}] offsets {c.start} -> {c.end}"
        for c in task.changelogs
    )
