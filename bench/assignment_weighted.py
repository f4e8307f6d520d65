"""How far the weighted rule (`assign(..., weights=)`) strays from the count-based one when a few
tasks are hot, and how well each balances the weighted load.

For each instance count N and task count P, and 1, 2 or 3 hot tasks: random memberships (random
instance ids), hot tasks drawn at random, each hot weight drawn from 2..8 while every other task
weighs 1 (`--light 2` gives the light tasks weight 2 and the hot ones 4..16, the units the
leader's first plans use, `load_plan.SCALE`). Per cell it prints:

- moves: tasks whose owner differs between `assign(members, tasks)` (count-based) and
  `assign(members, tasks, weights=...)`, average/max; `units` is the least any rule must move to
  take the hot tasks' extra weight off their owners, `sum(w - light) / light`, on average;
- spread: the heaviest instance's weighted load over the mean, count-based and weighted (1.00 is
  even; with P / N tasks per instance, one task more than the mean is 1 + N / P);
- ms: the weighted `assign()`'s median time.

    PYTHONPATH=. python bench/assignment_weighted.py [--trials 20] [--seed 0] [--light 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter
from collections.abc import Mapping

from processor.ids import TaskId
from processor.runtime.assignment import Assignment, assign, moved_tasks

INSTANCE_COUNTS = (10, 100)
TASK_COUNTS = (100, 1000)
HOT_COUNTS = (1, 2, 3)


def _members(n: int, rng: random.Random) -> list[str]:
    ids: set[str] = set()
    while len(ids) < n:
        ids.add(f"worker-{rng.getrandbits(32):08x}")
    return sorted(ids)


def spread(result: Assignment, weights: Mapping[TaskId, int], light: int) -> float:
    load = Counter({m: 0 for m in result.instances})
    for task, owner in result.active.items():
        load[owner] += weights.get(task, light)
    return max(load.values()) / (sum(load.values()) / len(load))


def measure(
    n: int, p: int, hot: int, light: int, trials: int, rng: random.Random
) -> dict[str, list[float]]:
    tasks = [TaskId(s, q) for s in range(4) for q in range(p // 4)]
    out: dict[str, list[float]] = {k: [] for k in ("moves", "units", "plain", "weighted", "ms")}
    for _ in range(trials):
        members = _members(n, rng)
        weights = {t: light for t in tasks}
        for task in rng.sample(tasks, hot):
            weights[task] = light * rng.randint(2, 8)
        plain = assign(members, tasks)
        start = time.perf_counter()
        weighted = assign(members, tasks, weights=weights)
        out["ms"].append((time.perf_counter() - start) * 1e3)
        out["moves"].append(len(moved_tasks(plain, weighted)))
        out["units"].append(sum(w - light for w in weights.values()) / light)
        out["plain"].append(spread(plain, weights, light))
        out["weighted"].append(spread(weighted, weights, light))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="memberships per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--light", type=int, default=1, help="the light tasks' weight")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(
        f"light weight {args.light}, hot {2 * args.light}..{8 * args.light}; "
        f"{args.trials} memberships per cell (seed {args.seed})"
    )
    print("    N     P hot | moves avg/max  units | spread count-based  weighted (avg/max) |  ms")
    for n in INSTANCE_COUNTS:
        for p in TASK_COUNTS:
            for hot in HOT_COUNTS:
                r = measure(n, p, hot, args.light, args.trials, rng)
                print(
                    f"{n:5d} {p:5d} {hot:3d} | {statistics.mean(r['moves']):6.1f}/"
                    f"{max(r['moves']):<5.0f} {statistics.mean(r['units']):6.1f} | "
                    f"{statistics.mean(r['plain']):6.2f}/{max(r['plain']):4.2f}"
                    f"      {statistics.mean(r['weighted']):6.2f}/{max(r['weighted']):4.2f}"
                    f"       | {statistics.median(r['ms']):5.1f}"
                )


if __name__ == "__main__":
    main()
