"""What the status page and `processor status` show: the application's instances, each with
its tasks and their figures, and its recent failures. Both render the same `StatusView`.

Each worker serves its own figures (`InstanceFigures`, from the snapshot its main loop
publishes about once a second for /metrics: `figures_of()`); the worker asked for the whole
view gathers every instance's (`build_view()`), keeping an instance that does not answer in
the view, marked as such. Everything here is plain data and arithmetic: JSON in and out
(`to_json()`, `*.from_json()`), the rates and the time left.

A task's state: `restoring` (an active task reading its changelogs before it processes),
`running` (an active task processing), `standby` (a warm copy following the changelogs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from processor.metrics import WorkerSnapshot

__all__ = [
    "NOT_KNOWN",
    "FailureView",
    "InstanceFigures",
    "InstanceView",
    "KnownInstance",
    "StatusView",
    "TaskFigures",
    "build_view",
    "eta_seconds",
    "figures_of",
    "format_duration",
    "format_rate",
    "rate_between",
]

# Shown for a figure not known (yet): an en dash, as tables print it.
NOT_KNOWN = "\u2013"
RESTORING = "restoring"
RUNNING = "running"
STANDBY = "standby"


@dataclass(frozen=True)
class TaskFigures:
    task: str
    state: str  # restoring, running or standby
    processed: int = 0  # input records processed by the active task here
    processed_per_s: float | None = None  # None: not known yet (one snapshot so far)
    consumer_lag: int | None = None  # records behind its input partitions' ends; None: unknown
    restored: int = 0  # changelog records applied (restoring or standby)
    remaining: int = 0  # changelog records left to read (a standby: its lag)
    restore_per_s: float = 0.0

    @property
    def progress(self) -> float | None:
        """How much of the restore is done (0..1), for a restoring or standby task; None
        while there is nothing known to read (its changelogs' ends are being read)."""
        total = self.restored + self.remaining
        if self.state == RUNNING or total == 0:
            return None
        return self.restored / total

    @property
    def eta_s(self) -> float | None:
        """Seconds left to read what remains at the current rate; None when it does not move."""
        if self.state == RUNNING:
            return None
        return eta_seconds(self.remaining, self.restore_per_s)


@dataclass(frozen=True)
class FailureView:
    time_ms: int
    task: str
    outcome: str  # skipped or dead_lettered
    where: str
    description: str


@dataclass(frozen=True)
class InstanceFigures:
    """One worker's figures, as it serves them at `GET /v1/instance`."""

    instance: str
    state: str  # the worker's lifecycle state
    tasks: tuple[TaskFigures, ...] = ()
    failures: tuple[FailureView, ...] = ()
    commits: int = 0
    broker_reachable: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InstanceFigures:
        """Raises KeyError, TypeError or ValueError when `data` is not such figures."""
        return cls(
            instance=str(data["instance"]),
            state=str(data["state"]),
            tasks=tuple(TaskFigures(**t) for t in data.get("tasks", ())),
            failures=tuple(FailureView(**f) for f in data.get("failures", ())),
            commits=int(data.get("commits", 0)),
            broker_reachable=bool(data.get("broker_reachable", True)),
        )


@dataclass(frozen=True)
class InstanceView:
    """One instance as the application knows it (its status on the metadata topic, its tasks
    in the current assignment) and its figures when it answered (`problem` says why not)."""

    instance: str
    phase: str  # from its status: warming_up, running, stopped; "" without one
    host: str = ""
    endpoint: str | None = None
    active_tasks: tuple[str, ...] = ()
    standby_tasks: tuple[str, ...] = ()
    figures: InstanceFigures | None = None
    problem: str | None = None  # why there are no figures

    @property
    def answering(self) -> bool:
        return self.figures is not None


@dataclass(frozen=True)
class StatusView:
    application: str
    answered_by: str  # the instance that gathered this view
    instances: tuple[InstanceView, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusView:
        instances = []
        for raw in data.get("instances", ()):
            figures = raw.get("figures")
            instances.append(
                InstanceView(
                    instance=str(raw["instance"]),
                    phase=str(raw.get("phase", "")),
                    host=str(raw.get("host", "")),
                    endpoint=raw.get("endpoint"),
                    active_tasks=tuple(raw.get("active_tasks", ())),
                    standby_tasks=tuple(raw.get("standby_tasks", ())),
                    figures=None if figures is None else InstanceFigures.from_json(figures),
                    problem=raw.get("problem"),
                )
            )
        return cls(str(data["application"]), str(data["answered_by"]), tuple(instances))


# --- arithmetic ----------------------------------------------------------------------------


def rate_between(before: int, after: int, seconds: float) -> float | None:
    """Per second, from two readings of a counter `seconds` apart; None when they are not
    apart or the counter went back (a task that moved away and came back starts over)."""
    if seconds <= 0 or after < before:
        return None
    return (after - before) / seconds


def eta_seconds(remaining: int, per_second: float) -> float | None:
    if remaining <= 0:
        return 0.0
    if per_second <= 0 or math.isnan(per_second):
        return None
    return remaining / per_second


def format_rate(per_second: float | None) -> str:
    if per_second is None:
        return NOT_KNOWN
    if per_second >= 10_000:
        return f"{per_second / 1000:,.0f}k/s"
    return f"{per_second:,.0f}/s" if per_second >= 10 else f"{per_second:.1f}/s"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return NOT_KNOWN
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


# --- gathering -----------------------------------------------------------------------------


def figures_of(snapshot: WorkerSnapshot, previous: WorkerSnapshot | None) -> InstanceFigures:
    """This worker's figures from its latest snapshot, with rates against the one before."""
    seconds = snapshot.taken_at - previous.taken_at if previous and previous.taken_at else 0.0
    earlier = previous.processed if previous is not None else {}
    restores = {sample.task: sample for sample in snapshot.restores}
    tasks: list[TaskFigures] = []
    for task in sorted(set(snapshot.processed) | set(restores)):
        sample = restores.get(task)
        if sample is not None and sample.standby:
            state = STANDBY
        elif sample is not None:
            state = RESTORING
        else:
            state = RUNNING
        processed = snapshot.processed.get(task, 0)
        tasks.append(
            TaskFigures(
                task=task,
                state=state,
                processed=processed,
                processed_per_s=(
                    rate_between(earlier[task], processed, seconds) if task in earlier else None
                ),
                consumer_lag=snapshot.consumer_lag.get(task),
                restored=sample.records if sample else 0,
                remaining=sample.remaining if sample else 0,
                restore_per_s=sample.rate if sample else 0.0,
            )
        )
    failures = tuple(
        FailureView(f.time_ms, f.task, f.outcome, f.where, f.description)
        for f in snapshot.recent_failures
    )
    return InstanceFigures(
        instance=snapshot.instance,
        state=snapshot.state,
        tasks=tuple(tasks),
        failures=failures,
        commits=snapshot.commits,
        broker_reachable=snapshot.broker_reachable,
    )


@dataclass(frozen=True)
class KnownInstance:
    """What this worker knows of an instance without asking it: its status and its tasks."""

    instance: str
    phase: str = ""
    host: str = ""
    endpoint: str | None = None
    active_tasks: tuple[str, ...] = ()
    standby_tasks: tuple[str, ...] = ()


def build_view(
    application: str,
    answered_by: str,
    known: Mapping[str, KnownInstance],
    answers: Mapping[str, InstanceFigures | str],
) -> StatusView:
    """Every known instance, in id order, with its figures, or the reason it has none
    (`answers[instance]` a string, or no entry: nothing to ask it at)."""
    instances = []
    for name in sorted(known):
        info = known[name]
        answer = answers.get(name)
        if answer is None:
            answer = "no endpoint (not a member of the group now)"
        instances.append(
            InstanceView(
                instance=name,
                phase=info.phase,
                host=info.host,
                endpoint=info.endpoint,
                active_tasks=info.active_tasks,
                standby_tasks=info.standby_tasks,
                figures=answer if isinstance(answer, InstanceFigures) else None,
                problem=answer if isinstance(answer, str) else None,
            )
        )
    return StatusView(application, answered_by, tuple(instances))
