"""What a worker tells others about itself, and learns of them: its status on the metadata
topic (`processor.status.record`, with its tasks' rates from `processor.runtime.task_rates`),
the board of every instance's latest status and of the load plan, the load plan when this worker
is the leader (`publish_plan`), and the Prometheus snapshot `/metrics` serves.

With an HTTP token, statuses are signed and only signed ones are believed (`status_signing`):
an endpoint that forwarded queries, and with them the token, go to cannot be forged.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from processor.background_call import in_background
from processor.config import WorkerConfig
from processor.errors import BrokerError
from processor.histogram import REBALANCE_BOUNDS_S, HistogramSample, empty
from processor.ids import TaskId
from processor.kafka.producer import Headers, OutputProducer
from processor.kafka.topic_tail import TopicTail
from processor.metrics import RestoreSample, WorkerMetrics, WorkerSnapshot
from processor.runtime.clients import metadata_reader_settings, status_producer_settings
from processor.runtime.task_manager import TaskManager
from processor.runtime.task_rates import TaskRates
from processor.state.restore import RestoreState
from processor.status.plan import PLAN_KEY, LoadPlan
from processor.status.record import IgnoredReason, InstancePhase, InstanceStatus, StatusBoard
from processor.status.signing import SIGNATURE_HEADER, StatusSigner
from processor.topology.handling import Accounting

__all__ = ["GroupView", "StatusPublisher"]

log = logging.getLogger("processor.worker")

# A joiner that has not republished its status for this long is no longer pre-warmed for.
_JOINER_MAX_SILENCE_MS = 30_000
# How long publishing a claim waits for the broker before trying again at a later pass.
_CLAIM_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class GroupView:
    """What the metrics say of the group, as the last accepted generation showed it."""

    rebalances: int = 0
    foreign_members: int = 0
    outvoted_members: int = 0
    outvoted: bool = False
    rebalance_seconds: HistogramSample = field(default_factory=lambda: empty(REBALANCE_BOUNDS_S))


class StatusPublisher:
    def __init__(
        self,
        config: WorkerConfig,
        instance_id: str,
        tasks: TaskManager,
        accounting: Accounting,
        metrics: WorkerMetrics,
    ) -> None:
        self._config = config
        self._instance_id = instance_id
        self._tasks = tasks
        self._accounting = accounting
        self._metrics = metrics
        self._signer = (
            StatusSigner(config.http_token, config.application_id) if config.http_token else None
        )
        self.board = StatusBoard(signer=self._signer)
        self._producer = OutputProducer(status_producer_settings(config, instance_id))
        self._tail = TopicTail(
            metadata_reader_settings(config, instance_id), config.metadata_topic, partitions=1
        )
        self.endpoint: str | None = None
        self.rates = TaskRates()

    # -- the metadata topic ------------------------------------------------------------------

    def follow(self) -> None:
        """Read the statuses published since the last call."""
        try:
            for record in self._tail.poll():
                self.board.apply(record.key, record.value, record.headers, origin=record.origin)
        except BrokerError as e:
            log.warning("worker %s: %s (retrying)", self._instance_id, e)

    def joiners(self, members: list[str]) -> list[str]:
        """Instances announcing they warm up to join, not yet members."""
        return self.board.joiners(set(members), int(time.time() * 1000), _JOINER_MAX_SILENCE_MS)

    def lag_reported(self, instance: str, task: TaskId) -> int | None:
        """How far `instance` reports its copy of `task` is behind, when it reports it for
        this worker's warm-up."""
        status = self.board.statuses.get(instance)
        if status is None or self._instance_id not in status.warming_for:
            return None  # it has not heard of this joiner yet
        return status.lag_of(task)

    def publish(
        self,
        phase: InstancePhase,
        members: list[str],
        warming_for: list[str] | None = None,
        *,
        claiming: Iterable[TaskId] = (),
    ) -> None:
        """Tell the application (and people) what this instance runs, what it is about to take
        (`claiming`) and how far behind its copies are."""
        tasks = self._tasks
        lags = {str(t): 0 for t in tasks.tasks if t not in tasks.restoring}
        for task_id, progress in tasks.restore_progress().items():
            if progress.state is not RestoreState.PENDING:
                lags[str(task_id)] = progress.remaining
        now_ms = int(time.time() * 1000)
        status = InstanceStatus(
            instance_id=self._instance_id,
            phase=phase,
            host=socket.gethostname(),
            pid=os.getpid(),
            endpoint=self.endpoint,
            members=tuple(members),
            active_tasks=tuple(str(t) for t in sorted(tasks.tasks)),
            standby_tasks=tuple(str(t) for t in sorted(tasks.standbys)),
            restoring_tasks=tuple(str(t) for t in tasks.restoring),
            lags=lags,
            warming_for=tuple(warming_for or ()),
            updated_ms=now_ms,
            claimed_tasks=tuple(sorted(str(t) for t in claiming)),
            task_rates={str(t): round(r, 3) for t, r in self.rates.rates().items()},
        )
        self._produce(self._instance_id.encode(), status.to_json(), now_ms)

    def publish_plan(self, plan: LoadPlan) -> None:
        """Publish the load plan (this worker is its members' leader)."""
        self._produce(PLAN_KEY, plan.to_json(), int(time.time() * 1000))

    def _produce(self, key: bytes, value: bytes, now_ms: int) -> None:
        """One record on the metadata topic, signed when there is an HTTP token."""
        headers: Headers | None = (
            None if self._signer is None else [(SIGNATURE_HEADER, self._signer.sign(key, value))]
        )
        self._producer.produce(self._config.metadata_topic, key, value, now_ms, headers)
        self._producer.poll()

    def claim(
        self, members: list[str], claiming: Iterable[TaskId]
    ) -> Future[dict[int, int] | None]:
        """Publish this instance's status claiming `claiming`; the future gives the metadata
        topic's end offsets once the broker has the claim: once `has_read()` them, the claims
        of others read here are at least as recent as this one (None: the claim could not be
        published, claim again). The wait runs in the background (`background_call`): the worker's
        tasks go on meanwhile."""
        self.publish(InstancePhase.RUNNING, members, claiming=claiming)
        return in_background(self._claimed, "processor-claim")

    def _claimed(self) -> dict[int, int] | None:
        if self._producer.flush(_CLAIM_TIMEOUT_S) > 0:
            log.warning(
                "worker %s: its status is not on the broker yet (retrying)", self._instance_id
            )
            return None
        try:
            return self._tail.end_offsets(_CLAIM_TIMEOUT_S)
        except BrokerError as e:
            log.warning("worker %s: %s (retrying)", self._instance_id, e)
            return None

    def has_read(self, offsets: dict[int, int]) -> bool:
        """Whether the statuses read here include every record before `offsets`."""
        self.follow()
        return self._tail.has_read_to(offsets)

    def claims_of(self, instance: str) -> frozenset[str]:
        """The tasks `instance` runs or is about to run, as its latest status says."""
        status = self.board.statuses.get(instance)
        return frozenset() if status is None else status.claims()

    # -- /metrics ------------------------------------------------------------------------------

    def refresh_metrics(
        self,
        state: str,
        group: GroupView,
        *,
        state_dirs_deleted: int,
        figures: Mapping[str, Any],
        input_ends: Mapping[TaskId, int] | None = None,
    ) -> None:
        """Publish a snapshot: the tasks', the group's and the status board's figures, with
        `figures` the committer's and `processor.runtime.measurements`' (snapshot fields);
        `input_ends` (the measurements') is what the task rates are measured by."""
        tasks = self._tasks
        self.rates.observe(
            time.monotonic(),
            {t: task.processed for t, task in tasks.tasks.items()},
            {TaskId.parse(t): lag for t, lag in figures.get("consumer_lag", {}).items()},
            input_ends,
        )
        progress = tasks.restore_progress()
        self._metrics.publish(
            WorkerSnapshot(
                instance=self._instance_id,
                state=state,
                processed={str(t): task.processed for t, task in tasks.tasks.items()},
                stream_times={str(t.id): t.clock.stream_time for t in tasks.timed},
                active=len(tasks.tasks),
                restoring=len(tasks.restoring),
                standby=len(tasks.standbys),
                restores=tuple(
                    RestoreSample(str(t), p.standby, p.restored, p.remaining, p.rate)
                    for t, p in sorted(progress.items())
                ),
                restore_totals={str(t): n for t, n in tasks.records_restored().items()},
                restored_before_start={str(t): n for t, n in tasks.restored_before_start.items()},
                foreign_members=group.foreign_members,
                outvoted_members=group.outvoted_members,
                outvoted=group.outvoted,
                rebalances=group.rebalances,
                rebalance_seconds=group.rebalance_seconds,
                state_dirs_deleted=state_dirs_deleted,
                metadata_ignored={r.value: self.board.ignored[r] for r in IgnoredReason},
                outcomes={
                    (outcome.value, reason): n
                    for (outcome, reason), n in self._accounting.committed.items()
                },
                timer_firings=dict(self._accounting.timers),
                recent_failures=tuple(self._accounting.recent),
                taken_at=time.monotonic(),
                **figures,
            )
        )

    def close(self) -> None:
        self._producer.flush(5.0)
        self._tail.close()
