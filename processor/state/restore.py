"""Restoring tasks' stores from their changelogs, on a thread of its own.

The main thread hands a task over with `add()` (the task's backend, its stores' changelog
topics) and from then on leaves that backend alone until the task shows up in `completed()`, or
until `remove()` has returned. The restorer thread reads each changelog partition from the
task's checkpoint (stored offset + 1) to its end, and applies every batch it reads as one atomic
`backend.write()` of the changes together with the new offsets, so a restore interrupted at any
point resumes where it stopped.

A *standby* (`add(..., standby=True)`) takes the same path but never completes: once at the
end it stays assigned and applies what the active task's commits append, checkpointing every
batch like a restore, so that the task can later start (`promote()`) by reading only the tail.
The lifecycle of a task's restore, drawn with its legal transitions, is in
`processor.state.restore_task`.

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

One job per module: this one is `Restorer`, what the main thread calls;
`processor.state.restore_task` is one task's restore (its lifecycle, drawn with its transition
table, its offsets and counts); `processor.state.restore_thread` is the restorer thread's loop;
`processor.state.restore_protocols` is what the restorer reads from and whom it tells (no Kafka
imports: `import processor` loads no `confluent_kafka`).

Which thread owns what: `Restorer`'s methods are called on the main thread (`progress()`,
`progress_of()`, `records_read()` and `last_restore()` on any thread). The restorer thread
(`RestorerThread.run()`) is the only one to call the `ChangelogSource`, the listener, the wipe
callback and, between `add()` and `completed()` / `remove()`, a task's backend. What both
threads touch (a `RestoreBook` and the `TaskRestore` objects in it) is guarded by one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping

from processor.errors import ProcessorError
from processor.ids import TaskId, tasks_field
from processor.state.backend import TaskStateBackend
from processor.state.restore_protocols import ChangelogSource, RestoreListener
from processor.state.restore_task import RestoreProgress, RestoreState, TaskRestore
from processor.state.restore_thread import (
    RestoreBook,
    RestoreError,
    RestorerThread,
    RestoreSettings,
    WipeCallback,
)

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
        self._book = RestoreBook()
        self._lock = self._book.lock
        self._closed = False  # main thread only
        settings = RestoreSettings(
            batch_size=batch_size,
            poll_timeout=poll_timeout,
            request_timeout=request_timeout,
            progress_interval=progress_interval,
            end_offset_grace=end_offset_grace,
            retry_interval=retry_interval,
        )
        loop = RestorerThread(
            self._book, reader, wipe_callback=wipe_callback, listener=listener, settings=settings
        )
        self._thread = threading.Thread(target=loop.run, name="processor-restorer", daemon=True)
        self._thread.start()

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
            if task_id in self._book.tasks:
                raise ProcessorError(f"task {task_id} is already being restored")
            if task_id in self._book.completed:
                self._book.completed.remove(task_id)
            self._book.tasks[task_id] = TaskRestore.of(
                task_id, backend, changelogs, standby=standby
            )
            self._book.records_read.setdefault(task_id, 0)
            self._lock.notify_all()

    def promote(self, task_id: TaskId) -> None:
        """Turn the standby `task_id` into a restore of the same task (STANDBY -> PENDING): it
        reads from its checkpoint to the changelogs' current ends (only the tail, when it kept
        up) and then completes."""
        with self._lock:
            task = self._book.tasks.get(task_id)
            if task is None or not task.standby:
                raise ProcessorError(f"task {task_id} is not a standby here; cannot promote it")
            task.promote()
            self._book.forget_partitions(task)
            _log.info(
                "task %s: promoted from standby (%d records applied); reading the changelog tail",
                task_id,
                task.applied,
                extra=tasks_field([task_id]),
            )
            self._lock.notify_all()

    def last_restore(self, task_id: TaskId) -> tuple[int, float] | None:
        """(records read, seconds) of `task_id`'s last completed restore, if there was one."""
        with self._lock:
            return self._book.last_restore.get(task_id)

    def remove(self, task_ids: Iterable[TaskId]) -> None:
        """Stop restoring these tasks (and forget them if completed but not yet collected).
        Returns once the restorer thread no longer touches their backends."""
        task_ids = list(task_ids)
        with self._lock:
            self._lock.wait_for(lambda: not self._book.writing.intersection(task_ids))
            for task_id in task_ids:
                task = self._book.tasks.pop(task_id, None)
                if task is not None:
                    self._book.forget_partitions(task)
                    _log.info(
                        "task %s: restore stopped (%s)",
                        task_id,
                        task.state.value,
                        extra=tasks_field([task_id]),
                    )
                if task_id in self._book.completed:
                    self._book.completed.remove(task_id)
            self._lock.notify_all()

    def remove_all(self) -> None:
        with self._lock:
            self.remove(list(self._book.tasks))
            self._book.completed.clear()

    def completed(self) -> list[TaskId]:
        """Tasks restored since the last call; their backends are the caller's again."""
        with self._lock:
            done, self._book.completed = self._book.completed, []
            return done

    def progress(self) -> dict[TaskId, RestoreProgress]:
        """Every task added and neither completed nor removed."""
        now = time.monotonic()
        with self._lock:
            return {task_id: task.progress(now) for task_id, task in self._book.tasks.items()}

    def progress_of(self, task_id: TaskId) -> RestoreProgress | None:
        """`progress()` of one task (None: not added, or completed)."""
        with self._lock:
            task = self._book.tasks.get(task_id)
            return task.progress(time.monotonic()) if task is not None else None

    def records_read(self, task_id: TaskId) -> int:
        """Changelog records applied to `task_id`'s stores by this restorer, over all its
        restores."""
        with self._lock:
            return self._book.records_read.get(task_id, 0)

    def raise_if_failed(self) -> None:
        """Raise the error that stopped the restorer thread, if one did."""
        with self._lock:
            if self._book.failure is not None:
                raise self._book.failure

    def close(self) -> None:
        """Stop the thread and close the reader. Backends are left to their owners."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._book.stopping = True
            self._lock.notify_all()
        self._thread.join()
        self._reader.close()
