"""A weighted assignment for the load-balancing tests, standing in for
`processor.runtime.assignment.assign(..., weights=)` (being written at the same time): rendezvous
ranking per task with a bound on the summed weight per instance. Heaviest tasks are placed first;
a task goes to its highest-ranked instance with room, else to the least loaded one."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence

from processor.ids import TaskId


def weighted_assign(
    members: Sequence[str], tasks: Iterable[TaskId], weights: Mapping[TaskId, int] | None
) -> dict[TaskId, str]:
    ordered = sorted(set(members))
    todo = sorted(set(tasks))
    weight = {t: (1 if weights is None else weights.get(t, 1)) for t in todo}
    if not todo:
        return {}
    cap = max(max(weight.values()), math.ceil(sum(weight.values()) / len(ordered)))
    load = dict.fromkeys(ordered, 0)
    owners: dict[TaskId, str] = {}
    for task in sorted(todo, key=lambda t: (-weight[t], t)):
        ranked = sorted(ordered, key=lambda m: hashlib.blake2b(f"{task}\0{m}".encode()).digest())
        room = [m for m in ranked if load[m] + weight[task] <= cap]
        owner = room[0] if room else min(ranked, key=lambda m: load[m])
        owners[task] = owner
        load[owner] += weight[task]
    return owners
