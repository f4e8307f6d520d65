"""The worker: one process, one group member, running the tasks assigned to it.

Lifecycle (illegal transitions raise):

```
CREATED --> STARTING --> WAITING_FOR_MEMBERS <--> RUNNING
                |              |                    |
                +--------------+--------------------+--> PENDING_SHUTDOWN --> STOPPED
                                                    +--> FAILED
```

The worker only orchestrates. At startup it builds its collaborators once (`Collaborators`),
then runs the loop over them; calls go down from it, never back up:

- `TaskPlan` (task_plan.py): the topics, the task list and this worker's identity;
- `Output` (output.py): the emitter sinks write through, over the producer;
- `Committer` (commit.py): the commit protocol, at-least-once or transactional;
- `TaskManager` (task_manager.py): active tasks, their restores, standbys;
- `Rebalancer` (rebalance.py): from the group's members to this worker's tasks;
- `StatusPublisher` (status_publisher.py): the metadata topic and /metrics;
- `WarmUp` (joining.py): restoring before joining a running application.

One pass of the loop (`_run_once`): follow the group (a pending generation is accepted and
applied), let restored tasks join the consumer's assignment, consume a batch, route each record
to its task (`StreamTask.process`, through the operators to `Output.emit`), and every commit
interval commit. A task with several input partitions buffers its records instead and processes
them lowest timestamp first (`_process_buffered`). Once a second, housekeeping: the metadata
topic, pre-warming for joiners, the status, the source topics' partition counts, the state
cleaner and the metrics.
"""

from __future__ import annotations

import logging
import signal
import time
from contextlib import ExitStack
from enum import Enum
from functools import partial
from types import FrameType
from typing import Any

from processor.config import WorkerConfig
from processor.dsl.topology import Topology
from processor.errors import BrokerError, DuplicateInstanceError, ProcessorError
from processor.kafka.consumer import is_fatal, is_partition_eof
from processor.metrics import WorkerMetrics
from processor.runtime.assembly import Collaborators, WorkerParts, assemble
from processor.runtime.async_runner import AsyncRunner
from processor.runtime.dispatch import dispatch
from processor.runtime.instance import StateDirLock, resolve_instance_id
from processor.runtime.joining import POLL_INTERVAL_S, WarmUp
from processor.runtime.preflight import preflight
from processor.status.record import InstancePhase
from processor.topology.handling import Accounting, ErrorHandling
from processor.topology.subtopology import SubTopology, deserialization_overrides

log = logging.getLogger("processor.worker")


class WorkerState(Enum):
    CREATED = "created"
    STARTING = "starting"
    WAITING_FOR_MEMBERS = "waiting_for_members"
    RUNNING = "running"
    PENDING_SHUTDOWN = "pending_shutdown"
    STOPPED = "stopped"
    FAILED = "failed"


_TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.CREATED: frozenset({WorkerState.STARTING, WorkerState.FAILED}),
    WorkerState.STARTING: frozenset(
        {WorkerState.WAITING_FOR_MEMBERS, WorkerState.PENDING_SHUTDOWN, WorkerState.FAILED}
    ),
    WorkerState.WAITING_FOR_MEMBERS: frozenset(
        {
            WorkerState.WAITING_FOR_MEMBERS,
            WorkerState.RUNNING,
            WorkerState.PENDING_SHUTDOWN,
            WorkerState.FAILED,
        }
    ),
    WorkerState.RUNNING: frozenset(
        {WorkerState.WAITING_FOR_MEMBERS, WorkerState.PENDING_SHUTDOWN, WorkerState.FAILED}
    ),
    WorkerState.PENDING_SHUTDOWN: frozenset({WorkerState.STOPPED, WorkerState.FAILED}),
    WorkerState.STOPPED: frozenset(),
    WorkerState.FAILED: frozenset(),
}

