"""Who owns what after some members fail, replayed from the full group's walk (all weights 1).

`assign(members - F)` offers the survivors' pairs in the same order as `assign(members)` (a ranking
over the survivors is the full ranking with F's entries skipped), under the same `base` limit
(`replay()` is only used when it is the same) and a pool of members allowed one more that is at
least as large. So the two walks take the same decision on every pair except where something
differs, and `replay()` visits only those pairs, in walk order. It keeps, per member, `shift` =
(its load in the new walk) - (its load in the full walk) at the current point, and the number of
members over `base` in the new walk as (survivors over `base` in the full walk so far) + `surplus`:

- a failed member's tasks are free from the pair that placed them, and try their next members;
- a member with `shift != 0` has every later pair of its own re-decided, until the walks agree
  at it again or it can take nothing more in either;
- a member with `shift == 0` decides differently only about a task the full walk turned away at
  load `base` (the new walk takes it while its pool is open: list `a`), or one the full walk
  took as its `base + 1`-th (the new walk refuses it once its pool is full: list `b`);
- a task placed early in the new walk leaves a hole where the full walk placed it later;
- a free task is offered its next-ranked members, as in the walk.

The result is exact (the tests compare it with `assign()` over the survivors); the cost is the
pairs that differ, not the walk.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Collection
from dataclasses import dataclass, field

from processor.runtime.assignment_walk import Limits, Rankings, Walk

_PROPOSE, _HOLE, _MEMBER, _A, _B = range(5)
Pair = int
"""A pair offered to one member as one int, `distance << TASK_BITS | task`: ints compare in walk
order, (distance, task), and faster than tuples."""
TASK_BITS = 32
_TASK = (1 << TASK_BITS) - 1
_BEFORE_ALL: Pair = -1
_AFTER_ALL: Pair = 1 << (64 + TASK_BITS + 1)


def pair(distance: int, task: int) -> Pair:
    return distance << TASK_BITS | task


@dataclass(frozen=True)
class Ledger:
    """The full walk, per member: the pairs it took (`taken`) and every pair it was offered
    (`offered`), in walk order; `a` and `b` as in the module docstring, as (pair, member)."""

    walk: Walk
    limits: Limits
    taken: list[list[Pair]]
    offered: list[list[Pair]]
    a: list[tuple[Pair, int]]
    b: list[tuple[Pair, int]]
    _filled: dict[int, list[Pair]] = field(default_factory=dict, compare=False)

    def filled(self, load: int) -> list[Pair]:
        """Per member, the pair after which it holds at least *load* tasks in the full walk
        (`_AFTER_ALL` if it never does): a member the two walks agree at is that full for every
        later pair. Kept per load (a replay asks for `base` and `cap`)."""
        if load not in self._filled:
            self._filled[load] = [
                _BEFORE_ALL if load <= 0 else mine[load - 1] if len(mine) >= load else _AFTER_ALL
                for mine in self.taken
            ]
        return self._filled[load]

    @classmethod
    def of(cls, walk: Walk, limits: Limits) -> Ledger:
        assert walk.proposals is not None
        assert len(walk.owner) <= _TASK, "task indexes must fit in TASK_BITS"
        offered = [[d << TASK_BITS | t for d, t in pairs] for pairs in walk.proposals]
        taken: list[list[Pair]] = []
        a: list[tuple[Pair, int]] = []
        b: list[tuple[Pair, int]] = []
        for member, keys in enumerate(offered):
            mine = [key for key in keys if walk.owner[key & _TASK] == member]
            taken.append(mine)
            if len(mine) > limits.base and limits.spare:
                b.append((mine[limits.base], member))
            for key in keys:
                if walk.owner[key & _TASK] != member and bisect_left(mine, key) == limits.base:
                    a.append((key, member))
        a.sort()
        b.sort()
        return cls(walk, limits, taken, offered, a, b)


def replay(
    ledger: Ledger, rankings: Rankings, limits: Limits, failed: Collection[int]
) -> dict[int, int]:
    """The tasks whose owner differs in the walk over the members not in *failed* under
    *limits*, and their owner there. Needs `limits.base == ledger.limits.base` (or, without a
    pool on either side, `>=`) and all weights 1."""
    return _Replay(ledger, rankings, limits, failed).run()


class _Replay:
    def __init__(
        self, ledger: Ledger, rankings: Rankings, limits: Limits, failed: Collection[int]
    ) -> None:
        self.ledger, self.rankings, self.limits, self.failed = ledger, rankings, limits, failed
        self.old = ledger.limits
        self.shift: dict[int, int] = {}
        self.version: dict[int, int] = {}
        self.surplus = 0
        self.full_from: Pair | None = None
        self.now: Pair = _BEFORE_ALL
        self.moved: dict[int, int] = {}
        self.seen: set[tuple[int, int]] = set()
        self.heap: list[tuple[Pair, int, int, int]] = []
        self.b_keys = [pair for pair, _ in ledger.b]
        self.failed_b = sorted(pair for pair, m in ledger.b if m in failed)
        self.at_base = ledger.filled(limits.base)
        self.at_cap = ledger.filled(limits.cap)

    def run(self) -> dict[int, int]:
        for member in self.failed:
            for key in self.ledger.taken[member]:
                self.push(key, member, _HOLE, -1)
        if self.ledger.a and (self.limits.spare or self.limits.base > self.old.base):
            self.push(self.ledger.a[0][0], self.ledger.a[0][1], _A, 0)
        self.schedule_b(_BEFORE_ALL)
        while self.heap:
            key, member, kind, stamp = heapq.heappop(self.heap)
            self.now = key
            task = key & _TASK
            if kind == _PROPOSE:
                self.propose(key, member, stamp)
            elif kind == _A:
                self.stream_a(key, member, stamp)
            elif kind == _HOLE:
                if (task, member) not in self.seen:
                    self.seen.add((task, member))
                    self.decide(key, member)
            elif stamp != self.version.get(-1 if kind == _B else member):
                continue
            elif (task, member) in self.seen:
                self.after(member, key) if kind == _MEMBER else self.schedule_b(key)
            elif kind == _B:
                self.stream_b(key, member)
            else:
                self.seen.add((task, member))
                self.decide(key, member)
        missing = [
            k & _TASK
            for m in self.failed
            for k in self.ledger.taken[m]
            if k & _TASK not in self.moved
        ]
        assert not missing, f"replay left tasks {missing} without an owner"
        return self.moved

    # -- the queue ----------------------------------------------------------------------------

    def push(self, key: Pair, member: int, kind: int, stamp: int) -> None:
        heapq.heappush(self.heap, (key, member, kind, stamp))

    def offer_next(self, task: int, rank: int) -> None:
        """Offer *task* its member at *rank*, or the first after it that may take it: one that
        cannot already (failed, or full for good) is skipped without queueing the pair."""
        failed, shift, now = self.failed, self.shift, self.now
        at_base, at_cap = self.at_base, self.at_cap
        closed = not self.pool_open(now)
        ranking = self.rankings.ranking(task)
        while True:
            if rank >= len(ranking):  # walk the ring on, a few entries at a time
                assert rank < self.rankings.n_members, f"task index {task} fits no member"
                self.rankings.get(task, min(rank + 7, self.rankings.n_members - 1))
            entry = ranking[rank]
            member = entry[1]
            if member not in failed:
                if shift.get(member):
                    full = self.full_for_good(member)
                else:  # the walks agree at it: its full-walk load says how full it is
                    full = now > at_cap[member] or (closed and now > at_base[member])
                if not full:
                    self.push(entry[0] << TASK_BITS | task, member, _PROPOSE, rank)
                    return
            rank += 1

    def full_for_good(self, member: int) -> bool:
        """Whether *member* takes nothing after the pair being decided: loads never go down in a
        walk, and a full pool stays full."""
        load = self.load(member, self.now)
        if load >= self.limits.cap:
            return True
        return load >= self.limits.base and not self.pool_open(self.now)

    def schedule(self, member: int, now: Pair) -> None:
        """Queue *member*'s next pair while its load differs between the walks."""
        stamp = self.version[member] = self.version.get(member, 0) + 1
        shift = self.shift.get(member, 0)
        if shift == 0:
            return
        offered, taken = self.ledger.offered[member], self.ledger.taken[member]
        if bisect_right(taken, now) == len(taken):
            # The full walk takes nothing more here; stop once the new one cannot either.
            load = len(taken) + shift
            if load >= self.limits.cap or (load >= self.limits.base and not self.pool_open(now)):
                return
        i = bisect_right(offered, now)
        if i < len(offered):
            self.push(offered[i], member, _MEMBER, stamp)

    def schedule_b(self, now: Pair) -> None:
        """Queue the first pair of list `b` after *now* at which the new walk's pool is full."""
        stamp = self.version[-1] = self.version.get(-1, 0) + 1
        if not self.b_keys or not self.limits.spare:
            return
        j = bisect_right(self.b_keys, now)
        needed = self.limits.spare - self.surplus - self.alive_b_before(now)
        j += max(0, needed - 1)
        while j < len(self.b_keys):
            key, member = self.ledger.b[j]
            if member not in self.failed and self.alive_b_before(key) + self.surplus >= (
                self.limits.spare
            ):
                self.push(key, member, _B, stamp)
                return
            j += 1

    # -- the new walk's state -----------------------------------------------------------------

    def alive_b_before(self, key: Pair) -> int:
        return bisect_left(self.b_keys, key) - bisect_left(self.failed_b, key)

    def pool_open(self, key: Pair) -> bool:
        """Whether the new walk may still put a member over `base` at *key*. Once full, the pool
        stays full (the pairs come in order), which saves the look-ups after that."""
        if self.full_from is not None and key >= self.full_from:
            return False
        if self.alive_b_before(key) + self.surplus < self.limits.spare:
            return True
        self.full_from = key
        return False

    def load(self, member: int, key: Pair) -> int:
        return bisect_left(self.ledger.taken[member], key) + self.shift.get(member, 0)

    def accepts(self, member: int, key: Pair) -> bool:
        load = self.load(member, key)
        return load < self.limits.base or (load < self.limits.cap and self.pool_open(key))

    def take(self, task: int, member: int, key: Pair) -> None:
        """The new walk gives *task* to *member* at *key* (the full walk does not)."""
        if self.load(member, key) == self.limits.base:
            self.surplus += 1
        self.shift[member] = self.shift.get(member, 0) + 1
        self.moved[task] = member

    # -- the pairs ----------------------------------------------------------------------------

    def propose(self, key: Pair, member: int, rank: int) -> None:
        if member in self.failed or not self.accepts(member, key):
            self.offer_next(key & _TASK, rank + 1)
            return
        self.take(key & _TASK, member, key)
        self.after(member, key)

    def decide(self, key: Pair, member: int) -> None:
        """A pair at *member* whose outcome may differ: a hole, or a member with a shift."""
        task = key & _TASK
        base = self.ledger.walk
        if member in self.failed:
            if task not in self.moved:
                self.offer_next(task, base.rank[task] + 1)
            return
        if base.owner[task] == member:
            counted = self.old.spare and bisect_left(self.ledger.taken[member], key) == (
                self.old.base
            )
            if task in self.moved:
                self.shift[member] = self.shift.get(member, 0) - 1
            elif self.accepts(member, key):
                if self.load(member, key) == self.limits.base:
                    self.surplus += 1
            else:
                self.shift[member] = self.shift.get(member, 0) - 1
                self.offer_next(task, base.rank[task] + 1)
            if counted:
                self.surplus -= 1
        elif task not in self.moved and self.accepts(member, key):
            self.take(task, member, key)
            self.push(pair(base.distance[task], task), base.owner[task], _HOLE, -1)
        self.after(member, key)

    def after(self, member: int, key: Pair) -> None:
        self.schedule(member, key)
        if self.b_keys:
            self.schedule_b(key)

    def stream_a(self, key: Pair, member: int, index: int) -> None:
        """List `a`: while the new walk's pool is open (or its base is higher), a member the
        walks agree at takes the task the full walk turned away at load `base`."""
        if self.limits.spare and not self.pool_open(key):
            return
        task = key & _TASK
        if (
            member not in self.failed
            and not self.shift.get(member, 0)
            and task not in self.moved
            and (task, member) not in self.seen
        ):
            self.seen.add((task, member))
            self.take(task, member, key)
            base = self.ledger.walk
            self.push(pair(base.distance[task], task), base.owner[task], _HOLE, -1)
            self.after(member, key)
        if index + 1 < len(self.ledger.a):
            self.push(*self.ledger.a[index + 1], _A, index + 1)

    def stream_b(self, key: Pair, member: int) -> None:
        """List `b`: once the new walk's pool is full, a member the walks agree at refuses the
        task the full walk gave it as its `base + 1`-th."""
        if self.shift.get(member, 0) or self.pool_open(key):
            self.schedule_b(key)
            return
        self.seen.add((key & _TASK, member))
        self.decide(key, member)
