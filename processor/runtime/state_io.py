"""Opening and closing task state off the main loop.

Opening a task's RocksDB, or closing one (which flushes its memtables), takes 10-300 ms. On the
main loop that holds up every task that keeps running while others move: during a membership
change the tasks that did not move would stop for as long as the moved ones' state takes to
close and open. So it happens here, on one thread, in the order asked: a directory closed and
then opened again (a task given away and taken back) opens only after its close is done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from processor.ids import TaskId
from processor.state.backend import TaskStateBackend

__all__ = ["StateIO"]

log = logging.getLogger("processor.tasks")


class StateIO:
    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="processor-state-io")
        self._closing: dict[TaskId, Future[None]] = {}

    def open(self, opener: Callable[[], TaskStateBackend]) -> Future[TaskStateBackend]:
        return self._thread.submit(opener)

    def close(self, task_id: TaskId, backend: TaskStateBackend) -> None:
        """Close `backend` (after everything asked before); its directory counts as in use
        until then (`closing`)."""
        self._closing[task_id] = self._thread.submit(_close, task_id, backend)

    def close_once_open(self, task_id: TaskId, opening: Future[TaskStateBackend]) -> None:
        """Close what `opening` opens, once it has."""
        self._closing[task_id] = self._thread.submit(_close_opened, task_id, opening)

    def closing(self) -> set[TaskId]:
        """Tasks whose state is still to be closed."""
        for task_id in [t for t, f in self._closing.items() if f.done()]:
            del self._closing[task_id]
        return set(self._closing)

    def shutdown(self) -> None:
        """Wait for every open and close asked so far."""
        self._thread.shutdown(wait=True)


def _close(task_id: TaskId, backend: TaskStateBackend) -> None:
    try:
        backend.close()
    except Exception:
        # Its data is safe on disk up to the last checkpoint; the next open recovers the rest.
        log.exception("task %s: closing its state failed", task_id)


def _close_opened(task_id: TaskId, opening: Future[TaskStateBackend]) -> None:
    if opening.exception() is None:
        _close(task_id, opening.result())
