"""The weighted rule behind `assign(..., weights=)`: the count-based walk, then the members over
the bound hand tasks on, so that a few hot tasks move a few tasks.

Members and tasks are indexes, as in `assignment_walk`. Loads are in weight units and `bound`
is `weighted_bound(...)`. The rule, in steps:

1. **Count-based.** `walk()` without weights: the exact unweighted result (the count-based
   assignment every worker ran before the plan).
2. **Trim.** Each member whose load is over `bound` keeps its tasks in *keep order* (heaviest
   first, then nearest, i.e. ascending ring distance, then by task) while they fit within
   `bound`, and sheds the rest: a hot task stays where it was and the light tasks its member
   took last in the walk make room; two hot tasks that do not fit together part.
3. **Place**, heaviest shed task first (then by task), each one:
   a. to the first member in its ranking whose load stays within `bound`;
   b. else to the first member in its ranking where it fits once that member sheds tasks lighter
      than it (the member keeps those in keep order while they fit, as in step 2; what it sheds
      joins the tasks to place);
   c. else to the least loaded member, ties by its ranking.

Step 3b only sheds tasks lighter than the one placed, and tasks are placed heaviest first, so a
task that was placed is never shed again: **every task moves at most once** against the
count-based result. With light tasks of weight 1 and k hot ones of weights w_1..w_k, that gives
(the count-based loads are within `bound` in task counts, so only hot tasks' extra weight puts
a member over it):

- step 2 sheds at most `sum(w_i - 1)` light tasks and some hot ones;
- each hot task placed sheds at most `w_i` light tasks in step 3b;
- a light task always finds room in step 3a (the tasks placed so far weigh less than
  `n * bound`),

so **at most `2 * sum(w_i)` tasks move**, hot ones included, and usually about
`sum(w_i - 1)`: the light tasks that make room (`bench/assignment_weighted.py` measures it). No
load exceeds `bound` except through step 3c, which a task reaches only when every member holds
a task at least as heavy (a member without one qualifies in 3b, as `bound >= largest`), and
which stays within `capacity(W, n, balance_factor) + largest - 1` (the least loaded member
holds at most `(W - w) / n` before).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Sequence

from processor.runtime.assignment_walk import Rankings, Walk, least_loaded

__all__ = ["settle"]


def settle(
    rankings: Rankings, counted: Walk, alive: Collection[int], weights: Sequence[int], bound: int
) -> Walk:
    """Steps 2 and 3 of the module docstring over `counted`, the count-based walk of the
    `alive` members (step 1). Returns a new `Walk`; `counted` is left as it was."""
    owner, distance, rank = list(counted.owner), list(counted.distance), list(counted.rank)
    held: dict[int, list[int]] = {m: [] for m in sorted(alive)}
    for task, member in enumerate(owner):
        held[member].append(task)
    loads = {m: sum(weights[t] for t in tasks) for m, tasks in held.items()}

    def keep_order(task: int) -> tuple[int, int, int]:
        return (-weights[task], distance[task], task)

    def trim(member: int, kept: list[int], candidates: list[int], load: int) -> list[int]:
        """Keep `candidates` in keep order while they fit on top of `kept` (weighing `load`);
        `member` then holds those; the rest is returned."""
        shed = []
        for task in sorted(candidates, key=keep_order):
            if load + weights[task] <= bound:
                kept.append(task)
                load += weights[task]
            else:
                shed.append(task)
        held[member], loads[member] = kept, load
        return shed

    queue: list[tuple[int, int]] = []
    for member in held:
        if loads[member] > bound:
            queue.extend((-weights[t], t) for t in trim(member, [], held[member], 0))
    heapq.heapify(queue)
    while queue:
        _, task = heapq.heappop(queue)
        weight = weights[task]
        chosen = _first_with_room(rankings, task, loads, bound - weight)
        if chosen is None:
            chosen = _first_making_room(rankings, task, held, weights, bound)
            if chosen is not None:
                member = chosen[1]
                heavier = [t for t in held[member] if weights[t] >= weight]
                lighter = [t for t in held[member] if weights[t] < weight]
                load = sum(weights[t] for t in heavier)
                for shed in trim(member, heavier, lighter, load + weight):
                    heapq.heappush(queue, (-weights[shed], shed))
                loads[member] -= weight  # added back below, with the task
        if chosen is None:
            chosen = least_loaded(rankings, task, loads)
        distance[task], member, rank[task] = chosen
        owner[task] = member
        held[member].append(task)
        loads[member] += weight
    return Walk(owner, distance, rank)


def _first_with_room(
    rankings: Rankings, task: int, loads: dict[int, int], most: int
) -> tuple[int, int, int] | None:
    """(distance, member, rank) of the first alive member in `task`'s ranking holding at most
    `most`, or None."""
    for k in itertools.count():
        entry = rankings.get(task, k)
        if entry is None:
            return None
        if entry[1] in loads and loads[entry[1]] <= most:
            return entry[0], entry[1], k
    raise AssertionError("unreachable")


def _first_making_room(
    rankings: Rankings,
    task: int,
    held: dict[int, list[int]],
    weights: Sequence[int],
    bound: int,
) -> tuple[int, int, int] | None:
    """(distance, member, rank) of the first alive member in `task`'s ranking whose tasks at
    least as heavy as it leave room for it, or None."""
    weight = weights[task]
    room = bound - weight
    for k in itertools.count():
        entry = rankings.get(task, k)
        if entry is None:
            return None
        tasks = held.get(entry[1])
        if tasks is not None and sum(weights[t] for t in tasks if weights[t] >= weight) <= room:
            return entry[0], entry[1], k
    raise AssertionError("unreachable")
