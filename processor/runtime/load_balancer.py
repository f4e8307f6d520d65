"""Load-aware balancing: the leader weighs tasks by their measured load, every worker assigns
with those weights (`assignment_load_aware`).

```
every worker:  status (task_rates: records/s of its active tasks)  ──┐
                                                                     v  <app>-metadata
leader:        tick(): rates of every task from its owner's status, load_plan.decide()
               └─ publishes a LoadPlan (processor.status.plan) ───────┐
                                                                      v
every worker:  weights(members) -> the plan's weights -> assign(..., weights=)
```

**The leader** is the smallest instance id among the members taking part: every worker
knows the members, so all agree on it without a vote, and a plan names its leader (readers check
that it is its members' smallest). A leader that leaves takes its plan's authority with it:
a plan made for other members than the current ones is not used, so the next leader starts
from count-based (or from the plan it can still use, below) and plans again.

**Which plan a worker uses** (`weights()`): the last record under the plan's key, when it was
made for these members or for a superset of them. A superset, because standby replicas are placed
where tasks land after up to r members fail (`assign_with_standbys` computes those assignments
with the same weights): after a failure the survivors must keep assigning with the weights the
standbys were placed by, or a promoted task would land where no warm copy is. Joins (members the
plan does not know) go back to count-based, which is also what a joiner warms up for.

**Timing.** `tick()` looks every `_LOOK_S`. Rates are the records arriving for a task (its input
partitions' end offsets' growth, `processor.runtime.task_rates`), each given only after its
owner has watched it for a whole 30 s window, and no plan is made while any task lacks one: the
first look at a new layout (at start, after a plan or a rebalance) is a full window of every
task. Then an imbalance must last `load_balance_interval_ms` (30 s by default) before a plan is
tried, and two plans are at least that far apart.

`load_balance_max_moves` (8) bounds what one plan moves. The weighted rule starts from the
count-based assignment (`assignment_weighted`): a plan that weighs one hot task w times the
others moves at most `w - 1` light tasks, off its worker, and a hot task weighs at most
`MAX_WEIGHT / SCALE` = 8 light ones, so 8 admits the plan for any one hot task, at any scale; a
plan parting two hot tasks moves a few more, and larger corrections go a plan at a time.
Simulating the leader over the real rule (`bench/load_plan_sim.py`: 1 to 3 hot tasks at 3 to 10
times the others, 60 skews a size) ended balanced in 53, 59 and 60 skews on 2-5 workers with 2,
4 and 8, in 19, 41, 57 and 59 on 20 workers x 200 tasks with 2, 4, 8 and 12, and in 50 on 100
workers x 1,000 tasks with 8 (plans judged by the squared deviation of the loads, `load_plan`
step 5; judged by the load above the mean, summed, 5 of 60 there: moving light tasks off a hot
task's worker puts each receiver above the mean, so that barely drops although the spread
does; `bench/RESULTS.md`); above 8 a plan moves more at once for little more. (The weighted
rule before placed every task anew: the first plan moved about a third of the tasks, so 8 was
needed even on 3 workers, and on 100 workers a plan moved hundreds.) A task a plan moved away
from a worker is not moved back to it for `_COOLDOWN_INTERVALS` intervals (5 minutes by
default); moving it on to a third worker is allowed, so a plan can correct an earlier one
without any task going back and forth. `load_balance_threshold` (0.25): under that the spread
is what counting tasks gives with equal loads (7 tasks on 3 workers: 1.29 is the worst a count
can do, and a count-based split of equal tasks never triggers a plan anyway).

**Off the main loop.** A decision that searches computes the assignment of every candidate
weighting (about 10 `assign()` calls: 150-250 ms at 100 workers x 1,000 tasks), on the leader,
once an interval while an imbalance lasts: it runs on a thread of its own (`decide_in`), and a
later `tick()` takes its answer. An answer for other members or another assignment than the
ones running when it comes (a rebalance meanwhile) is dropped, and the next look decides again.

Rates are taken only from owners' fresh statuses (at most `_MAX_RATE_AGE_MS` old) that report
the task as theirs with a rate: a task that just moved has none until its new owner has watched
it for a window.

`assignment_load_aware` is off by default: it moves tasks on measurements, which only pays where
keys are skewed, and it needs the hand-over of moved tasks that applies a new plan without a
group rebalance. Every worker of an application must agree on it (it is in the fingerprint).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from processor.background_call import in_background
from processor.config import WorkerConfig
from processor.ids import TaskId, tasks_text
from processor.runtime.assignment import Assignment
from processor.runtime.load_plan import (
    AssignFunction,
    Decision,
    PlanSettings,
    decide,
    departures,
)
from processor.status.plan import LoadPlan
from processor.status.record import InstancePhase, StatusBoard

__all__ = ["LoadBalancer"]

log = logging.getLogger("processor.worker")

_LOOK_S = 5.0  # how often the leader looks at the rates: cheap, and well under an interval
_COOLDOWN_INTERVALS = 10
# Statuses are republished every 10 s when nothing happens; three missed ones mean stale rates.
_MAX_RATE_AGE_MS = 30_000

DecisionRunner = Callable[[Callable[[], Decision]], "Future[Decision]"]
"""Runs a decision and gives its answer: on a thread of its own by default (tests run it at
once)."""


def _on_a_thread(decision: Callable[[], Decision]) -> Future[Decision]:
    return in_background(decision, "processor-load-plan")


@dataclass(frozen=True)
class _Pending:
    """A decision on its way, and what it was asked for."""

    answer: Future[Decision]
    members: tuple[str, ...]
    assignment: Assignment
    asked_at: float


class LoadBalancer:
    """`instance_id`: this worker's. `board`: the status board (statuses with their rates, and
    the plan). `publish`: writes a plan to the metadata topic (`StatusPublisher.publish_plan`).
    `assign`: `(members, weights) -> {task: owner}`, the active part of the assignment every
    worker computes with these settings and task list. `wall_clock`: seconds since the epoch
    (tests pass their own). `decide_in`: where a decision runs (see the module docstring)."""

    def __init__(
        self,
        config: WorkerConfig,
        instance_id: str,
        board: StatusBoard,
        publish: Callable[[LoadPlan], None],
        assign: AssignFunction,
        *,
        wall_clock: Callable[[], float] = time.time,
        decide_in: DecisionRunner = _on_a_thread,
    ) -> None:
        self._enabled = config.assignment_load_aware
        interval_s = config.load_balance_interval_ms / 1000
        self._interval_s = interval_s
        self._settings = PlanSettings(
            threshold=config.load_balance_threshold,
            sustain_s=interval_s,
            max_moves=config.load_balance_max_moves,
            cooldown_s=interval_s * _COOLDOWN_INTERVALS,
        )
        self._instance_id = instance_id
        self._board = board
        self._publish = publish
        self._assign = assign
        self._wall_clock = wall_clock
        self._next_look = 0.0
        self._imbalanced_since: float | None = None
        # When a plan moved each task away from each owner: it does not move it back soon.
        self._left: dict[tuple[TaskId, str], float] = {}
        self._version = 0
        self._last_reason = ""
        self._decide_in = decide_in
        self._pending: _Pending | None = None

    def weights(self, members: Sequence[str]) -> Mapping[TaskId, int] | None:
        """The weights to assign `members` with: the plan's when it was made for these members
        or a superset of them (see the module docstring); None (count-based) otherwise, and
        always when load-aware assignment is off."""
        plan = self._board.plans.latest
        if not self._enabled or plan is None or not members:
            return None
        if not set(members) <= set(plan.members):
            return None
        return dict(plan.weights) or None

    def leader(self, members: Sequence[str]) -> str | None:
        return min(members) if members else None

    def tick(self, members: Sequence[str], assignment: Assignment, now: float) -> None:
        """On the leader, at most every `_LOOK_S` (`now`: monotonic seconds): decide from the
        rates the owners report, and publish a plan when `load_plan.decide` says so. Elsewhere
        (or when off) nothing; a worker that stops being the leader forgets what it watched."""
        if not self._enabled or self.leader(members) != self._instance_id:
            self._imbalanced_since = None
            self._left.clear()
            self._pending = None
            return
        if self._pending is None:
            if now < self._next_look:
                return
            self._next_look = now + _LOOK_S
            rates = self._rates(assignment)
            if rates is None:
                self._imbalanced_since = None  # the evidence must be complete for an interval
                return
            self._ask(members, assignment, rates, now)
        self._take_decision(members, assignment)

    def _ask(
        self,
        members: Sequence[str],
        assignment: Assignment,
        rates: Mapping[TaskId, float],
        now: float,
    ) -> None:
        asked = tuple(sorted(set(members)))
        current, left, since = self.weights(members), dict(self._left), self._imbalanced_since
        answer = self._decide_in(
            lambda: decide(
                members=asked,
                active=assignment.active,
                rates=rates,
                current=current,
                assign=self._assign,
                settings=self._settings,
                imbalanced_since=since,
                now=now,
                left=left,
            )
        )
        self._pending = _Pending(answer, asked, assignment, now)

    def _take_decision(self, members: Sequence[str], assignment: Assignment) -> None:
        """Act on the decision asked for, once it has come and if it is still for the members
        and assignment running."""
        pending = self._pending
        if pending is None or not pending.answer.done():
            return
        self._pending = None
        if pending.assignment is not assignment or pending.members != tuple(sorted(set(members))):
            return  # a rebalance meanwhile: the next look decides again
        decision, now = pending.answer.result(), pending.asked_at
        self._imbalanced_since = decision.imbalanced_since
        if decision.searched:
            # Candidates cost a few assignments: at most once an interval.
            self._next_look = now + self._interval_s
        if decision.weights is None:
            if decision.searched:
                # Said once while it stays the same reason (an imbalance no plan can help).
                level = logging.DEBUG if decision.reason == self._last_reason else logging.INFO
                log.log(level, "worker %s: no load plan: %s", self._instance_id, decision.reason)
                self._last_reason = decision.reason
            return
        self._version = max(self._version, self._board.plans.highest_version) + 1
        plan = LoadPlan(
            version=self._version,
            leader=self._instance_id,
            members=tuple(members),
            weights=decision.weights,
            made_ms=int(self._wall_clock() * 1000),
        )
        self._publish(plan)
        # Departures past the cooldown no longer count (`decide()`): drop them, or a leader that
        # runs for weeks keeps every task's every move.
        cooldown_s = self._settings.cooldown_s
        self._left = {pair: at for pair, at in self._left.items() if now - at < cooldown_s}
        self._left.update(departures(assignment.active, decision.moves, now))
        log.info(
            "worker %s: load plan %d for [%s]: %s (tasks [%s]); weights %s",
            self._instance_id,
            plan.version,
            ", ".join(plan.members),
            decision.reason,
            tasks_text(decision.moves),
            {str(t): w for t, w in plan.weights.items()} or "all 1 (count-based)",
        )

    def _rates(self, assignment: Assignment) -> dict[TaskId, float] | None:
        """Every active task's rate from its owner's fresh status, or None while one is missing."""
        oldest_ms = int(self._wall_clock() * 1000) - _MAX_RATE_AGE_MS
        rates: dict[TaskId, float] = {}
        for task, owner in sorted(assignment.active.items()):
            status = self._board.statuses.get(owner)
            if (
                status is None
                or status.phase is not InstancePhase.RUNNING
                or status.updated_ms < oldest_ms
                or str(task) not in status.active_tasks
            ):
                return None
            rate = status.task_rates.get(str(task))
            if rate is None:
                return None
            rates[task] = rate
        return rates
