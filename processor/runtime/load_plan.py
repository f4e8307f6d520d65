"""Load-aware balancing, the pure part: from the tasks' measured rates and the assignment that
runs, whether to publish new task weights, and which.

Counting tasks balances work only when tasks weigh alike; with skewed keys one task can carry
many times the others' load. The leader (`processor.runtime.load_balancer`) calls `decide()`
with the records/s each task's owner reports; when it returns weights, the leader publishes
them (`processor.status.plan`) and every worker assigns with them (`assign(..., weights=)`
bounds the sum of weights per instance instead of the count of tasks).

One decision, in steps:

1. **Measure.** Each member's load is the sum of its tasks' rates under the assignment that
   runs; the *spread* is the heaviest member's load over the mean (1.0: perfectly even).
2. **Hysteresis.** Nothing happens while the spread is at most `1 + threshold`. A spread above
   it must last `sustain_s` (the clock restarts whenever it drops back) before a plan is tried,
   so a burst or a rebalance's catch-up never moves a task.
3. **Quantise.** Each task weighs `round(rate / mean task rate * SCALE)`, clamped to
   `1..MAX_WEIGHT` (`quantise()`). Weights that are all equal are no plan: the count-based
   assignment is kept.
4. **Bound the moves.** Candidate weights change the weights of the 1, 2, 4, ... tasks whose
   weight differs most from the current plan's (the whole new vector last), or step every
   weight that differs by more than 1 by at most 2, 4, 8, ... towards its new value (several
   hot tasks, each on its own worker, are then relieved a little each: given their full weight
   one at a time, the light tasks the first one sheds may land on the second one's worker, whose
   task still weighs as a light one). Each candidate's assignment is computed with the injected
   `assign` function, and only those moving between 1 and `max_moves` tasks (against the
   assignment that runs), none of them back to an owner a plan moved it away from in the last
   `cooldown_s`, and not raising the heaviest member's load (`peak()`: a plan never makes the
   worst member worse) are eligible. A large correction therefore happens over several plans,
   `max_moves` tasks at a time; a plan may move a task on from where an earlier plan put it
   (correcting that plan's weights), but never back and forth faster than the cooldown.
5. **Require a sure gain.** Plans are judged by the *squared deviation*: the sum over the
   members of (load - mean load) squared (`deviation()`). It sees every overloaded member, the
   heaviest most, and moving light tasks off a hot member onto a few members near the mean
   lowers it at any number of members. (The load above the mean, summed, which this step
   judged by before, barely moves then: each receiver ends a task above the mean, and at 100
   workers almost no skew got a plan. The heaviest load alone, the other candidate, does not
   move while a second hot member stays as heavy: with two hot tasks on two workers, one plan
   of `max_moves` cannot relieve both, and no plan is made; `bench/RESULTS.md`.) The eligible
   candidate with the largest *sure gain* (ties: lower spread, fewer moves, fewer changed
   weights) is published when that gain is positive and at least `min_gain` of the squared
   deviation of the members it touches (those whose tasks change), before: against the touched
   members rather than all, because a plan gains as much on 100 members as on 3.

   The sure gain (`sure_gain()`) is the least the true squared deviation drops by when every
   measured rate is off by up to `noise` of the true one (in any direction; all the tasks of a
   member may be off alike, so each member's load, before and after, is within `noise` of
   the true one). Only the touched members' terms change; they hold the same tasks before and
   after, so their summed load is the same and the drop is `sum(x^2 - y^2)` over them (x
   before, y after), which equals `sum((x - c)^2 - (y - c)^2)` for any constant `c`. With `c`
   the measured mean and each true load within `e = noise / (1 - noise)` of the measured one
   (x', y'), each `(x - c)^2` is at least `max(0, |x' - c| - e x')^2` and each `(y - c)^2` at
   most `(|y' - c| + e y')^2`. So every plan lowers the true squared deviation while the rates
   stay put within `noise`: no assignment comes back, and the plans stop. What noise costs: a
   plan moving light tasks off one hot member surely gains about the share of that member's
   load it moves (10% a task at 10 tasks a worker) less `2 * noise`.

   How noisy the rates are (`processor.runtime.task_rates`): a rate is the growth of the task's
   input end offsets over a 30-31 s span, the ends asked of the broker about once a second and
   timed when the answer is in. (a) An answer is up to a round trip old: an error of `L` at
   each end misjudges the rate by up to `2 L / 30 s` (0.7% at 100 ms), alike for every task of
   the owner (one request, one clock). (b) The arrivals themselves vary: records arriving
   independently at r/s vary over 30 s by about `1 / sqrt(30 r)` (1.8% at 100/s), so a member's
   load of L/s by `1 / sqrt(30 L)`. `NOISE` = 2% covers round trips up to 300 ms, or three
   standard deviations of the arrivals of a member carrying 750 records/s or more; a real
   change of load (burstier traffic) is what the sustain and the cooldown are for.

Why `SCALE = 2` and `MAX_WEIGHT = 16`: the mean task weighs 2, so a weight resolves half the
mean rate (a rounding error of at most a quarter of a mean task, well under the whole task a
count-based assignment may be off by), while weights stay small integers that noise moves only
when a rate crosses a half-step boundary. A task above 8 times the mean weighs 16: with the few
tasks per worker this is meant for, such a task takes a worker's share on its own anyway (at 10
tasks a worker, one at 10 times the mean keeps 3 light tasks beside it: a spread of about 1.3).
Tasks that process nothing still weigh 1: they cost a consumer and a commit.

Deterministic: the result depends on the inputs' values alone (members and tasks are sorted
before use), so a new leader given the same figures decides alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from processor.ids import TaskId

__all__ = [
    "MAX_WEIGHT",
    "NOISE",
    "SCALE",
    "AssignFunction",
    "Decision",
    "PlanSettings",
    "decide",
    "departures",
    "deviation",
    "loads",
    "moved",
    "peak",
    "quantise",
    "spread",
    "sure_gain",
]

SCALE = 2
MAX_WEIGHT = 16
# How far off a measured rate may be, as a fraction of it (step 5: a round trip of up to 300 ms
# at each end of the 30 s window, or three standard deviations of random arrivals).
NOISE = 0.02

AssignFunction = Callable[[Sequence[str], Mapping[TaskId, int] | None], Mapping[TaskId, str]]
"""`(members, weights) -> {task: owner}`: the assignment every worker would compute (weights
None or empty: count-based; a task not named weighs 1). The leader binds the task list and the
assignment settings."""


@dataclass(frozen=True)
class PlanSettings:
    """`threshold`: the spread over 1.0 tolerated (0.25: the heaviest member may carry 25% more
    than the mean). `sustain_s`: how long a larger spread must last. `max_moves`: tasks one plan
    may move. `min_gain`: the least sure gain worth moving tasks for, as a fraction of the
    squared deviation of the members a plan touches. `cooldown_s`: a task a plan moved away from
    an owner is not moved back to it for this long (`decide(left=)`). `noise`: how far off each
    measured rate may be (a fraction of it) without a plan's gain being misjudged (step 5)."""

    threshold: float = 0.25
    sustain_s: float = 30.0
    max_moves: int = 8
    min_gain: float = 0.10
    cooldown_s: float = 300.0
    noise: float = NOISE

    def __post_init__(self) -> None:
        if not (
            self.threshold >= 0
            and self.sustain_s >= 0
            and self.cooldown_s >= 0
            and 0 < self.min_gain < 1
            and 0 <= self.noise < 1
        ):
            raise ValueError(f"invalid plan settings {self}")
        if self.max_moves < 1:
            raise ValueError(f"max_moves must be at least 1, got {self.max_moves}")


