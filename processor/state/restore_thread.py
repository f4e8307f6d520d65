"""The restorer thread: reads changelog batches into tasks' backends, as
`processor.state.restore` describes.

Which thread owns what:
- The restorer thread (`RestorerThread.run()`) alone calls the `ChangelogSource`, the
  `RestoreListener` (never under the lock: a slow listener must not hold up the main thread)
  and the `WipeCallback`, and the backends of the tasks it holds (between
  `Restorer.add()` and `Restorer.completed()` / `Restorer.remove()`).
- `RestoreBook` is what it shares with the main thread (`Restorer`), all of it under
  `RestoreBook.lock`. The restorer thread holds that lock whenever it touches a backend, but
  for the writes of a batch (`_apply`), made without it while the tasks written are in
  `RestoreBook.writing`; so `Restorer.remove()`, which waits for those, returning means the
  thread is done with the backends removed. The main thread
  adds, promotes and removes tasks there; the restorer thread makes every other change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from processor.errors import BrokerError, RecordError, StateError
from processor.ids import TaskId, tasks_field
from processor.state.backend import Change, TaskStateBackend
from processor.state.restore_protocols import (
    ChangelogBatch,
    ChangelogSource,
    Partition,
    PartitionEnd,
    RestoreListener,
)
from processor.state.restore_task import ChangelogPosition, RestoreState, TaskRestore
from processor.state.standby_hold import StandbyHold

__all__ = ["RestoreBook", "RestoreError", "RestoreSettings", "RestorerThread", "WipeCallback"]

_log = logging.getLogger("processor.state.restore")

WipeCallback = Callable[[TaskId, str], TaskStateBackend]
"""`(task_id, reason) -> new backend`: delete the task's local state, reopen it empty, log
`reason` as a warning. Called on the restorer thread; the returned backend replaces the one
given to `add()` (the caller keeps track of it: it is the one restored)."""

# The changes read for one task, per changelog: (its changes, the offset of the last one).
_Changes = dict[ChangelogPosition, tuple[list[Change], int]]


class RestoreError(StateError):
    """Restoring failed and the restorer thread stopped; `task_id` names the task whose
    restore failed, when there is one."""

    def __init__(self, task_id: TaskId | None, problem: str) -> None:
        self.task_id = task_id
        self.problem = problem
        where = f"restoring task {task_id}" if task_id is not None else "restoring"
        super().__init__(f"{where} failed: {problem}")


@dataclass(frozen=True)
class RestoreSettings:
    """The restorer's tunables; `Restorer` gives each its default and its meaning."""

    batch_size: int
    poll_timeout: float
    request_timeout: float
    progress_interval: float
    end_offset_grace: float
    retry_interval: float


@dataclass(eq=False)
class RestoreBook:
    """What the main thread and the restorer thread share; every field under `lock`."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    tasks: dict[TaskId, TaskRestore] = field(default_factory=dict)  # added, not completed
    # changelog partition -> the task and changelog reading it (assigned to the reader)
    partitions: dict[Partition, tuple[TaskRestore, ChangelogPosition]] = field(default_factory=dict)
    to_unassign: list[Partition] = field(default_factory=list)  # for the reader, soon
    completed: list[TaskId] = field(default_factory=list)  # not yet collected
    # Tasks whose backends the restorer thread writes without the lock (`Restorer.remove()`
    # waits for them).
    writing: set[TaskId] = field(default_factory=set)
    records_read: dict[TaskId, int] = field(default_factory=dict)  # ever, per task
    last_restore: dict[TaskId, tuple[int, float]] = field(default_factory=dict)  # (records, s)
    failure: RestoreError | None = None  # what stopped the restorer thread
    stopping: bool = False

    def forget_partitions(self, task: TaskRestore) -> None:
        """Stop reading `task`'s changelog partitions (the reader unassigns them soon)."""
        for p in task.partitions:
            del self.partitions[p]
        self.to_unassign.extend(task.partitions)
        task.partitions = []


