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
   weight differs most from the current plan's (the whole new vector last); each candidate's
   assignment is computed with the injected `assign` function, and only those moving between 1
   and `max_moves` tasks (against the assignment that runs), none of them back to an owner a plan
   moved it away from in the last `cooldown_s`, are eligible. A large correction therefore
   happens over several plans, `max_moves` tasks at a time; a plan may move a task on from
   where an earlier plan put it (correcting that plan's weights), but never back and forth
   faster than the cooldown.
5. **Require a real gain.** Gains are judged by the *excess*: the load above the mean summed
   over the members, as a fraction of the total (what would have to move for a perfect balance;
   unlike the spread it improves with every useful move, not only the heaviest member's). The
   best eligible candidate (lowest excess under the same rates; ties: lower spread, fewer moves,
   fewer changed weights) is published only when it lowers the excess by at least `min_gain`
   of itself and by at least `MIN_EXCESS_GAIN` of the load it touches (`touched()`: the
   members whose tasks change, each at the mean of its load before and after plus the mean
   member load, over twice the total; all of the total when it touches every member, and at
   least `1 / n` of it). Only those members' terms of the excess differ between before and
   after, and rates measured with an error of e each misjudge each such term by at most e of
   (its load + the mean), so the gain by at most `4e` of the touched load: under rates that
   stay put with up to `MIN_EXCESS_GAIN / 4` noise every plan lowers the true excess (by at
   least `(MIN_EXCESS_GAIN - 4e) / n` of the total), which bounds how many plans follow one
   another and rules out coming back to an earlier assignment. Against the touched load rather
   than the total, because a hot task on one of 100 workers is under 1% of the total: measured
   against the total, no plan would ever pass at scale.

Why `SCALE = 2` and `MAX_WEIGHT = 16`: the mean task weighs 2, so a weight resolves half the
mean rate (a rounding error of at most a quarter of a mean task, well under the whole task a
count-based assignment may be off by), while weights stay small integers that noise moves only
when a rate crosses a half-step boundary. A task above 8 times the mean weighs 16: with the few
tasks per worker this is meant for, such a task takes a worker's share on its own anyway.
Tasks that process nothing still weigh 1: they cost a consumer and a commit.

Deterministic: the result depends on the inputs' values alone (members and tasks are sorted
before use), so a new leader given the same figures decides alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from processor.ids import TaskId

__all__ = [
    "MAX_WEIGHT",
    "SCALE",
    "AssignFunction",
    "Decision",
    "PlanSettings",
    "decide",
    "departures",
    "excess",
    "loads",
    "moved",
    "quantise",
    "spread",
    "touched",
]

SCALE = 2
MAX_WEIGHT = 16
# 2% of the load a plan touches: above what measuring noise of a few tenths of a percent per
# rate can fake (step 5), below what moving one of 12 tasks of equal load gains (8%).
MIN_EXCESS_GAIN = 0.02

AssignFunction = Callable[[Sequence[str], Mapping[TaskId, int] | None], Mapping[TaskId, str]]
"""`(members, weights) -> {task: owner}`: the assignment every worker would compute (weights
None or empty: count-based; a task not named weighs 1). The leader binds the task list and the
assignment settings."""


@dataclass(frozen=True)
class PlanSettings:
    """`threshold`: the spread over 1.0 tolerated (0.25: the heaviest member may carry 25% more
    than the mean). `sustain_s`: how long a larger spread must last. `max_moves`: tasks one plan
    may move. `min_gain`: the least relative improvement of the excess worth moving tasks for.
    `cooldown_s`: a task a plan moved away from an owner is not moved back to it for this long
    (`decide(left=)`)."""

    threshold: float = 0.25
    sustain_s: float = 30.0
    max_moves: int = 8
    min_gain: float = 0.10
    cooldown_s: float = 300.0

    def __post_init__(self) -> None:
        if not (
            self.threshold >= 0
            and self.sustain_s >= 0
            and self.cooldown_s >= 0
            and 0 < self.min_gain < 1
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
    """Each member's summed task rate (members without a task: 0), in member order."""
    summed = dict.fromkeys(sorted(set(members)), 0.0)
    for task, owner in sorted(active.items()):
        if owner in summed:
            summed[owner] += rates.get(task, 0.0)
    return summed


def spread(
    members: Sequence[str], active: Mapping[TaskId, str], rates: Mapping[TaskId, float]
) -> float:
    """The heaviest member's load over the mean (1.0 when nothing is processed)."""
    per_member = loads(members, active, rates)
    total = math.fsum(per_member.values())
    if not per_member or total <= 0:
        return 1.0
    return max(per_member.values()) / (total / len(per_member))


def excess(
    members: Sequence[str], active: Mapping[TaskId, str], rates: Mapping[TaskId, float]
) -> float:
    """The load above the mean, summed over the members, over the total (0.0: perfectly even or
    nothing processed; at most `1 - 1 / len(members)`)."""
    per_member = loads(members, active, rates)
    total = math.fsum(per_member.values())
    if not per_member or total <= 0:
        return 0.0
    mean = total / len(per_member)
    return math.fsum(max(0.0, load - mean) for load in per_member.values()) / total


def touched(
    members: Sequence[str],
    before: Mapping[TaskId, str],
    after: Mapping[TaskId, str],
    rates: Mapping[TaskId, float],
) -> float:
    """The load a change from `before` to `after` touches, as a fraction of twice the total
    (step 5): each member whose tasks change counts the mean of its load before and after, plus
    the mean member load. 1.0 when every member's tasks change, 0.0 when none's do (or nothing
    is processed)."""
    was, now = loads(members, before, rates), loads(members, after, rates)
    total = math.fsum(was.values())
    if total <= 0:
        return 0.0
    changed = {before[t] for t in moved(before, after)} | {after[t] for t in moved(before, after)}
    mean = total / len(was)
    touched_load = math.fsum((was[m] + now[m]) / 2 + mean for m in sorted(changed) if m in was)
    return touched_load / (2 * total)


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
        return keep(since, f"no plan moves 1 to {settings.max_moves} tasks free to move", True)
    weights, moves, after = best
    before = excess(members, active, rates)
    gained = before - excess(members, after, rates)
    needed = max(
        settings.min_gain * before, MIN_EXCESS_GAIN * touched(members, active, after, rates)
    )
    if gained < needed:
        return keep(
            since,
            f"the best plan would lower the excess load by {gained:.2%} of the total, under the "
            f"{needed:.2%} it must (now {before:.1%})",
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


def _best_candidate(
    members: Sequence[str],
    active: Mapping[TaskId, str],
    rates: Mapping[TaskId, float],
    current: Mapping[TaskId, int] | None,
    target: Mapping[TaskId, int] | None,
    assign: AssignFunction,
    settings: PlanSettings,
    cooling: frozenset[tuple[TaskId, str]],
) -> tuple[dict[TaskId, int], frozenset[TaskId], Mapping[TaskId, str]] | None:
    """Step 4 and the choice of step 5: (weights, moves, assignment) of the best eligible
    candidate, or None."""
    tasks = sorted(active)
    # Count-based is every task at the mean's weight, in the target's units.
    was = {t: (current.get(t, 1) if current else SCALE) for t in tasks}
    goal = {t: (SCALE if target is None else target[t]) for t in tasks}
    changed = sorted(
        (t for t in tasks if goal[t] != was[t]),
        key=lambda t: (-abs(goal[t] - was[t]), -rates.get(t, 0.0), t),
    )
    ordered = sorted(set(members))
    best = None
    for k in _prefix_sizes(len(changed)):
        candidate = dict(was)
        candidate.update({t: goal[t] for t in changed[:k]})
        weights = {} if len(set(candidate.values())) <= 1 else candidate
        placed = assign(ordered, weights)
        moves = moved(active, placed)
        if not 1 <= len(moves) <= settings.max_moves or any(
            (t, placed[t]) in cooling for t in moves
        ):
            continue
        rank = (excess(ordered, placed, rates), spread(ordered, placed, rates), len(moves), k)
        if best is None or rank < best[0]:
            best = (rank, weights, moves, placed)
    if best is None:
        return None
    return best[1], best[2], best[3]


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