@dataclass(frozen=True)
class Decision:
    """`weights`: publish these (None: keep what runs; empty: every task weighs 1, i.e. back to
    count-based). `imbalanced_since`: pass it back to
    the next call (when the spread went over the threshold, None while it is not). `reason`:
    why, for the log. `moves`: the tasks the published weights move. `spread_now` and
    `spread_after`: under the rates given, today's and the plan's (equal when kept).
    `searched`: whether candidates were computed (up to `log2(tasks) + 2` calls of `assign`:
    the caller should not ask again before the imbalance has had time to change)."""

    weights: Mapping[TaskId, int] | None
    imbalanced_since: float | None
    reason: str
    moves: frozenset[TaskId] = frozenset()
    spread_now: float = 1.0
    spread_after: float = 1.0
    searched: bool = False


def quantise(rates: Mapping[TaskId, float]) -> dict[TaskId, int] | None:
    """Step 3: each task's weight relative to the mean task rate; None when they are all equal
    (or nothing is processed at all)."""
    if not rates:
        return None
    mean = math.fsum(rates.values()) / len(rates)
    if mean <= 0:
        return None
    weights = {
        task: min(MAX_WEIGHT, max(1, math.floor(rate / mean * SCALE + 0.5)))
        for task, rate in sorted(rates.items())
    }
    return None if len(set(weights.values())) == 1 else weights


def loads(
    members: Sequence[str], active: Mapping[TaskId, str], rates: Mapping[TaskId, float]
) -> dict[str, float]:
    """Each member's summed task rate (members without a task: 0), in member order. Summed with
    `math.fsum` (exactly rounded), so the order the tasks come in makes no difference."""
    held: dict[str, list[float]] = {member: [] for member in sorted(set(members))}
    for task, owner in active.items():
        if owner in held:
            held[owner].append(rates.get(task, 0.0))
    return {member: math.fsum(found) for member, found in held.items()}


