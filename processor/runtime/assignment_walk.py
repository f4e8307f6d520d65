"""The placement walk behind `assignment.assign()`: ring rankings, quotas and the greedy walk.

Members and tasks are referred to by their index into the sorted, de-duplicated lists; the public
module (`processor.runtime.assignment`) documents the rule and turns indexes back into ids.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import heapq
import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from processor.ids import TaskId

POINTS_PER_MEMBER = 64
"""Ring points per member. Part of the protocol: changing it changes every ranking."""

_MASK = (1 << 64) - 1


def hash64(text: str) -> int:
    """64 bits of blake2b: the same in every process and on every machine (unlike `hash()`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=4096)
def member_points(member: str) -> tuple[int, ...]:
    """A member's points on the ring. Kept: every assignment a worker computes (each rebalance,
    each joiner's future, each load plan tried, each failure set) uses the same members.

    Point v is `hash64(f"{member}\\x00{v}")`, hashed from a copy of a hasher that has read the
    common prefix: the same digests, for less work."""
    prefix = hashlib.blake2b(f"{member}\x00".encode(), digest_size=8)
    points = []
    for v in range(POINTS_PER_MEMBER):
        hasher = prefix.copy()
        hasher.update(str(v).encode())
        points.append(int.from_bytes(hasher.digest(), "big"))
    return tuple(points)


@functools.lru_cache(maxsize=65536)
def task_position(task: str) -> int:
    return hash64(task)


class Ring:
    """Every member's `POINTS_PER_MEMBER` points on a 2**64 ring; a task's ranking is the order in
    which members first appear walking clockwise from the task's own point.

    The *distance* of a pair (task, member) is how far clockwise from the task's point the member's
    first point lies; a ranking is ascending distance. Removing a member removes its points and
    changes no other pair's distance, which is what makes a ranking over `members - F` the ranking
    over `members` with F's entries skipped."""

    def __init__(self, members: Sequence[str]) -> None:
        points = sorted(
            (point, index)
            for index, member in enumerate(members)
            for point in member_points(member)
        )
        self.keys = [point for point, _ in points]
        self.owners = [index for _, index in points]
        self.own: list[list[int]] = [[] for _ in members]  # each member's points, ascending
        for point, index in points:
            self.own[index].append(point)


@dataclass
class Rankings:
    """Each task's members in ranking order, extended lazily: `get(task, k)` is the k-th entry as
    `(distance, member index)`, or None past the end. Walking the ring to the k-th new member
    visits about `n * ln(n / (n - k))` points, so even a whole ranking costs a few times n."""

    ring: Ring
    positions: list[int]
    n_members: int
    _lists: list[list[tuple[int, int]]] = field(default_factory=list)
    _seen: list[set[int]] = field(default_factory=list)
    _cursor: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lists = [[] for _ in self.positions]
        self._seen = [set() for _ in self.positions]
        self._cursor = [bisect.bisect_left(self.ring.keys, p) for p in self.positions]

    def ranking(self, task: int) -> list[tuple[int, int]]:
        """The entries of *task*'s ranking computed so far (`get()` extends it); read-only."""
        return self._lists[task]

    def get(self, task: int, k: int) -> tuple[int, int] | None:
        ranking = self._lists[task]
        if k < len(ranking):
            return ranking[k]
        if k >= self.n_members:
            return None
        keys, owners = self.ring.keys, self.ring.owners
        size = len(keys)
        seen = self._seen[task]
        cursor, origin = self._cursor[task], self.positions[task]
        while len(ranking) <= k:
            member = owners[cursor % size]
            if member not in seen:
                seen.add(member)
                ranking.append(((keys[cursor % size] - origin) & _MASK, member))
            cursor += 1
        self._cursor[task] = cursor
        return ranking[k]


def task_positions(todo: Sequence[TaskId]) -> list[int]:
    return [task_position(str(task)) for task in todo]


@dataclass(frozen=True)
class Limits:
    """How many tasks one member may hold: up to `base`; with a pool (`spare > 0`), one more
    for the first `spare` members to go over `base` in the walk."""

    base: int
    spare: int

    @classmethod
    def of(cls, total: int, n: int, balance_factor: float) -> Limits:
        """With a balance factor of 1.0: `total // n`, and `total % n` members may hold one more
        (loads differ by at most one). Otherwise `ceil(total / n * balance_factor)` each."""
        if balance_factor != 1.0:
            factor = Fraction(repr(float(balance_factor)))
            return cls(math.ceil(Fraction(total, n) * factor), 0)
        floor, spare = divmod(total, n)
        return cls(floor, spare)

    @property
    def cap(self) -> int:
        return self.base + (1 if self.spare else 0)


@dataclass
class Walk:
    """The result of one walk: each task's owner, the distance and rank of that pair; with
    `record`, also every pair the walk offered each member (taken or not), in walk order."""

    owner: list[int]
    distance: list[int]
    rank: list[int]
    proposals: list[list[tuple[int, int]]] | None = None


def walk(
    rankings: Rankings,
    n_tasks: int,
    alive: Collection[int],
    limits: Limits,
    *,
    record: bool = False,
) -> Walk:
    """Pairs in ascending (distance, task, member) order; a pair is taken when its task is free,
    its member alive, and the task fits: `load + 1 <= limits.base`, or `<= limits.cap` while
    fewer than `limits.spare` members have gone over `base`. The heap holds each free task's next
    candidate, so the pairs come in that order without sorting them all. The limits leave room
    for every task (`n * base + spare >= n_tasks`), so each one finds a member."""
    owner = [-1] * n_tasks
    distance = [0] * n_tasks
    ranks = [0] * n_tasks
    loads = dict.fromkeys(alive, 0)
    over = 0
    base, cap, spare = limits.base, limits.cap, limits.spare
    proposals: list[list[tuple[int, int]]] | None = (
        [[] for _ in range(rankings.n_members)] if record else None
    )
    heap = []
    for task in range(n_tasks):
        first = rankings.get(task, 0)
        assert first is not None
        heap.append((first[0], task, first[1], 0))
    heapq.heapify(heap)
    while heap:
        dist, task, member, rank = heap[0]
        if member in loads:
            if proposals is not None:
                proposals[member].append((dist, task))
            load = loads[member] + 1
            if load <= base or (load <= cap and over < spare):
                heapq.heappop(heap)
                owner[task], distance[task], ranks[task] = member, dist, rank
                if load > base >= loads[member]:
                    over += 1
                loads[member] = load
                continue
        following = rankings.get(task, rank + 1)
        assert following is not None, "the limits leave room for every task"
        heapq.heapreplace(heap, (following[0], task, following[1], rank + 1))
    return Walk(owner, distance, ranks, proposals)


def least_loaded(rankings: Rankings, task: int, loads: dict[int, int]) -> tuple[int, int, int]:
    """The least loaded alive member, the first in *task*'s ranking among equals."""
    least = min(loads.values())
    for rank in itertools.count():
        entry = rankings.get(task, rank)
        assert entry is not None
        if loads.get(entry[1]) == least:
            return entry[0], entry[1], rank
    raise AssertionError("unreachable")


def weighted_bound(total: int, n: int, balance_factor: float, largest: int) -> int:
    """Most load units one member may hold with weights: the even share
    `ceil(total / n * balance_factor)`, or the heaviest task where that alone is more."""
    share = math.ceil(Fraction(total, n) * Fraction(repr(float(balance_factor))))
    return max(share, largest)
