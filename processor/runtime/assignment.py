"""Task assignment: a pure function from membership to owners.

Every worker runs `assign()` over the same group snapshot and gets the same answer, so no worker
has to tell the others what it owns (ARCHITECTURE.md, "Membership and task assignment").

The rule (protocol 2, `processor/runtime/assignment_walk.py` does the work):

1. Rankings. Each member has `POINTS_PER_MEMBER` (64) points on a ring of 2**64 positions,
   `blake2b(f"{instance}\\x00{v}", digest_size=8)`, and each task one, `blake2b(str(task))`. A
   task ranks the members in the order their first point follows its own, walking clockwise;
   the pair's *distance* is how far that point is. A distance depends on the pair alone, never
   on who else is in the group, on input order, or on the Python process (`hash()` is salted).
2. Limits: with `balance_factor == 1.0` a member may hold up to `P // n` tasks (P tasks, n
   members), and the first `P % n` members to go over it in the walk one more (exact balance:
   loads differ by at most one); with a larger factor, up to `capacity(P, n, balance_factor)`.
3. The walk. Pairs are taken in ascending (distance, task, member) order; a pair is assigned when
   its task is still free and it fits its member's limit.

With `weights` (load-aware balancing: a task's load in integer units, divided by their greatest
common divisor, W their sum) the count-based result is settled (`assignment_weighted.settle`):
each member whose load is over `max(ceil(W / n * balance_factor), heaviest task)` keeps its
heaviest, then nearest tasks while they fit and hands the rest on, heaviest first, to the first
member in its ranking with room (or that makes room by handing on lighter tasks), else to the
least loaded one. A few hot tasks therefore move only the light tasks that make room for them
(every task moves at most once; `2 * sum(hot weights)` at most, in light units); all weights
equal is the unweighted rule.

Step 3 walks one canonical order, so the result depends on the sets of instances and tasks (and
the weights) alone. Without limits every task would go to its first-ranked member and a join or
leave would move only the tasks that must move; the limits make a few more move
(`bench/assignment_moves.py`, `bench/assignment_sim.py` measure how many).

`assign_with_standbys()` places standbys where tasks will land: every instance that owns a task in
`assign(instances - F)` for some set F of at most r failed instances holds it (as owner or
standby). Removing members keeps every other pair's distance and order, and (while `W // n` stays
the same) the limits, with a larger pool; so the walk over the survivors takes the full walk's
decision on every pair except along chains that start at the failed members' tasks and at the
pool's new places. `assignment_failover.py` replays just those chains, per F, from a record of the
full walk, instead of walking everything again (without weights; with weights, or when `W // n`
changes, that F is walked in full). The chains are not short: with exact balance every F opens
a pool of `P % (n - |F|)` extra places, the members that reach their limit earliest in the walk
take them, and the tasks they displace chain on until they meet the failed members' tasks
(100 members x 1,000 tasks, two failures: ~65 tasks moved, ~1.4 ms per F). So r = 1 costs about
n replays and r = 2 about n^2 / 2, seconds at 100 members (`bench/RESULTS.md`); the same pool
race is why a task gets more than r standbys.

Protocol: the rule is part of the protocol between workers: two versions of `processor` in one
group (a rolling upgrade) must compute the same assignment (`tests/unit/runtime/
test_assignment.py` pins an example). Protocol 1 ranked by one blake2b per (task, instance)
pair; protocol 2 ranks on the ring: one hash per member point and per task instead of one per
pair (300 members x 3,000 tasks: 22,200 hashes instead of 900,000), and a ranking over fewer
members is the same ranking with entries skipped, which the replay relies on. The limits and the
walk are protocol 1's. The results differ, so `ASSIGNMENT_PROTOCOL` goes up to 2 with this change.

The weighted rule is named by the load plan format instead (`processor.status.plan.PLAN_FORMAT`,
in load-aware workers' fingerprints; `test_pinned_weighted_assignment` pins an example): only
load-aware groups assign with weights. Format 1 placed every task anew, heaviest first, each to
its first member within the bound, so marking 1-3 of 1,000 tasks hot on 100 members moved 200 to
280 tasks against the count-based result and no plan fit `load_balance_max_moves`; format 2
settles the count-based result. The count-based result is the same in both, so
`ASSIGNMENT_PROTOCOL` stays 2 and groups without load-aware assignment upgrade as for any other
change; load-aware ones see the old and new versions as different settings
(`processor.runtime.identity` says how that rolling upgrade goes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType

from processor.errors import ConfigError
from processor.ids import TaskId
from processor.runtime.assignment_failover import Ledger, replay
from processor.runtime.assignment_walk import (
    Limits,
    Rankings,
    Ring,
    Walk,
    task_positions,
    walk,
    weighted_bound,
)
from processor.runtime.assignment_weighted import settle

__all__ = [
    "Assignment",
    "assign",
    "assign_with_standbys",
    "capacity",
    "moved_tasks",
    "standby_counts",
]

_SETTING = "assignment_balance_factor"
_STANDBY_SETTING = "num_standby_replicas"


@dataclass(frozen=True)
class Assignment:
    """Who runs what: *active* maps each task to the instance that processes it; *standby* maps
    an instance to the tasks it keeps warm copies of (empty until standby replicas exist);
    *instances* is every member the assignment was computed for, including idle ones.

    The mappings are copied into read-only views, so an `Assignment` cannot change after it is
    built. Owners and standby holders are added to *instances* when missing."""

    active: Mapping[TaskId, str]
    standby: Mapping[str, frozenset[TaskId]] = field(default_factory=dict)
    instances: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        active = dict(self.active)
        standby = {instance: frozenset(tasks) for instance, tasks in self.standby.items()}
        object.__setattr__(self, "active", MappingProxyType(active))
        object.__setattr__(self, "standby", MappingProxyType(standby))
        object.__setattr__(
            self, "instances", frozenset(self.instances) | set(active.values()) | set(standby)
        )

    def __hash__(self) -> int:
        return hash(
            (frozenset(self.active.items()), frozenset(self.standby.items()), self.instances)
        )

    def tasks_of(self, instance: str) -> frozenset[TaskId]:
        """The active tasks of *instance* (empty for an idle or unknown instance)."""
        return frozenset(task for task, owner in self.active.items() if owner == instance)

    def loads(self) -> dict[str, int]:
        """Number of active tasks per instance, idle instances included, in instance order."""
        counts = dict.fromkeys(sorted(self.instances), 0)
        for owner in self.active.values():
            counts[owner] += 1
        return counts


def capacity(n_tasks: int, n_instances: int, balance_factor: float = 1.0) -> int:
    """Most tasks (load units, with weights) one instance may own without weights:
    `ceil(n_tasks / n_instances * balance_factor)`.

    The factor is taken at its shortest decimal value, so `1.1` means 11/10 and
    `capacity(10, 1, 1.1) == 11` (binary floating point would round it up to 12)."""
    _check_balance_factor(balance_factor)
    if n_instances <= 0:
        raise ValueError(f"cannot compute a capacity for {n_instances} instances")
    return math.ceil(Fraction(n_tasks, n_instances) * Fraction(repr(float(balance_factor))))


def assign(
    instances: Iterable[str],
    tasks: Iterable[TaskId],
    *,
    balance_factor: float = 1.0,
    weights: Mapping[TaskId, int] | None = None,
) -> Assignment:
    """Assign every task to exactly one of *instances*; see the module docstring.

    Deterministic and independent of input order; duplicate instance ids or tasks count once.
    *weights* gives tasks a load in positive integer units (missing: 1; entries for other tasks
    are ignored). Without weights no instance owns more than `capacity(...)` tasks, and with
    `balance_factor=1.0` (the default) loads differ by at most one; with weights, no instance's
    load exceeds `capacity(total, n, balance_factor) + largest - 1`, and equal weights give
    exactly the unweighted result. Raises `ConfigError` for a balance factor that is not a finite
    number >= 1.0, and `ValueError` when there are tasks but no instances or a weight is not a
    positive integer.
    """
    _check_balance_factor(balance_factor)
    members, todo = _normalise(instances, tasks)
    if not todo:
        return Assignment(active={}, instances=frozenset(members))
    plan = _Plan(members, todo, balance_factor, _weights(todo, weights))
    base = plan.walk(range(len(members)))
    return Assignment(active=plan.named(base.owner), instances=frozenset(members))


def _normalise(instances: Iterable[str], tasks: Iterable[TaskId]) -> tuple[list[str], list[TaskId]]:
    """Sorted, de-duplicated instances and tasks; tasks with no instance are an error."""
    members = sorted(set(instances))
    todo = sorted(set(tasks))
    if todo and not members:
        raise ValueError(f"cannot assign {len(todo)} tasks to no instances")
    return members, todo


def _weights(todo: list[TaskId], weights: Mapping[TaskId, int] | None) -> list[int] | None:
    """Each task's weight by index, divided by their greatest common divisor (weights are
    relative: 2 and 8 are 1 and 4), or None when they are all equal (the unweighted rule, and
    its fast standby computation)."""
    if weights is None:
        return None
    loads = [weights.get(task, 1) for task in todo]
    for task, load in zip(todo, loads, strict=True):
        if isinstance(load, bool) or not isinstance(load, int) or load < 1:
            raise ValueError(f"the weight of task {task} must be a positive integer, got {load!r}")
    unit = math.gcd(*loads)
    return None if all(load == unit for load in loads) else [load // unit for load in loads]


class _Plan:
    """What every walk over (a subset of) the members shares: rankings, member order, totals."""

    def __init__(
        self,
        members: list[str],
        todo: list[TaskId],
        balance_factor: float,
        weights: list[int] | None,
    ) -> None:
        self.members, self.todo, self.weights = members, todo, weights
        self.balance_factor = balance_factor
        self.rankings = Rankings(Ring(members), task_positions(todo), len(members))
        self.total = len(todo) if weights is None else sum(weights)
        self.largest = 1 if weights is None else max(weights)
        self.ledger: Ledger | None = None

    def limits(self, n_alive: int) -> Limits:
        """The count-based walk's limits (in tasks, weights or not)."""
        return Limits.of(len(self.todo), n_alive, self.balance_factor)

    def walk(self, alive: Sequence[int], *, record: bool = False) -> Walk:
        """The walk over the `alive` members; with weights, settled (`assignment_weighted`)."""
        limits = self.limits(len(alive))
        counted = walk(self.rankings, len(self.todo), set(alive), limits, record=record)
        if self.weights is None:
            return counted
        bound = weighted_bound(self.total, len(alive), self.balance_factor, self.largest)
        return settle(self.rankings, counted, set(alive), self.weights, bound)

    def named(self, owner: Sequence[int]) -> dict[TaskId, str]:
        return {task: self.members[m] for task, m in zip(self.todo, owner, strict=True)}