def spread(
    members: Sequence[str], active: Mapping[TaskId, str], rates: Mapping[TaskId, float]
) -> float:
    """The heaviest member's load over the mean (1.0 when nothing is processed)."""
    per_member = loads(members, active, rates)
    total = math.fsum(per_member.values())
    if not per_member or total <= 0:
        return 1.0
    return max(per_member.values()) / (total / len(per_member))


def peak(
    members: Sequence[str], active: Mapping[TaskId, str], rates: Mapping[TaskId, float]
) -> float:
    """The heaviest member's load (0.0 without members)."""
    return max(loads(members, active, rates).values(), default=0.0)


def deviation(
    members: Sequence[str], active: Mapping[TaskId, str], rates: Mapping[TaskId, float]
) -> float:
    """The members' squared deviation from the mean load, summed, over `n * mean^2` (the squared
    coefficient of variation; 0.0: perfectly even or nothing processed)."""
    per_member = loads(members, active, rates)
    total = math.fsum(per_member.values())
    if not per_member or total <= 0:
        return 0.0
    mean = total / len(per_member)
    return math.fsum((load - mean) ** 2 for load in per_member.values()) / (total * mean)


def sure_gain(
    members: Sequence[str],
    before: Mapping[TaskId, str],
    after: Mapping[TaskId, str],
    rates: Mapping[TaskId, float],
    noise: float = NOISE,
) -> tuple[float, float]:
    """(the least the true squared deviation drops by from `before` to `after` when each rate
    given is off by up to `noise` of the true one, the squared deviation of the members whose
    tasks change, before), both in `deviation()`'s units (step 5). (0.0, 0.0) when nothing
    changes or nothing is processed."""
    changes = moved(before, after)
    touched = {before[t] for t in changes} | {after[t] for t in changes}
    return _sure_gain(loads(members, before, rates), loads(members, after, rates), touched, noise)


def _sure_gain(
    was: Mapping[str, float], now: Mapping[str, float], touched: set[str], noise: float
) -> tuple[float, float]:
    """`sure_gain()` from the members' loads before and after and the members touched."""
    total = math.fsum(was.values())
    changed = sorted(touched & was.keys())
    if total <= 0 or not changed:
        return 0.0, 0.0
    mean = total / len(was)
    e = noise / (1 - noise)  # a true load is within e of the measured one, in its units
    least_before = math.fsum(max(0.0, abs(was[m] - mean) - e * was[m]) ** 2 for m in changed)
    most_after = math.fsum((abs(now[m] - mean) + e * now[m]) ** 2 for m in changed)
    base = math.fsum((was[m] - mean) ** 2 for m in changed)
    scale = total * mean
    return (least_before - most_after) / scale, base / scale


def moved(before: Mapping[TaskId, str], after: Mapping[TaskId, str]) -> frozenset[TaskId]:
    """Tasks in both whose owner differs."""
    return frozenset(t for t, owner in before.items() if t in after and after[t] != owner)


def departures(
    active: Mapping[TaskId, str], moves: frozenset[TaskId], now: float
) -> dict[tuple[TaskId, str], float]:
    """What a plan moving `moves` away from `active` at `now` adds to `decide()`'s `left`."""
    return {(task, active[task]): now for task in sorted(moves)}


def decide(
    *,
    members: Sequence[str],
    active: Mapping[TaskId, str],
    rates: Mapping[TaskId, float],
    current: Mapping[TaskId, int] | None,
    assign: AssignFunction,
    settings: PlanSettings,
    imbalanced_since: float | None,
    now: float,
    left: Mapping[tuple[TaskId, str], float] | None = None,
) -> Decision:
    """Steps 1-5 of the module docstring. `active`: the assignment that runs; `rates`:
    records/s of every task in it; `current`: the weights it was computed with (None or empty:
    count-based); `imbalanced_since`: the previous decision's; `now`: monotonic seconds;
    `left`: when a plan last moved each task away from each owner (same clock; `departures()`
    gives a decision's)."""
    spread_now = spread(members, active, rates)

    def keep(since: float | None, reason: str, searched: bool = False) -> Decision:
        return Decision(
            None, since, reason, spread_now=spread_now, spread_after=spread_now, searched=searched
        )

    if spread_now <= 1 + settings.threshold:
        return keep(None, "balanced")
    since = now if imbalanced_since is None else imbalanced_since
    if now - since < settings.sustain_s:
        return keep(since, "imbalance not sustained yet")
    target = quantise({t: rates.get(t, 0.0) for t in active})
    if target is None and not current:
        return keep(since, "the tasks weigh the same")
    cooling = frozenset(pair for pair, at in (left or {}).items() if now - at < settings.cooldown_s)
    best = _best_candidate(members, active, rates, current, target, assign, settings, cooling)
    if best is None:
        return keep(
            since,
            f"no plan moves 1 to {settings.max_moves} tasks free to move without raising the "
            "heaviest load",
            True,
        )
    weights, moves, after, (gained, base) = best
    if not _passes(gained, base, settings):
        return keep(
            since,
            f"the best plan would surely lower the squared deviation of the members it touches by "
            f"{gained / base if base > 0 else 0.0:.1%} of it, under the {settings.min_gain:.0%} it "
            f"must (all members: {deviation(members, active, rates):.4f})",
            True,
        )
    spread_after = spread(members, after, rates)
    return Decision(
        weights,
        None,
        f"spread {spread_now:.2f} -> {spread_after:.2f}, moving {len(moves)} tasks",
        moves=moves,
        spread_now=spread_now,
        spread_after=spread_after,
        searched=True,
    )


