"""One task's restore as the restorer keeps it: its lifecycle, its changelogs' offsets and
counters, and the progress it reports.

A task's restore, from `Restorer.add()` until it completes. Every arrow is a legal transition
and there are no others: `TRANSITIONS` is this drawing, and
tests/unit/state/test_restore_task.py reads the arrows here and checks that they are the table's.

```
PENDING --(records to read)--> RESTORING --(every changelog's end)--> COMPLETED
PENDING --(nothing to read: the checkpoint is at the end)--> COMPLETED
PENDING --(a standby)--> STANDBY --(promote)--> PENDING
```

- PENDING: its checkpoint and its changelogs' offsets are still to be read. A task whose
  offsets cannot be read (the broker is unreachable), or whose checkpoint is beyond a
  changelog's end while that end may still catch up, stays PENDING and is tried again later.
- RESTORING: reading each changelog from its checkpoint (stored offset + 1) to the end it had
  when the restore began.
- COMPLETED: every changelog read to its end; the restorer forgets the task and hands its
  backend back (`Restorer.completed()`).
- STANDBY: a standby (`add(..., standby=True)`) never completes: it follows the changelogs,
  checkpointing every batch like a restore.
- promote: the standby becomes the restore of the same task, which starts over at PENDING: it
  reads its checkpoint and the changelogs' current ends again and restores only the tail. It
  keeps its backend, its changelogs' positions and its count of records applied; what "this
  restore" has read (`restored`, the listener's totals, the rate) counts from where it begins.
  A standby promoted while still PENDING has no transition to make: it begins as a restore.

`Restorer.remove()` forgets a task in any state; there is no state for it, nothing is left.

The drawing always had STANDBY -> PENDING, but the code built a new task on promotion and the
table had no such arrow. The drawing is the right one: a promotion keeps the task's backend,
checkpoint and changelog partitions, and only has to read offsets again; so the code now makes
that transition on the same object.

Ownership: these objects live under the `Restorer`'s lock. The main thread creates one
(`Restorer.add()`), promotes it (`Restorer.promote()`) and reads its `progress()`; the restorer
thread makes every other change. Every state change goes through `TaskRestore._transition()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from processor.errors import ProcessorError
from processor.ids import Partition, TaskId
from processor.state.backend import TaskStateBackend

__all__ = [
    "TRANSITIONS",
    "ChangelogPosition",
    "RestoreProgress",
    "RestoreState",
    "TaskRestore",
    "check_transition",
]


class RestoreState(Enum):
    """Where a task's restore stands; the legal transitions are drawn in the module docstring."""

    PENDING = "pending"
    RESTORING = "restoring"
    COMPLETED = "completed"
    STANDBY = "standby"


TRANSITIONS: Mapping[RestoreState, frozenset[RestoreState]] = {
    RestoreState.PENDING: frozenset(
        {RestoreState.RESTORING, RestoreState.COMPLETED, RestoreState.STANDBY}
    ),
    RestoreState.RESTORING: frozenset({RestoreState.COMPLETED}),
    RestoreState.STANDBY: frozenset({RestoreState.PENDING}),
    RestoreState.COMPLETED: frozenset(),
}
"""state -> the states it may go to: the arrows of the module docstring's drawing."""


def check_transition(task_id: TaskId, source: RestoreState, target: RestoreState) -> None:
    """Raise `ProcessorError` unless `source -> target` is an arrow of the drawing."""
    if target not in TRANSITIONS[source]:
        raise ProcessorError(
            f"restore of task {task_id}: illegal transition {source.value} -> {target.value}"
        )


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
class ChangelogPosition:
    """One store's changelog partition of a task's restore."""

    store: str
    topic: str
    partition: int
    start: int = 0  # first offset this restore reads
    end: int = 0  # end offset when this restore began (a standby's: the latest end seen)
    position: int = 0  # next offset to read
    applied: int = 0  # records applied from it, ever (as a standby and as a restore)
    applied_before: int = 0  # `applied` when this restore began
    done: bool = False  # read to its end (a standby: at least once)
    open_transaction_since: float | None = None  # at its end, records beyond it

    @property
    def restored(self) -> int:
        """Records applied by this restore (a standby's: since it began following)."""
        return self.applied - self.applied_before

    def begin(self, start: int, end: int) -> None:
        self.start = self.position = start
        self.end = end
        self.applied_before = self.applied
        self.done = False
        self.open_transaction_since = None