def moved_tasks(before: Assignment, after: Assignment) -> set[TaskId]:
    """Tasks active in both assignments whose owner differs. Tasks that exist in only one of the
    two (the topology changed) are not moves and are left out."""
    return {
        task
        for task, owner in before.active.items()
        if task in after.active and after.active[task] != owner
    }


def assign_with_standbys(
    instances: Iterable[str],
    tasks: Iterable[TaskId],
    *,
    num_standby_replicas: int,
    balance_factor: float = 1.0,
    weights: Mapping[TaskId, int] | None = None,
    pause: Callable[[], object] | None = None,
) -> Assignment:
    """`assign()` plus standby replicas placed where the tasks will land.

    The active tasks are exactly `assign(instances, tasks, balance_factor=..., weights=...)`'s.
    Instance Z holds a standby for task t when Z is not t's owner and, for some set F of at most
    `r = num_standby_replicas` other instances, `assign(instances - F, tasks, ...)` (same
    weights) gives t to Z. So after any r instances fail, every task's new owner already held it,
    as its owner or as a standby: the failed instances' tasks and the tasks the quotas shuffle
    among the survivors alike. An r of `len(instances)` or more counts as `len(instances) - 1`
    (someone has to survive). Standby holders with no standby are left out of `standby`, so
    `r = 0` returns exactly `assign()`'s result.

    A task may get more than r standbys (the shuffled tasks need theirs too); see
    `bench/assignment_sim.py` for how many and how long it takes. Without weights each set F
    costs only the pairs whose outcome it changes (`assignment_failover.py`); with weights every
    F is walked in full, `sum(C(n, k) for k <= r)` walks. *pause*, when given, is called after
    each set F: a placement on a thread of its own lets the main loop run there. Raises
    `ConfigError` for an r that is not an int >= 0, otherwise as `assign()`.
    """
    _check_balance_factor(balance_factor)
    if (
        isinstance(num_standby_replicas, bool)
        or not isinstance(num_standby_replicas, int)
        or num_standby_replicas < 0
    ):
        raise ConfigError(
            _STANDBY_SETTING,
            f"must be an integer >= 0 (0 = no standby replicas), got {num_standby_replicas!r}",
        )
    members, todo = _normalise(instances, tasks)
    if not todo:
        return Assignment(active={}, instances=frozenset(members))
    plan = _Plan(members, todo, balance_factor, _weights(todo, weights))
    failures = min(num_standby_replicas, len(members) - 1)
    everyone = range(len(members))
    base = plan.walk(everyone, record=failures > 0 and plan.weights is None)
    standby: dict[int, set[int]] = {}
    for failed in _failure_sets(len(members), failures):
        for task, owner in _new_owners(plan, base, failed).items():
            if owner != base.owner[task]:
                standby.setdefault(owner, set()).add(task)
        if pause is not None:
            pause()
    return Assignment(
        active=plan.named(base.owner),
        standby={members[m]: frozenset(todo[task] for task in held) for m, held in standby.items()},
        instances=frozenset(members),
    )


