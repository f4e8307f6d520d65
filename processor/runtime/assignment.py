"""Task assignment: a pure function from membership to owners.

Every worker runs `assign()` over the same group snapshot and gets the same answer, so no worker
has to tell the others what it owns (ARCHITECTURE.md, "Membership and task assignment").

The algorithm is rendezvous (highest-random-weight) hashing with a load bound:

1. Every (task, instance) pair gets a weight from `d = blake2b(f"{task}\\x00{instance}",
   digest_size=8)`: `weight = 2**64 - 1 - int.from_bytes(d)`, so the smallest digest weighs most
   (the code compares digests as bytes). It depends on the pair alone, never on who else is in
   the group, on input order, or on the Python process (`hash()` is salted per process).
2. Each instance may own at most `capacity = ceil(len(tasks) / len(instances) * balance_factor)`
   tasks. With `balance_factor == 1.0` the bound is exact: loads differ by at most one, so only
   `len(tasks) % len(instances)` instances may reach `capacity` when it does not divide evenly.
   Any larger factor is slack, and only the upper bound holds (an instance may own nothing).
3. Pairs are taken in descending weight (ties: task, then instance, ascending); a pair is
   assigned when its task is still free and its instance still has room.

Step 3 walks one canonical order of the pairs (without the exact-balance rule its result is the
stable matching of tasks and instances that both rank by weight), so the result depends on the
sets of instances and tasks alone, not on the order they came in. Without the bound every
task would go to its top-weight instance and a join or leave would move only the tasks that must
move; the bound makes a few more move (`bench/assignment_moves.py` measures how many).

The weights are part of the protocol between workers: two versions of `processor` in one group
(a rolling upgrade) must compute the same assignment, so changing step 1 or the tie-breaking
needs a protocol version (`tests/unit/runtime/test_assignment.py` pins an example).

Instead of sorting all pairs, each task keeps its instances ranked by weight and a heap holds
each free task's best remaining candidate; popping the heap yields the pairs in the same global
order, so the cost is one hash per pair plus one heap step per assignment or rejection.

`assign_with_standbys()` adds standby replicas where tasks will land: it reruns step 3 (on the
same rankings, skipping the failed instances' pairs) for every set of at most r failed instances
and gives each instance a standby for every task it would receive that it does not own.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType

from processor.errors import ConfigError
from processor.ids import TaskId

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
    """Most tasks one instance may own: `ceil(n_tasks / n_instances * balance_factor)`.

    The factor is taken at its shortest decimal value, so `1.1` means 11/10 and
    `capacity(10, 1, 1.1) == 11` (binary floating point would round it up to 12)."""
    _check_balance_factor(balance_factor)
    if n_instances <= 0:
        raise ValueError(f"cannot compute a capacity for {n_instances} instances")
    return math.ceil(Fraction(n_tasks, n_instances) * Fraction(repr(float(balance_factor))))


def assign(
    instances: Iterable[str], tasks: Iterable[TaskId], *, balance_factor: float = 1.0
) -> Assignment:
    """Assign every task to exactly one of *instances*; see the module docstring.

    Deterministic and independent of input order; duplicate instance ids or tasks count once.
    No instance owns more than `capacity(...)` tasks, and with `balance_factor=1.0` (the default)
    loads differ by at most one. Raises `ConfigError` for a balance factor that is not a finite
    number >= 1.0, and `ValueError` when there are tasks but no instances.
    """
    _check_balance_factor(balance_factor)
    members, todo = _normalise(instances, tasks)
    if not todo:
        return Assignment(active={}, instances=frozenset(members))
    rankings = _rankings(members, todo)
    active = _place(members, todo, rankings, balance_factor, frozenset())
    return Assignment(active=active, instances=frozenset(members))


def _normalise(instances: Iterable[str], tasks: Iterable[TaskId]) -> tuple[list[str], list[TaskId]]:
    """Sorted, de-duplicated instances and tasks; tasks with no instance are an error."""
    members = sorted(set(instances))
    todo = sorted(set(tasks))
    if todo and not members:
        raise ValueError(f"cannot assign {len(todo)} tasks to no instances")
    return members, todo


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
) -> Assignment:
    """`assign()` plus standby replicas placed where the tasks will land.

    The active tasks are exactly `assign(instances, tasks, balance_factor=...)`'s. Instance Z
    holds a standby for task t when Z is not t's owner and, for some set F of at most
    `r = num_standby_replicas` other instances, `assign(instances - F, tasks)` gives t to Z.
    So after any r instances fail, every task's new owner already held it, as its owner or as a
    standby: the failed instances' tasks and the tasks the load bound shuffles among the
    survivors alike. An r of `len(instances)` or more counts as `len(instances) - 1` (someone
    has to survive). Standby holders with no standby are left out of `standby`, so `r = 0`
    returns exactly `assign()`'s result.

    A task may get more than r standbys (the shuffled tasks need theirs too); see
    `bench/standby_load.py` for how many. The cost is one `assign()`'s hashing plus one placement
    walk per set F, i.e. `sum(C(n, k) for k <= r)` walks for n instances: fine for the small r
    (0..2) it is meant for. Raises `ConfigError` for an r that is not an int >= 0, otherwise as
    `assign()`.
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
    rankings = _rankings(members, todo)
    active = _place(members, todo, rankings, balance_factor, frozenset())
    standby: dict[str, set[TaskId]] = {}
    failures = min(num_standby_replicas, len(members) - 1)
    for size in range(1, failures + 1):
        for failed in itertools.combinations(range(len(members)), size):
            placed = _place(members, todo, rankings, balance_factor, frozenset(failed))
            for task, owner in placed.items():
                if owner != active[task]:
                    standby.setdefault(owner, set()).add(task)
    return Assignment(
        active=active,
        standby={instance: frozenset(held) for instance, held in standby.items()},
        instances=frozenset(members),
    )


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