@dataclass(eq=False)
class TaskRestore:
    """One task's restore (or standby); see the module docstring."""

    task_id: TaskId
    backend: TaskStateBackend
    changelogs: list[ChangelogPosition]
    standby: bool = False
    started: float = 0.0  # when this restore began
    applied: int = 0  # records applied, ever (as a standby and as a restore)
    applied_before: int = 0  # `applied` when this restore began
    last_log: float = 0.0
    beyond_end_since: float | None = None  # PENDING: a checkpoint beyond an end seen since
    retry_at: float = 0.0  # PENDING: when to read the changelogs' offsets (again)
    partitions: list[Partition] = field(default_factory=list)  # assigned to the reader
    caught_up: bool = False  # as a standby, reached its changelogs' ends
    _state: RestoreState = field(default=RestoreState.PENDING, init=False)

    @classmethod
    def of(
        cls,
        task_id: TaskId,
        backend: TaskStateBackend,
        changelogs: Mapping[str, str],
        *,
        standby: bool,
    ) -> TaskRestore:
        """A PENDING restore of `task_id`'s stores from their changelogs (store -> topic),
        partition `task_id.partition`."""
        positions = [ChangelogPosition(s, t, task_id.partition) for s, t in changelogs.items()]
        return cls(task_id, backend, positions, standby=standby)

    @property
    def state(self) -> RestoreState:
        return self._state

    def _transition(self, target: RestoreState) -> None:
        check_transition(self.task_id, self._state, target)
        self._state = target

    # --- transitions ---------------------------------------------------------------------------

    def start_restoring(self) -> None:
        self._transition(RestoreState.RESTORING)

    def start_following(self) -> None:
        self._transition(RestoreState.STANDBY)

    def complete(self) -> None:
        self._transition(RestoreState.COMPLETED)

    def promote(self) -> None:
        """The standby becomes a restore: STANDBY -> PENDING (a PENDING standby stays PENDING).
        Positions and counts of records applied are kept; its offsets are read again at once."""
        if not self.standby:
            raise ProcessorError(f"task {self.task_id} is not a standby; cannot promote it")
        if self._state is not RestoreState.PENDING:
            self._transition(RestoreState.PENDING)
        self.standby = False
        self.retry_at = 0.0
        self.beyond_end_since = None

    # --- offsets and counts --------------------------------------------------------------------

    def checkpoint_mismatch(
        self, stored: Mapping[str, int], watermarks: Mapping[str, tuple[int, int]]
    ) -> tuple[list[str], list[str]]:
        """Stored offsets that cannot belong to the changelogs as they are now: (those at or
        beyond a changelog's end, those before its start), each described."""
        beyond = [
            f"stored offset {stored[c.topic]} of changelog {c.topic}[{c.partition}] is at or "
            f"beyond its end offset {watermarks[c.topic][1]}"
            for c in self.changelogs
            if c.topic in stored and stored[c.topic] >= watermarks[c.topic][1]
        ]
        before = [
            f"stored offset {stored[c.topic]} of changelog {c.topic}[{c.partition}] is "
            f"before its start offset {watermarks[c.topic][0]}"
            for c in self.changelogs
            if c.topic in stored and stored[c.topic] + 1 < watermarks[c.topic][0]
        ]
        return beyond, before

    def begin(
        self, now: float, stored: Mapping[str, int], watermarks: Mapping[str, tuple[int, int]]
    ) -> None:
        """Offsets read: each changelog is read from its checkpoint (stored offset + 1; without
        one, its first offset) to its current end. Counts of this restore start at 0."""
        self.started = self.last_log = now
        self.applied_before = self.applied
        for c in self.changelogs:
            low, high = watermarks[c.topic]
            c.begin(stored[c.topic] + 1 if c.topic in stored else low, high)

    @property
    def restored(self) -> int:
        """Records applied by this restore (a standby's: since it began following)."""
        return self.applied - self.applied_before

    def remaining(self) -> int:
        return sum(
            max(0, c.end - c.position) for c in self.changelogs if self.standby or not c.done
        )

    def progress(self, now: float) -> RestoreProgress:
        started = self._state is not RestoreState.PENDING
        elapsed = now - self.started
        return RestoreProgress(
            task_id=self.task_id,
            changelogs=tuple((c.topic, c.partition) for c in self.changelogs),
            start_offsets={c.topic: c.start for c in self.changelogs} if started else {},
            end_offsets={c.topic: c.end for c in self.changelogs} if started else {},
            restored=self.restored if started else 0,
            remaining=self.remaining() if started else 0,
            rate=self.restored / elapsed if started and elapsed > 0 else 0.0,
            state=self._state,
            standby=self.standby,
            caught_up=self.standby and self.caught_up,
        )

    def describe(self) -> str:
        return ", ".join(
            f"store {c.store!r} changelog {c.topic}[{c.partition}] offsets {c.start} -> {c.end}"
            for c in self.changelogs
        )