def _failure_sets(n: int, failures: int) -> Iterable[tuple[int, ...]]:
    for size in range(1, failures + 1):
        yield from itertools.combinations(range(n), size)


def _new_owners(plan: _Plan, base: Walk, failed: tuple[int, ...]) -> dict[int, int]:
    """Tasks (by index) whose owner in `assign(members - failed)` differs from *base*'s, with
    that owner: replayed from the full walk when it can be (no weights, same `base` limit),
    walked in full otherwise."""
    limits, full = plan.limits(len(plan.members) - len(failed)), plan.limits(len(plan.members))
    if plan.weights is None and (limits.base == full.base or (not limits.spare and not full.spare)):
        if plan.ledger is None:
            plan.ledger = Ledger.of(base, full)
        return replay(plan.ledger, plan.rankings, limits, frozenset(failed))
    after = plan.walk([m for m in range(len(plan.members)) if m not in failed])
    return {task: owner for task, owner in enumerate(after.owner) if owner != base.owner[task]}


def standby_counts(assignment: Assignment) -> dict[str, int]:
    """Number of standby tasks per instance, idle instances included, in instance order."""
    counts = dict.fromkeys(sorted(assignment.instances), 0)
    for instance, tasks in assignment.standby.items():
        counts[instance] = len(tasks)
    return counts


def _check_balance_factor(balance_factor: float) -> None:
    if (
        isinstance(balance_factor, bool)
        or not isinstance(balance_factor, int | float)
        or not math.isfinite(balance_factor)
        or balance_factor < 1.0
    ):
        raise ConfigError(
            _SETTING,
            f"must be a finite number >= 1.0 (1.0 = perfectly balanced), got {balance_factor!r}",
        )