# How long one consume() call may wait for records. librdkafka's batch consume waits the whole
# timeout when fewer records than the batch size arrive, so this bounds end-to-end latency too.
_CONSUME_TIMEOUT_S = 0.1
# ... and while async calls are running, whose results should not wait that long.
_ASYNC_WAIT_S = 0.005
# ... and while a generation is being taken (the group's snapshot, other workers letting go of
# the tasks gained): each step is a round trip away, and the tasks wait for the last one.
_SETTLING_WAIT_S = 0.01
_DUPLICATE_LINGER_S = 3.0
_HOUSEKEEPING_INTERVAL_S = 1.0
# Status is republished this often while warming up or pre-warming for a joiner, else this often.
_STATUS_BUSY_INTERVAL_S = 1.0
_STATUS_IDLE_INTERVAL_S = 10.0
_CLEANUP_INTERVAL_S = 5.0
# How often the source topics' partition counts are read again: a topic that gained partitions
# changes the task list, and with it the fingerprint every worker must agree on.
_PARTITION_CHECK_INTERVAL_S = 10.0


class Worker:
    def __init__(self, topology: Topology, config: WorkerConfig) -> None:
        self.topology = topology
        self.config = config
        self.state = WorkerState.CREATED
        self.instance_id = ""
        self.metrics = WorkerMetrics()
        self.http_port: int | None = None
        self.endpoint: str | None = None
        self._subtopologies: dict[int, SubTopology] = {
            s.id: s for s in topology.subtopologies(config.application_id)
        }
        # Where every input record ended (output, filtered, skipped, dead-lettered), committed.
        self.accounting = Accounting()
        self.handling = ErrorHandling(
            deserialization=config.deserialization_error_handler,
            processing=config.processing_error_handler,
            production=config.production_error_handler,
            late=config.late_record_handler,
            dead_letter_topic=config.dead_letters,
            source_overrides=deserialization_overrides(self._subtopologies.values()),
        )
        self._stop_requested = False
        self._resources = ExitStack()
        self._on_failure = ExitStack()
        self._next_housekeeping = 0.0
        self._next_status = 0.0
        self._next_cleanup = 0.0
        self._next_partition_check = 0.0
        self._rebalances_published = 0

    # -- lifecycle -------------------------------------------------------------------------

    def _transition(self, target: WorkerState) -> None:
        if target not in _TRANSITIONS[self.state]:
            raise ProcessorError(
                f"worker {self.instance_id or '?'}: illegal transition "
                f"{self.state.value} -> {target.value}"
            )
        if target is not self.state:
            log.info("worker %s: %s -> %s", self.instance_id, self.state.value, target.value)
        self.state = target

    def request_stop(self) -> None:
        """Finish the current batch, commit, leave the group, return from `run()`."""
        self._stop_requested = True

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info(
                "worker %s: received %s, stopping", self.instance_id, signal.Signals(signum).name
            )
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> None:
        """Start, process until asked to stop, shut down cleanly. Raises on a fatal error."""
        with self._resources:
            try:
                parts = self._start()
                if not self._stop_requested:
                    self._join(parts)
                while not self._stop_requested:
                    self._run_once(parts)
                self._transition(WorkerState.PENDING_SHUTDOWN)
                self._shutdown(parts)
            except DuplicateInstanceError:
                # Stay in the group a moment so the twin sees the same snapshot and stops too;
                # leaving at once would let it carry on alone and hide the mistake.
                self.state = WorkerState.FAILED
                time.sleep(_DUPLICATE_LINGER_S)
                self._on_failure.close()
                raise
            except BaseException:
                self.state = WorkerState.FAILED
                self._on_failure.close()  # leave the group without committing anything more
                raise
        self._transition(WorkerState.STOPPED)

    def _start(self) -> Collaborators:
        """Build every collaborator (assembly.py)."""
        self._transition(WorkerState.STARTING)
        cfg = self.config
        preflight(cfg)  # configuration mistakes fail here, one line each
        self._resources.callback(StateDirLock(cfg.app_state_dir).release)
        self.instance_id = resolve_instance_id(cfg.instance_id, cfg.app_state_dir)
        made = WorkerParts(
            topology=self.topology,
            config=cfg,
            instance_id=self.instance_id,
            subtopologies=self._subtopologies,
            handling=self.handling,
            accounting=self.accounting,
            metrics=self.metrics,
        )
        parts = assemble(made, self._resources, self._on_failure)
        if parts.http is not None:
            self.endpoint, self.http_port = parts.http.endpoint, parts.http.port
        parts.committer.guard = partial(self._may_commit, parts)
        return parts

    def _join(self, parts: Collaborators) -> None:
        """Warm up when joining a running application, then join the group."""
        while not self._stop_requested and not parts.global_tables.restored():
            self._refresh_metrics(parts)  # tasks wait for the global tables to load
            time.sleep(POLL_INTERVAL_S)
        warm_up = WarmUp(
            self.config, parts.plan, parts.admin, parts.tasks, parts.status, parts.rebalancer
        )
        while not self._stop_requested and not warm_up.step():
            self._refresh_metrics(parts)
            time.sleep(POLL_INTERVAL_S)
        if self._stop_requested:
            return
        self._raise_if_http_failed(parts)
        parts.rebalancer.subscribe()
        parts.stalls.tick()
        self._transition(WorkerState.WAITING_FOR_MEMBERS)

    # -- main loop -------------------------------------------------------------------------

    def _run_once(self, parts: Collaborators) -> None:
        now = time.monotonic()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + _HOUSEKEEPING_INTERVAL_S
            self._housekeeping(parts, now)
        self._follow_group(parts)
        restored = parts.tasks.poll_restored() + parts.tasks.poll_opened()
        if restored:
            try:
                committed = parts.consumer.add(restored, start_at=parts.tasks.take_start_offsets())
            except BrokerError as e:  # their committed offsets could not be read
                self._after_failed_processing(parts, e)
                return
            for started in {parts.tasks.by_partition[p] for p in restored}:
                started.resume(committed)
                if started.due():
                    # What its stream time already passed: windows that expired meanwhile
                    # (a restore brings them back; expiry is not in the changelog) go now.
                    parts.committer.before_output()
                    try:
                        started.fire_idle()
                    except BrokerError as e:
                        self._after_failed_processing(parts, e)
                        return
        parts.stalls.tick()
        runner = parts.tasks.async_runner
        # Results of async calls come back meanwhile: wait for records only briefly then.
        wait = _CONSUME_TIMEOUT_S if runner is None or not runner.in_flight else _ASYNC_WAIT_S
        if not parts.rebalancer.settled and not parts.rebalancer.group_view().outvoted:
            wait = min(wait, _SETTLING_WAIT_S)  # (outvoted, it waits for the group to agree)
        messages = parts.consumer.consume(self.config.consume_batch_size, wait)
        parts.stalls.tick()
        # Rebalance callbacks ran inside consume(). A new generation is taken at the next pass,
        # once the records fetched before it are left behind.
        self._show_group_state(parts)
        if messages:
            parts.committer.before_output()
        began = time.perf_counter()
        failed = partial(self._after_failed_processing, parts)
        if not dispatch(messages, parts.tasks.routes, self._handle_consume_error, failed):
            return
        if messages:
            parts.measurements.batch_processed(messages, began)
        if parts.tasks.synchronised and not self._process_buffered(parts):
            return
        if runner is not None and not self._serve_async(parts, runner):
            return
        if parts.tasks.sink_channels:
            self._serve_sinks(parts)
        if parts.tasks.source_tasks and not self._serve_sources(parts):
            return
        self._advance_time(parts)
        parts.tasks.memory.tidy()  # closed tasks' cached reads, a slice per batch
        parts.stalls.tick()
        if parts.stalls.suspect and not self._still_a_member(parts):
            return
        self._commit(parts)

    def _process_buffered(self, parts: Collaborators) -> bool:
        """Tasks with several input partitions process their buffered records, lowest timestamp
        first, as far as `processor.topology.partition_group`'s rule lets them; inputs with too
        many buffered records stop being fetched until they drain. False after a failure."""
        now_ms = int(time.monotonic() * 1000)
        lag = parts.consumer.fetched_lag
        opened = False
        try:
            for task in parts.tasks.synchronised:
                while (message := task.next_buffered(now_ms, lag)) is not None:
                    if not opened:
                        parts.committer.before_output()
                        opened = True
                    task.process(message)
            parts.consumer.pause_only(parts.tasks.overfull_partitions())
        except BrokerError as e:
            self._after_failed_processing(parts, e)
            return False
        return True

    def _serve_async(self, parts: Collaborators, runner: AsyncRunner) -> bool:
        """Let the results of async calls go on through their tasks; pause the partitions
        whose records wait for a call. False after a failure."""
        if runner.completed:
            parts.committer.before_output()
            try:
                runner.pump()
            except BrokerError as e:
                self._after_failed_processing(parts, e)
                return False
        parts.consumer.pause_only(parts.tasks.overfull_partitions())
        return True

    def _serve_sinks(self, parts: Collaborators) -> None:
        """Hand the sinks' batches to their writers when due; pause the input of a sink whose
        writer is behind (and of tasks with full input buffers, as `_process_buffered` does)."""
        now = time.monotonic()
        for channel in parts.tasks.sink_channels:
            if channel.fenced:
                # Another worker has the task, or the writer lost what it had not published:
                # start the tasks over from what the group and the destinations say.
                log.warning("sink %s: %s; taking the tasks again", channel.sink.name, channel.error)
                parts.rebalancer.rewind()
                return
            channel.raise_if_failed()
            channel.tick(now)
        parts.consumer.pause_only(parts.tasks.overfull_partitions())

    def _serve_sources(self, parts: Collaborators) -> bool:
        """Poll the sources outside Kafka that are due, producing what they read (in the
        transaction, under exactly-once). False after a failure."""
        now = time.monotonic()
        for source in parts.tasks.source_tasks:
            source.raise_if_failed()
            if not source.due(now):
                continue
            try:
                source.poll(now, parts.committer.before_output)
            except BrokerError as e:
                self._after_failed_processing(parts, e)
                return False
        return True

    def _advance_time(self, parts: Collaborators) -> None:
        """Let the wall clock move the stream time of idle tasks (`--idle-advance-ms`), and
        their windows close."""
        now_ms = int(time.time() * 1000)
        for task in parts.tasks.timed:
            if task.tick(now_ms):
                parts.committer.before_output()  # what closes is produced in the transaction
                try:
                    task.fire_idle()
                except BrokerError as e:
                    self._after_failed_processing(parts, e)
                    return

    def _commit(self, parts: Collaborators) -> None:
        if parts.rebalancer.commits_held:
            return  # a rebalance is under way: the group would refuse it
        try:
            if parts.tasks.needs_commit():
                parts.committer.commit(parts.tasks.running())
            else:
                parts.committer.maybe_commit(parts.tasks.running(), self.config.commit_interval_ms)
        except BrokerError as e:
            self._after_failed_commit(parts, e)
        stale_limits = parts.committer.take_stale_limits()
        if stale_limits:
            parts.output.reread_limits(stale_limits)

    def _may_commit(self, parts: Collaborators) -> bool:
        """Right before a commit writes: a stall since the loop last looked (the worker stopped
        between that look and the commit) is asked about first."""
        parts.stalls.tick()
        return not parts.stalls.suspect or self._still_a_member(parts)

    def _still_a_member(self, parts: Collaborators) -> bool:
        """After a stall (stall.py): nothing more is written before the group says this worker
        is still a member."""
        stalled_s = parts.stalls.stalled_s
        if not parts.tasks.tasks:
            parts.stalls.clear()  # nothing to write
            return True
        member = parts.rebalancer.still_a_member(stalled_s)
        if member is None:
            return False  # ask again at the next pass
        parts.stalls.clear()
        self._show_group_state(parts)
        return member

    def _follow_group(self, parts: Collaborators) -> None:
        """Take a pending generation; tell the application once this worker runs it."""
        rebalancer = parts.rebalancer
        rebalancer.poll()
        self._show_group_state(parts)
        if rebalancer.rebalances != self._rebalances_published and rebalancer.settled:
            self._rebalances_published = rebalancer.rebalances
            rebalancer.publish_status()

    def _show_group_state(self, parts: Collaborators) -> None:
        """The worker's state says whether it runs the group's current generation."""
        if self.state in (WorkerState.RUNNING, WorkerState.WAITING_FOR_MEMBERS):
            settled = parts.rebalancer.settled
            target = WorkerState.RUNNING if settled else WorkerState.WAITING_FOR_MEMBERS
            if target is not self.state:
                self._transition(target)

    def _housekeeping(self, parts: Collaborators, now: float) -> None:
        """Once a second: follow the metadata topic, pre-warm for joiners, publish status and
        metrics, follow the source topics' partition counts, delete long-unused task
        directories."""
        self._raise_if_http_failed(parts)
        parts.status.follow()
        parts.global_tables.check()
        parts.rebalancer.follow_load(now)
        if parts.rebalancer.update_prewarm():
            self._next_status = 0.0
        busy = bool(parts.rebalancer.joiners) or any(
            not p.caught_up for p in parts.tasks.standby_progress().values()
        )
        if self.state is WorkerState.RUNNING and now >= self._next_status:
            parts.rebalancer.publish_status()
            self._next_status = now + (_STATUS_BUSY_INTERVAL_S if busy else _STATUS_IDLE_INTERVAL_S)
        if now >= self._next_partition_check:
            self._next_partition_check = now + _PARTITION_CHECK_INTERVAL_S
            if parts.plan.follow_source_partitions():
                parts.rebalancer.rejoin()
        if parts.rebalancer.assignment is not None and now >= self._next_cleanup:
            self._next_cleanup = now + _CLEANUP_INTERVAL_S
            parts.cleaner.sweep({str(t) for t in parts.tasks.held()})
        self._refresh_metrics(parts)

    def _raise_if_http_failed(self, parts: Collaborators) -> None:
        if parts.http is not None:
            parts.http.raise_if_failed()  # it starts on a thread of its own (serving.py)

    def _refresh_metrics(self, parts: Collaborators) -> None:
        parts.status.refresh_metrics(
            self.state.value,
            parts.rebalancer.group_view(),
            state_dirs_deleted=parts.cleaner.deleted,
            figures={**parts.committer.figures(), **parts.measurements.figures()},
            input_ends=parts.measurements.input_ends,  # as the figures just measured them
        )

    # -- failures --------------------------------------------------------------------------

    def _after_failed_processing(self, parts: Collaborators, error: BrokerError) -> None:
        """Producing an output failed for a reason that is not the record's (under exactly-once:
        the transaction must be aborted): drop what was done since the last commit and rewind.
        Under exactly-once a producer in a fatal state (fenced) is replaced, not fatal."""
        if error.fatal and not self.config.exactly_once:
            raise error
        log.warning("worker %s: %s; processing again from the last commit", self.instance_id, error)
        parts.committer.fail(parts.tasks.running(), error)
        parts.rebalancer.rewind()
        self._show_group_state(parts)

    def _after_failed_commit(self, parts: Collaborators, error: BrokerError) -> None:
        """A commit that did not happen: stop when the client cannot go on; otherwise at-least-once
        keeps the offsets for the next commit, and exactly-once (whose transaction was aborted)
        rewinds its tasks to the last committed offsets."""
        if error.fatal:
            raise error
        # The committer has logged which tasks' commit failed; at-least-once retries them.
        if self.config.exactly_once:
            parts.rebalancer.rewind()
            self._show_group_state(parts)

    def _handle_consume_error(self, error: Any) -> None:
        if is_partition_eof(error):
            return
        if is_fatal(error):
            raise BrokerError(f"consumer failed fatally: {error}")
        log.warning("worker %s: consumer error (retrying): %s", self.instance_id, error)

    # -- shutdown --------------------------------------------------------------------------

    def _shutdown(self, parts: Collaborators) -> None:
        parts.committer.commit(parts.tasks.running())
        parts.tasks.close_active()
        parts.status.publish(InstancePhase.STOPPED, [])
        parts.tasks.shutdown()
        # close() leaves the group; the revoke callback it triggers finds nothing left to commit.
        parts.consumer.close()
        parts.committer.close()