class RestorerThread:
    """The loop of the restorer thread (`run()`), over a `RestoreBook` it shares with the
    `Restorer` that started it."""

    def __init__(
        self,
        book: RestoreBook,
        reader: ChangelogSource,
        *,
        wipe_callback: WipeCallback,
        listener: RestoreListener | None,
        settings: RestoreSettings,
    ) -> None:
        self._book = book
        self._reader = reader
        self._hold = StandbyHold(reader)
        self._wipe = wipe_callback
        self._listener = listener
        # The listener's calls wait here until the lock is released: a slow listener (user
        # code) must not hold up the main loop, which takes the lock to add tasks and to read
        # their progress.
        self._listener_calls: list[Callable[[], None]] = []
        self._settings = settings

    def run(self) -> None:
        """Until the book says stop: start the PENDING tasks that are due, read what the
        assigned changelogs hold, apply it. An error stops the loop and lands in the book."""
        try:
            while True:
                with self._book.lock:
                    pending = self._wait_for_work()
                    if pending is None:
                        return
                    unassign, self._book.to_unassign = self._book.to_unassign, []
                if unassign:
                    self._hold.release(unassign)
                    self._reader.unassign(unassign)
                for task in pending:
                    self._try_start(task)
                self._call_listener()
                with self._book.lock:
                    reading = bool(self._book.partitions)
                    self._hold.update(self._book.partitions)  # active restores first
                if reading:
                    try:
                        items = self._reader.consume_batches(
                            self._settings.batch_size, self._settings.poll_timeout
                        )
                    except RecordError as e:
                        raise self._record_error(e) from e
                    if items:
                        self._apply(items)
                    with self._book.lock:
                        self._check_open_transactions()
                        self._log_progress()
                    self._call_listener()
        except RestoreError as e:
            self._fail(e)
        except BaseException as e:
            failure = RestoreError(None, f"{type(e).__name__}: {e}")
            failure.__cause__ = e
            self._fail(failure)

    def _wait_for_work(self) -> list[TaskRestore] | None:
        """Under the lock: wait until there is something to do; the PENDING tasks due to start
        (None: stop)."""
        while not self._book.stopping:
            now = time.monotonic()
            pending = [t for t in self._book.tasks.values() if t.state is RestoreState.PENDING]
            due = [t for t in pending if t.retry_at <= now]
            if due or self._book.partitions or self._book.to_unassign:
                return due
            self._book.lock.wait(min((t.retry_at - now for t in pending), default=None))
        return None

    def _try_start(self, task: TaskRestore) -> None:
        """`_start()`, or try again later when the broker does not answer."""
        try:
            self._start(task)
        except RestoreError:
            raise
        except BrokerError as e:
            if e.fatal:
                raise RestoreError(task.task_id, str(e)) from e
            _log.warning(
                "task %s: %s; trying again", task.task_id, e, extra=tasks_field([task.task_id])
            )
            with self._book.lock:
                task.retry_at = time.monotonic() + self._settings.retry_interval
        except Exception as e:
            raise RestoreError(task.task_id, f"{type(e).__name__}: {e}") from e

    def _record_error(self, error: RecordError) -> RestoreError:
        with self._book.lock:
            entry = self._book.partitions.get((error.topic, error.partition))
        return RestoreError(entry[0].task_id if entry else None, str(error))

    def _tell(self, call: Callable[[], None]) -> None:
        """Under the lock: call the listener once the lock is released."""
        self._listener_calls.append(call)

    def _call_listener(self) -> None:
        """Not under the lock: the listener's calls asked for since the last time, in order."""
        calls, self._listener_calls = self._listener_calls, []
        for call in calls:
            call()

    def _fail(self, failure: RestoreError) -> None:
        _log.error("%s; the restorer stopped", failure)
        with self._book.lock:
            self._book.failure = failure

    def _start(self, task: TaskRestore) -> None:
        """Read the task's checkpoint and its changelogs' offsets; wipe the task if they do not
        fit together; assign what there is to read, or complete the task."""
        with self._book.lock:
            if not self._still_pending(task):
                return
            stored = task.backend.offsets()
        ends = {
            c.topic: self._reader.watermarks(c.topic, c.partition, self._settings.request_timeout)
            for c in task.changelogs
        }
        with self._book.lock:
            if not self._still_pending(task):
                return
            beyond, before = task.checkpoint_mismatch(stored, ends)
            now = time.monotonic()
            if beyond and not before:
                if task.beyond_end_since is None:
                    task.beyond_end_since = now
                if now - task.beyond_end_since < self._settings.end_offset_grace:
                    task.retry_at = now + min(0.1, self._settings.end_offset_grace)
                    return  # the end may still be catching up with the checkpoint
            if beyond or before:
                reason = f"{'; '.join(beyond + before)}: the local state does not match it"
                task.backend = self._wipe(task.task_id, reason)
                stored = {}
            task.begin(now, stored, ends)
            self._begin(task)

    def _still_pending(self, task: TaskRestore) -> bool:
        """Under the lock: `task` was not removed meanwhile (and is PENDING, as when due)."""
        return self._book.tasks.get(task.task_id) is task and task.state is RestoreState.PENDING

    def _begin(self, task: TaskRestore) -> None:
        if task.standby:
            self._begin_standby(task)
            return
        listener = self._listener
        to_read: dict[Partition, int] = {}
        for c in task.changelogs:
            if listener is not None:
                self._tell(
                    partial(listener.on_restore_start, task.task_id, c.topic, c.start, c.end)
                )
            if c.start >= c.end:
                c.done = True
                if listener is not None:
                    self._tell(partial(listener.on_restore_end, task.task_id, c.topic, 0))
            else:
                to_read[(c.topic, c.partition)] = c.start
                self._book.partitions[(c.topic, c.partition)] = (task, c)
        if not to_read:
            task.complete()
            _log.info(
                "task %s: state is up to date with %s, nothing to restore",
                task.task_id,
                task.describe(),
                extra=tasks_field([task.task_id]),
            )
            self._complete(task)
            return
        task.start_restoring()
        task.partitions = list(to_read)
        _log.info(
            "task %s: restoring from %s; about %d records to read",
            task.task_id,
            task.describe(),
            task.remaining(),
            extra=tasks_field([task.task_id]),
        )
        self._reader.assign(to_read)

    def _begin_standby(self, task: TaskRestore) -> None:
        task.start_following()
        to_read = {(c.topic, c.partition): c.start for c in task.changelogs}
        for c in task.changelogs:
            self._book.partitions[(c.topic, c.partition)] = (task, c)
        task.partitions = list(to_read)
        _log.info(
            "task %s: standby following %s; about %d records behind",
            task.task_id,
            task.describe(),
            task.remaining(),
            extra=tasks_field([task.task_id]),
        )
        self._reader.assign(to_read)

    def _apply(self, items: Sequence[ChangelogBatch | PartitionEnd]) -> None:
        """Write what `items` hold: one write per task, then take note of partition ends.

        The writes (RocksDB: tens of milliseconds for a large batch) happen without the lock,
        so that the main loop, which takes it every pass, does not wait for them; the tasks
        written are in `book.writing` meanwhile, and `Restorer.remove()` waits for them."""
        with self._book.lock:
            by_task, ends = self._group(items)
            self._book.writing.update(task.task_id for task in by_task)
        try:
            for task, changelogs in by_task.items():
                self._write(task, changelogs)
        finally:
            with self._book.lock:
                self._book.writing.clear()
                self._book.lock.notify_all()
        with self._book.lock:
            for task, changelogs in by_task.items():
                self._account(task, changelogs)
            for end in ends:
                self._end(end)

    def _group(
        self, items: Sequence[ChangelogBatch | PartitionEnd]
    ) -> tuple[dict[TaskRestore, _Changes], list[PartitionEnd]]:
        """Under the lock: the changes in `items` per task and changelog, and the ends."""
        partitions = self._book.partitions
        # task -> changelog -> (its changes in `items`, offset of the last one)
        by_task: dict[TaskRestore, _Changes] = {}
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
        return by_task, ends

    def _write(self, task: TaskRestore, changelogs: _Changes) -> None:
        """Not under the lock (`task` is in `book.writing`)."""
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

    def _account(self, task: TaskRestore, changelogs: _Changes) -> None:
        """Under the lock: where `task`'s changelogs stand after `_write()`."""
        for c, (changes, last) in changelogs.items():
            count = len(changes)
            c.position = last + 1
            if task.standby:
                high = self._reader.high_watermark(c.topic, c.partition)
                c.end = max(c.end, c.position, high or 0)
            c.applied += count
            task.applied += count
            self._book.records_read[task.task_id] += count
            if self._listener is not None and not task.standby:
                self._tell(
                    partial(self._listener.on_batch_restored, task.task_id, c.topic, last, count)
                )

    def _end(self, end: PartitionEnd) -> None:
        entry = self._book.partitions.get((end.topic, end.partition))
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
                    extra=tasks_field([task.task_id]),
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
                    self._settings.end_offset_grace,
                    extra=tasks_field([task.task_id]),
                )
            return  # finished by a later end event, or by _check_open_transactions()
        self._finish(task, changelog)

    def _check_open_transactions(self) -> None:
        now = time.monotonic()
        for task, changelog in list(self._book.partitions.values()):
            since = changelog.open_transaction_since
            if (
                since is not None
                and now - since >= self._settings.end_offset_grace
                and not changelog.done
            ):
                _log.warning(
                    "task %s: a transaction in changelog %s[%d] is still open after %.1f s; "
                    "restored up to its last stable offset %d",
                    task.task_id,
                    changelog.topic,
                    changelog.partition,
                    now - since,
                    changelog.position,
                    extra=tasks_field([task.task_id]),
                )
                self._finish(task, changelog)

    def _finish(self, task: TaskRestore, changelog: ChangelogPosition) -> None:
        changelog.done = True
        if self._listener is not None:
            self._tell(
                partial(
                    self._listener.on_restore_end, task.task_id, changelog.topic, changelog.restored
                )
            )
        if all(c.done for c in task.changelogs):
            task.complete()
            seconds = max(time.monotonic() - task.started, 1e-9)
            _log.info(
                "task %s: restored %d records in %.1f s (%.0f records/s)",
                task.task_id,
                task.restored,
                seconds,
                task.restored / seconds,
                extra=tasks_field([task.task_id]),
            )
            self._complete(task)

    def _complete(self, task: TaskRestore) -> None:
        self._book.last_restore[task.task_id] = (task.restored, time.monotonic() - task.started)
        if task.partitions:
            self._book.forget_partitions(task)
            self._hold.release(self._book.to_unassign)
            self._reader.unassign(self._book.to_unassign)
            self._book.to_unassign = []
        # Handed back after the listener has heard of the end, as when it was called under the
        # lock: a task never processes before its `on_restore_end`.
        self._tell(partial(self._hand_back, task))

    def _hand_back(self, task: TaskRestore) -> None:
        """The main thread may take `task`'s backend (unless it removed the task meanwhile)."""
        with self._book.lock:
            if self._book.tasks.get(task.task_id) is task:
                del self._book.tasks[task.task_id]
                self._book.completed.append(task.task_id)

    def _log_progress(self) -> None:
        now = time.monotonic()
        for task in self._book.tasks.values():
            catching_up = task.state is RestoreState.STANDBY and not task.caught_up
            if (
                task.state is RestoreState.RESTORING or catching_up
            ) and now - task.last_log >= self._settings.progress_interval:
                task.last_log = now
                p = task.progress(now)
                _log.info(
                    "task %s: %s %d records, about %d remaining, %.0f records/s",
                    task.task_id,
                    "standby applied" if task.standby else "restored",
                    p.restored,
                    p.remaining,
                    p.rate,
                    extra=tasks_field([task.task_id]),
                )
