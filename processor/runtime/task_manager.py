"""The tasks this worker runs: creating them for an assignment, restoring their state before
they process, routing records to them, closing them on a revoke; and the standby copies it
keeps warm for tasks that may land here.

A stateful task opens its RocksDB under `<state_dir>/<application_id>/<task_id>/` and is handed
to the restorer; its source partitions are consumed only once the restorer has brought every
store to its changelog's end, and the task processes on the state it has. Stateless tasks start at
once. A standby is the same directory handed to the restorer as a standby: it follows the
changelogs until the task becomes active here (promotion: only the tail is read) or is no
longer wanted here (its directory stays, for the state cleaner to delete after a delay).
Active tasks are closed when they move to another worker (or on a lost membership, a rewind);
the others, and standbys, live on across rebalances.

Queries read a task's copy from the HTTP threads (`read()`). The lock that opening and closing
take is held only to find the copy and count the read in (`store_readers`); the read itself runs
without it, so a page of a whole-store query never holds up a rebalance. Closing a copy waits
for the reads counted in, at most `READ_DRAIN_TIMEOUT_S`; a read still running then is
answered "no copy" (its scan was cut short by the close), never with a partial result.

The store caches of every active task charge one `MemoryBudget`, the worker's; when their
changes fill it, `needs_commit()` says so and the worker commits early.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from processor.ids import Partition, TaskId, tasks_field, tasks_text
from processor.kafka.consumer import Message
from processor.runtime.async_channel import AsyncChannel
from processor.runtime.async_runner import AsyncRunner
from processor.runtime.sink_channel import ChannelState, SinkChannel
from processor.runtime.source_task import SourceRuntime, SourceTask
from processor.runtime.state_io import StateIO
from processor.runtime.store_readers import Readers
from processor.runtime.task import StreamTask, TaskOptions, TaskState
from processor.sinks.base import Sink, SinkTask
from processor.state.backend import TaskStateBackend
from processor.state.budget import MemoryBudget
from processor.state.indexing import backend_stores, unwrapped, with_indexes
from processor.state.restore import RestoreProgress, Restorer, RestoreState
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
        memory: MemoryBudget,
        task_options: TaskOptions | None = None,
        sink_metrics: Callable[[str], Callable[[str, float], None]] | None = None,
        sources: SourceRuntime | None = None,
    ) -> None:
        self._subtopologies = subtopologies
        self._emitter = emitter
        self._task_options = task_options or TaskOptions()
        self._state_dir = app_state_dir
        self.memory = memory
        """The worker's memory budget, charged by the store caches of its active tasks."""
        self._restorer: Restorer | None = None
        if any(s.stateful for s in subtopologies.values()):
            self._restorer = restorer_factory(self._wipe_for_restorer)
        self.tasks: dict[TaskId, StreamTask] = {}
        self.by_partition: dict[Partition, StreamTask] = {}
        # Where a consumed record of each partition goes: its task's `process`, or, for a task
        # with several input partitions, its `buffer` (`synchronised`).
        self.routes: dict[Partition, Callable[[Message], None]] = {}
        # Running tasks with several input partitions, whose records wait in buffers.
        self.synchronised: list[StreamTask] = []
        self.standbys: set[TaskId] = set()
        # State opening on `_state_io`, of standbys and of active tasks (`_adopt_opened`).
        self._standbys_opening: dict[TaskId, Future[TaskStateBackend]] = {}
        self._actives_opening: dict[TaskId, Future[TaskStateBackend]] = {}
        self._state_io = StateIO()
        # Backends the restorer owns: restoring active tasks and standbys.
        self._backends: dict[TaskId, TaskStateBackend] = {}
        self._restoring: set[TaskId] = set()
        self._restore_started: dict[TaskId, float] = {}
        # Held while a backend opens or closes here and while a query finds one (from the HTTP
        # threads; the read itself runs without it, counted in `_readers`). Never held while
        # calling the restorer, whose thread takes it in the wipe callback while holding its own
        # lock.
        self._open_lock = threading.RLock()
        self._readers = Readers()
        # Per active task: changelog records its last restore read before it started processing.
        self.restored_before_start: dict[TaskId, int] = {}
        # Sink tasks whose writer is opening (`processor.runtime.sink_channel`); where opened
        # sink tasks start reading, when their destination says (`take_start_offsets`).
        self._opening: set[TaskId] = set()
        self._start_offsets: dict[Partition, int] = {}
        # Partitions of tasks that started at their creation (stateless), not yet consumed.
        self._ready: list[Partition] = []
        self.sink_metrics = sink_metrics
        # What source tasks need (`processor.runtime.source_task`); given when the topology
        # has sources outside Kafka.
        self._sources = sources
        # The event loop of async operators' calls, when the topology has any.
        self.async_runner: AsyncRunner | None = None

    def task_dir(self, task_id: TaskId) -> Path:
        return self._state_dir / str(task_id)

    # -- assignment ------------------------------------------------------------------------

    def is_stateful(self, task_id: TaskId) -> bool:
        return self._subtopologies[task_id.subtopology].stateful

    def create(self, task_ids: list[TaskId]) -> None:
        """Create the active tasks: stateless ones run at once, stateful ones restore first
        (`poll_restored()` says when they run). A task held here as a standby is promoted: it
        reads only the changelog tail."""
        task_ids = [t for t in task_ids if t not in self.tasks]
        for task_id in task_ids:
            sub = self._subtopologies[task_id.subtopology]
            task = StreamTask(task_id, sub, self._emitter, self._task_options)
            task.async_runner = self.async_runner
            self.tasks[task_id] = task
            if sub.external_sink is not None:
                self._open_sink(task, sub.external_sink.external)
                continue
            if sub.source is not None:
                assert self._sources is not None, "a topology with sources needs a SourceRuntime"
                # Opens on a thread of its own; runs once it has (`poll_opened`).
                task.source_task = SourceTask(task_id, sub.source, self._sources)
                task.transition(TaskState.RESTORING)
                self._opening.add(task_id)
                continue
            if not sub.stateful:
                self._start(task, None)
                self._ready.extend(task.partitions)
                continue
            assert self._restorer is not None
            task.transition(TaskState.RESTORING)
            self._restoring.add(task_id)
            self._restore_started[task_id] = time.monotonic()
            if task_id in self._standbys_opening:  # its state is opening: restore it in full
                self._actives_opening[task_id] = self._standbys_opening.pop(task_id)
            elif task_id in self.standbys:
                self.standbys.discard(task_id)
                self._restorer.promote(task_id)
            else:
                self._actives_opening[task_id] = self._state_io.open(partial(self._open, task_id))
        if task_ids:
            log.info(
                "tasks [%s] created: [%s] processing, the others restoring or opening first",
                tasks_text(task_ids),
                tasks_text(t for t in task_ids if self.tasks[t].state is TaskState.RUNNING),
                extra=tasks_field(task_ids),
            )

    def _open_sink(self, task: StreamTask, sink: Sink) -> None:
        """A sink task reads nothing before its writer has opened (and said where to resume)."""
        [(topic, partition)] = task.partitions
        where = SinkTask(sink.name, task.subtopology.application_id, topic, partition)
        observe = self.sink_metrics(sink.name) if self.sink_metrics is not None else None
        task.sink_channel = SinkChannel(sink, where, observe=observe)
        task.transition(TaskState.RESTORING)
        self._opening.add(task.id)

    def poll_opened(self) -> list[Partition]:
        """Start the sink tasks whose writer opened; returns their partitions, and those of
        stateless tasks created since the last call, to consume (from `take_start_offsets`
        where the destination keeps its own progress)."""
        started, self._ready = self._ready, []
        for task_id in sorted(self._opening):
            task = self.tasks[task_id]
            source = task.source_task
            if source is not None:
                source.raise_if_failed()
                if source.opened:
                    self._opening.discard(task_id)
                    self._start(task, None)
                continue
            channel = task.sink_channel
            assert channel is not None
            channel.raise_if_failed()
            if channel.state is not ChannelState.OPEN:
                continue
            self._opening.discard(task_id)
            self._start(task, None)
            started.extend(task.partitions)
            if channel.resume_at is not None:
                self._start_offsets[channel.partition] = channel.resume_at
        return started

    def drain_sinks(self, seconds: float) -> None:
        """Let the sink tasks' writers finish their batches (up to `seconds` in all), before
        the tasks' last commit here."""
        deadline = time.monotonic() + seconds
        for channel in self.sink_channels:
            channel.drain(max(0.0, deadline - time.monotonic()))

    def drain_async(self, seconds: float, before_output: Callable[[], None]) -> None:
        """Let the async operators' running calls finish (up to `seconds`) and their results
        go on, before the tasks' last commit here: less is called again by the next owner."""
        runner = self.async_runner
        if runner is None:
            return
        deadline = time.monotonic() + seconds
        while any(c.running for c in self.async_channels) and time.monotonic() < deadline:
            if runner.completed:
                before_output()
                runner.pump()
            else:
                time.sleep(0.002)

    @property
    def async_channels(self) -> list[AsyncChannel]:
        return [
            c
            for t in self.tasks.values()
            if t.state is TaskState.RUNNING
            for c in t.async_channels.values()
        ]

    def take_start_offsets(self) -> dict[Partition, int]:
        offsets, self._start_offsets = self._start_offsets, {}
        return offsets

    @property
    def sink_channels(self) -> list[SinkChannel]:
        return [
            t.sink_channel
            for t in self.tasks.values()
            if t.sink_channel is not None and t.state is TaskState.RUNNING
        ]

    @property
    def source_tasks(self) -> list[SourceTask]:
        """The running tasks' sources outside Kafka, to poll."""
        return [
            t.source_task
            for t in self.tasks.values()
            if t.source_task is not None and t.state is TaskState.RUNNING
        ]

    def set_standbys(self, wanted: set[TaskId]) -> None:
        """Keep standbys for exactly `wanted` (stateful tasks not active here): start the new
        ones, stop and close the others (their directories stay)."""
        wanted = {t for t in wanted if t not in self.tasks and self.is_stateful(t)}
        dropped = self.standbys - wanted
        if dropped:
            assert self._restorer is not None
            self._restorer.remove(dropped)
            with self._open_lock:
                self.standbys -= dropped
                closing = {task_id: self._backends.pop(task_id) for task_id in dropped}
                self._readers.drain(list(closing.values()))
                for task_id, backend in closing.items():
                    self._state_io.close(task_id, backend)
        for task_id in sorted(set(self._standbys_opening) - wanted):
            self._state_io.close_once_open(task_id, self._standbys_opening.pop(task_id))
        for task_id in sorted(wanted - self.standbys - set(self._standbys_opening)):
            self._standbys_opening[task_id] = self._state_io.open(partial(self._open, task_id))

    def _adopt_opened(self) -> None:
        """Hand the standbys and active tasks whose state has opened (`state_io.py`) to the
        restorer."""
        for standby, opening_now in (
            (True, self._standbys_opening),
            (False, self._actives_opening),
        ):
            for task_id, opening in list(opening_now.items()):
                if not opening.done():
                    continue
                del opening_now[task_id]
                assert self._restorer is not None
                sub = self._subtopologies[task_id.subtopology]
                with self._open_lock:
                    self._backends[task_id] = opening.result()
                self._restorer.add(
                    task_id, self._backends[task_id], sub.changelog_topics, standby=standby
                )
                if standby:
                    with self._open_lock:
                        self.standbys.add(task_id)

    def standby_progress(self) -> dict[TaskId, RestoreProgress]:
        """Where each standby stands (missing: not yet started reading)."""
        if self._restorer is None:
            return {}
        return {t: p for t, p in self._restorer.progress().items() if t in self.standbys}

    def restore_progress(self) -> dict[TaskId, RestoreProgress]:
        return self._restorer.progress() if self._restorer is not None else {}

    def records_restored(self) -> dict[TaskId, int]:
        """Changelog records applied per task by this worker's restorer, ever."""
        if self._restorer is None:
            return {}
        return {t: self._restorer.records_read(t) for t in self.held()}

    def follow_standbys(self) -> None:
        """Between assignments (a joiner warming up): hand the standbys whose state has opened
        to the restorer; raise what the restorer failed with."""
        if self._restorer is not None:
            self._restorer.raise_if_failed()
            self._adopt_opened()

    def read(
        self, task_id: TaskId, read: Callable[[TaskStateBackend], Any], *, standby: bool
    ) -> tuple[Any, str, int] | None:
        """`read(backend)` on this worker's copy of `task_id` (any thread): the running active
        task's committed state, or a standby's; (result, role, lag) or None: no such copy, or
        it was closed before the read ended. The open lock is held only to find the copy."""
        restorer = self._restorer
        progress = restorer.progress_of(task_id) if standby and restorer is not None else None
        with self._open_lock:
            task = self.tasks.get(task_id)
            if task is not None and task.state is TaskState.RUNNING and task.stores is not None:
                backend, role, lag = task.stores.backend, "active", 0
            elif standby and task_id in self.standbys and task_id in self._backends:
                started = progress is not None and progress.state is not RestoreState.PENDING
                lag = progress.remaining if progress is not None and started else -1
                backend, role = self._backends[task_id], "standby"
            else:
                return None
            self._readers.enter(backend)
        try:
            value = read(backend)
        except Exception:
            if self._readers.leave(backend):
                raise
            return None  # closed under the read: the close's doing, not an error of the read
        except BaseException:
            self._readers.leave(backend)
            raise
        if not self._readers.leave(backend):
            return None
        return value, role, lag

    def held(self) -> set[TaskId]:
        """Task ids whose state directory is in use here (active or standby, or opening)."""
        return (
            set(self.tasks) | self.standbys | set(self._standbys_opening) | self._state_io.closing()
        )

    def _open(self, task_id: TaskId) -> TaskStateBackend:
        sub = self._subtopologies[task_id.subtopology]
        backend, _ = open_or_wipe(
            self.task_dir(task_id), backend_stores(sub.stores), str(task_id), log
        )
        # What the restorer writes: stores with an index get the entries their changelog
        # records imply.
        return with_indexes(backend, sub.stores)

    def running_partitions(self) -> list[Partition]:
        return [p for task in self.running() for p in task.partitions]

    def running(self) -> list[StreamTask]:
        return [t for t in self.tasks.values() if t.state is TaskState.RUNNING]

    @property
    def timed(self) -> list[StreamTask]:
        """Running tasks that keep stream time (their operators work with event time)."""
        return [t for t in self.tasks.values() if t.timed and t.state is TaskState.RUNNING]

    @property
    def restoring(self) -> list[TaskId]:
        return sorted(self._restoring)

    def poll_restored(self) -> list[Partition]:
        """Start the tasks whose restore finished; returns their partitions, to consume."""
        if self._restorer is None:
            return []
        self._restorer.raise_if_failed()
        self._adopt_opened()
        to_resume: list[Partition] = []
        for task_id in self._restorer.completed():
            task = self.tasks.get(task_id)
            if task_id not in self._restoring or task is None:
                continue
            self._restoring.discard(task_id)
            with self._open_lock:
                backend = self._backends.pop(task_id)
            sub = self._subtopologies[task_id.subtopology]
            stores = TaskStores(
                unwrapped(backend), sub.stores, sub.changelog_topics, memory=self.memory
            )
            with self._open_lock:
                self._start(task, stores)
            to_resume.extend(task.partitions)
            seconds = time.monotonic() - self._restore_started.pop(task_id, time.monotonic())
            last = self._restorer.last_restore(task_id)
            records = last[0] if last is not None else 0
            self.restored_before_start[task_id] = records
            log.info(
                "task %s: state restored in %.1fs (%d changelog records read), processing",
                task_id,
                seconds,
                records,
                extra=tasks_field([task_id]),
            )
        return to_resume

    def _start(self, task: StreamTask, stores: TaskStores | None) -> None:
        task.start(stores)
        for partition in task.partitions:
            self.by_partition[partition] = task
            self.routes[partition] = task.process if task.inputs is None else task.buffer
        if task.inputs is not None:
            self.synchronised.append(task)

    def overfull_partitions(self) -> set[Partition]:
        """Partitions holding so many buffered records that fetching them should pause: a
        task's input buffers, or a sink's records waiting for its writer."""
        overfull = {p for t in self.synchronised if t.inputs for p in t.inputs.over_limit()}
        overfull.update(c.partition for c in self.sink_channels if c.over_limit())
        if self.async_runner is not None:
            overfull.update(c.partition for c in self.async_channels if c.over_limit())
        return overfull

    def needs_commit(self) -> bool:
        """The store caches' changes fill the memory budget: commit now rather than let them
        grow."""
        return self.memory.is_full

    def close_active(self) -> None:
        """Close every active task and its state (call after committing what should be
        committed). Standbys go on."""
        self.close(list(self.tasks))

    def close(self, task_ids: list[TaskId]) -> list[Partition]:
        """Close the active tasks `task_ids` and their state (call after committing what should
        be committed); the others go on. Returns the partitions they consumed, to stop
        consuming."""
        closing = {t: self.tasks[t] for t in task_ids if t in self.tasks}
        if not closing:
            return []
        restoring = self._restoring & set(closing)
        if self._restorer is not None and restoring:
            self._restorer.remove(restoring)
        with self._open_lock:
            for task_id in restoring:
                if task_id in self._actives_opening:
                    self._state_io.close_once_open(task_id, self._actives_opening.pop(task_id))
                else:
                    self._state_io.close(task_id, self._backends.pop(task_id))
            self._restoring -= restoring
            self._opening -= set(closing)
            backends = {t.id: t.stores.backend for t in closing.values() if t.stores}
            self._readers.drain(list(backends.values()))
            partitions = [p for task in closing.values() for p in task.partitions]
            for partition in partitions:
                self._start_offsets.pop(partition, None)
                self.by_partition.pop(partition, None)
                self.routes.pop(partition, None)
            self._ready = [p for p in self._ready if p not in set(partitions)]
            for task in closing.values():
                task.close(close_backend=False)
                del self.tasks[task.id]
            for task_id, backend in backends.items():
                self._state_io.close(task_id, backend)
            self.synchronised = [t for t in self.synchronised if t.id not in closing]
            log.info("tasks [%s] closed", tasks_text(closing), extra=tasks_field(closing))
        return partitions

    def shutdown(self) -> None:
        self.close_active()
        self.set_standbys(set())
        self._state_io.shutdown()
        if self._restorer is not None:
            self._restorer.close()

    # -- restorer callback (runs on the restorer thread) -----------------------------------

    def _wipe_for_restorer(self, task_id: TaskId, reason: str) -> TaskStateBackend:
        """The stored changelog offset of `task_id` is outside its changelog: start afresh."""
        log.warning(
            "task %s: wiping local state and restoring from scratch: %s",
            task_id,
            reason,
            extra=tasks_field([task_id]),
        )
        with self._open_lock:
            old = self._backends[task_id]
            self._readers.drain([old])
            old.close()
            path = self.task_dir(task_id)
            wipe(path)
            sub = self._subtopologies[task_id.subtopology]
            fresh = with_indexes(open_rocksdb(path, backend_stores(sub.stores)), sub.stores)
            self._backends[task_id] = fresh
            return fresh
