"""The tasks this worker runs: creating them for an assignment, restoring their state before
they process, routing records to them, closing them on a revoke.

A stateful task opens its RocksDB under `<state_dir>/<application_id>/<task_id>/` and is handed
to the restorer with its source partitions paused; when the restorer has brought every store to
its changelog's end, the task starts processing on the state it has. Stateless tasks start at
once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from processor.runtime.task import Partition, StreamTask, TaskState
from processor.runtime.task_id import TaskId
from processor.state.backend import TaskStateBackend
from processor.state.restore import Restorer
from processor.state.rocksdb import open_or_wipe, open_rocksdb, wipe
from processor.state.task_stores import TaskStores
from processor.topology.processors import Emitter
from processor.topology.subtopology import SubTopology

log = logging.getLogger("processor.tasks")


class TaskManager:
    def __init__(
        self,
        subtopologies: dict[int, SubTopology],
        emitter: Emitter,
        app_state_dir: Path,
        restorer_factory: Callable[[Callable[[TaskId, str], TaskStateBackend]], Restorer],
        *,
        max_dirty_per_store: int,
    ) -> None:
        self._subtopologies = subtopologies
        self._emitter = emitter
        self._state_dir = app_state_dir
        self._max_dirty = max_dirty_per_store
        self._restorer: Restorer | None = None
        if any(s.stateful for s in subtopologies.values()):
            self._restorer = restorer_factory(self._wipe_for_restorer)
        self.tasks: dict[TaskId, StreamTask] = {}
        self.by_partition: dict[Partition, StreamTask] = {}
        self._restoring: dict[TaskId, TaskStateBackend] = {}
        self._restore_started: dict[TaskId, float] = {}

    def task_dir(self, task_id: TaskId) -> Path:
        return self._state_dir / str(task_id)

    # -- assignment ------------------------------------------------------------------------

    def create(self, task_ids: list[TaskId]) -> list[Partition]:
        """Create the tasks; returns the source partitions to pause while their state restores."""
        to_pause: list[Partition] = []
        for task_id in task_ids:
            sub = self._subtopologies[task_id.subtopology]
            task = StreamTask(task_id, sub, self._emitter)
            self.tasks[task_id] = task
            if not sub.stateful:
                self._start(task, None)
                continue
            assert self._restorer is not None
            backend, _ = open_or_wipe(
                self.task_dir(task_id), [s.name for s in sub.stores], str(task_id), log
            )
            task.transition(TaskState.RESTORING)
            self._restoring[task_id] = backend
            self._restore_started[task_id] = time.monotonic()
            self._restorer.add(task_id, backend, sub.changelog_topics)
            to_pause.extend(task.partitions)
        return to_pause

    def all_partitions(self) -> list[Partition]:
        return [p for task in self.tasks.values() for p in task.partitions]

    def running(self) -> list[StreamTask]:
        return [t for t in self.tasks.values() if t.state is TaskState.RUNNING]

    def restoring_partitions(self) -> set[Partition]:
        return {p for task_id in self._restoring for p in self.tasks[task_id].partitions}

    @property
    def restoring(self) -> list[TaskId]:
        return sorted(self._restoring)

    def poll_restored(self) -> list[Partition]:
        """Start the tasks whose restore finished; returns their partitions to resume."""
        if self._restorer is None:
            return []
        self._restorer.raise_if_failed()
        to_resume: list[Partition] = []
        for task_id in self._restorer.completed():
            backend = self._restoring.pop(task_id, None)
            task = self.tasks.get(task_id)
            if backend is None or task is None:
                continue
            sub = self._subtopologies[task_id.subtopology]
            stores = TaskStores(
                backend, sub.stores, sub.changelog_topics, max_dirty_per_store=self._max_dirty
            )
            self._start(task, stores)
            to_resume.extend(task.partitions)
            seconds = time.monotonic() - self._restore_started.pop(task_id, time.monotonic())
            log.info("task %s: state restored in %.1fs, processing", task_id, seconds)
        return to_resume

    def _start(self, task: StreamTask, stores: TaskStores | None) -> None:
        task.start(stores)
        for partition in task.partitions:
            self.by_partition[partition] = task

    def needs_commit(self) -> bool:
        """A store's cache is full: commit now rather than let it grow."""
        return any(t.stores is not None and t.stores.needs_flush for t in self.tasks.values())

    def close_all(self) -> None:
        """Close every task and its state (call after committing what should be committed)."""
        if self._restorer is not None:
            self._restorer.remove_all()
        for backend in self._restoring.values():
            backend.close()
        self._restoring = {}
        for task in self.tasks.values():
            task.close()
        self.tasks = {}
        self.by_partition = {}

    def shutdown(self) -> None:
        self.close_all()
        if self._restorer is not None:
            self._restorer.close()

    # -- restorer callback (runs on the restorer thread) -----------------------------------

    def _wipe_for_restorer(self, task_id: TaskId, reason: str) -> TaskStateBackend:
        """The stored changelog offset of `task_id` is outside its changelog: start afresh."""
        log.warning("task %s: wiping local state and restoring from scratch: %s", task_id, reason)
        old = self._restoring[task_id]
        old.close()
        path = self.task_dir(task_id)
        wipe(path)
        sub = self._subtopologies[task_id.subtopology]
        fresh = open_rocksdb(path, [s.name for s in sub.stores])
        self._restoring[task_id] = fresh
        return fresh