def _rankings(members: list[str], todo: list[TaskId]) -> list[list[tuple[bytes, int]]]:
    """For each task (by index into *todo*), the indexes into *members* (sorted ids) ranked by
    descending weight: ascending digest, equal digests by instance id."""
    names = list(enumerate(member.encode() for member in members))
    rankings: list[list[tuple[bytes, int]]] = []
    for task in todo:
        prefix = hashlib.blake2b(f"{task}\x00".encode(), digest_size=8)
        ranking = []
        for member, name in names:
            pair = prefix.copy()
            pair.update(name)
            ranking.append((pair.digest(), member))
        # Ascending digest is descending weight; equal digests rank by instance id.
        ranking.sort()
        rankings.append(ranking)
    return rankings


def _place(
    members: list[str],
    todo: list[TaskId],
    rankings: list[list[tuple[bytes, int]]],
    balance_factor: float,
    failed: frozenset[int],
) -> dict[TaskId, str]:
    """Step 3 of the module docstring over `members` without the indexes in *failed*.

    Skipping a failed instance's pairs leaves the surviving pairs in the order `assign()` over the
    survivors alone would walk them (digests and id order do not depend on who else is in the
    group), so the result equals `assign(survivors, todo).active`. Needs a non-empty *todo* and
    at least one survivor."""
    n_members = len(members) - len(failed)
    cap = capacity(len(todo), n_members, balance_factor)
    # Exact balance: at most `spare` instances may hold `floor + 1` tasks.
    floor, spare = divmod(len(todo), n_members)
    exact = balance_factor == 1.0 and spare > 0
    at_cap = 0

    heap = [
        (ranking[0][0], task, index, 0)
        for index, (task, ranking) in enumerate(zip(todo, rankings, strict=True))
    ]
    heapq.heapify(heap)
    loads = [0] * len(members)
    active: dict[TaskId, str] = {}
    while heap:
        _, task, task_index, rank = heap[0]
        member = rankings[task_index][rank][1]
        load = loads[member]
        if (
            member not in failed
            and load < cap
            and not (exact and load == floor and at_cap == spare)
        ):
            heapq.heappop(heap)
            active[task] = members[member]
            loads[member] = load + 1
            if exact and load == floor:
                at_cap += 1
        else:
            # The instance failed or is full, for good: offer the task to its next-ranked one.
            rank += 1
            heapq.heapreplace(heap, (rankings[task_index][rank][0], task, task_index, rank))
    return active