_Candidate = tuple[dict[TaskId, int], frozenset[TaskId], Mapping[TaskId, str], tuple[float, float]]


def _best_candidate(
    members: Sequence[str],
    active: Mapping[TaskId, str],
    rates: Mapping[TaskId, float],
    current: Mapping[TaskId, int] | None,
    target: Mapping[TaskId, int] | None,
    assign: AssignFunction,
    settings: PlanSettings,
    cooling: frozenset[tuple[TaskId, str]],
) -> _Candidate | None:
    """Step 4 and the choice of step 5: (weights, moves, assignment, `sure_gain()`) of the best
    eligible candidate, or None."""
    tasks = sorted(active)
    # Count-based is every task at the mean's weight, in the target's units.
    was = {t: (current.get(t, 1) if current else SCALE) for t in tasks}
    goal = {t: (SCALE if target is None else target[t]) for t in tasks}
    changed = sorted(
        (t for t in tasks if goal[t] != was[t]),
        key=lambda t: (-abs(goal[t] - was[t]), -rates.get(t, 0.0), t),
    )
    ordered = sorted(set(members))
    was_loads = loads(ordered, active, rates)
    heaviest = max(was_loads.values())
    mean = math.fsum(was_loads.values()) / len(was_loads)
    best = None
    for family in _candidates(was, goal, changed):
        for candidate in family:
            weights = {} if len(set(candidate.values())) <= 1 else candidate
            placed = assign(ordered, weights)
            moves = moved(active, placed)
            if len(moves) > settings.max_moves:
                break  # the family's later candidates change more weights still
            now_loads = loads(ordered, placed, rates)
            top = max(now_loads.values())
            if not moves or any((t, placed[t]) in cooling for t in moves) or top > heaviest:
                continue
            touched = {active[t] for t in moves} | {placed[t] for t in moves}
            gain = _sure_gain(was_loads, now_loads, touched, settings.noise)
            rank = (
                not _passes(*gain, settings),
                -gain[0],
                top / mean if mean > 0 else 1.0,
                len(moves),
                sum(1 for t in changed if candidate[t] != was[t]),
            )
            if best is None or rank < best[0]:
                best = (rank, (weights, moves, placed, gain))
    return None if best is None else best[1]


def _passes(gained: float, base: float, settings: PlanSettings) -> bool:
    """Step 5's test of a sure gain against the touched members' squared deviation."""
    return gained > 0 and gained >= settings.min_gain * base


def _candidates(
    was: Mapping[TaskId, int], goal: Mapping[TaskId, int], changed: Sequence[TaskId]
) -> tuple[Iterator[dict[TaskId, int]], Iterator[dict[TaskId, int]]]:
    """Step 4's two families of weight vectors, from `was` towards `goal` (`changed`: the tasks
    whose weight differs, largest difference first): the first 1, 2, 4, ... of `changed` at
    their goal; every task whose weight changes by more than 1 stepped 2, 4, 8, ... towards
    it."""

    def prefixes() -> Iterator[dict[TaskId, int]]:
        for k in _prefix_sizes(len(changed)):
            candidate = dict(was)
            candidate.update({t: goal[t] for t in changed[:k]})
            yield candidate

    def steps() -> Iterator[dict[TaskId, int]]:
        widest = max((abs(goal[t] - was[t]) for t in changed), default=0)
        step = 2
        while step < widest:
            candidate = dict(was)
            for t in changed:
                if abs(goal[t] - was[t]) > 1:
                    candidate[t] = was[t] + max(-step, min(step, goal[t] - was[t]))
            yield candidate
            step *= 2

    return prefixes(), steps()


def _prefix_sizes(n: int) -> list[int]:
    """1, 2, 4, ... below n, then n: a logarithmic number of candidates."""
    sizes = []
    k = 1
    while k < n:
        sizes.append(k)
        k *= 2
    if n:
        sizes.append(n)
    return sizes
