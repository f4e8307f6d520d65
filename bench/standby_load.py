"""How many standby copies `assign_with_standbys()` places, against the ideal of r per task.

Standbys go where tasks would land after any r instances fail, so each task has at least r of
them (min(r, N - 1)); the tasks the load bound shuffles among the survivors add more. For r = 1
and r = 2, each task count and instance count N this prints, over random memberships (random
instance ids):

- copies/task: standby copies per task, average over memberships (the ideal is r);
- max/ideal: the largest standby load of one instance divided by the ideal `r * tasks / N`,
  average over memberships (and the worst membership).

It ends with the time `assign_with_standbys()` takes for 1,000 tasks on 20 instances.

    PYTHONPATH=. python bench/standby_load.py [--trials 20] [--seed 0] [--balance-factor 1.0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from processor.ids import TaskId
from processor.runtime.assignment import assign_with_standbys, standby_counts

REPLICAS = (1, 2)
TASK_COUNTS = (6, 12, 32, 64, 256)
INSTANCE_COUNTS = (2, 3, 4, 5, 6, 8, 10, 12)


def _membership(n: int, rng: random.Random) -> list[str]:
    ids: set[str] = set()
    while len(ids) < n:
        ids.add(f"worker-{rng.getrandbits(32):08x}")
    return sorted(ids)


def measure(
    n_instances: int, n_tasks: int, r: int, balance_factor: float, trials: int, rng: random.Random
) -> tuple[list[float], list[float]]:
    """Standby copies per task, and max standby load over the ideal, per random membership."""
    tasks = [TaskId(0, p) for p in range(n_tasks)]
    ideal_load = min(r, n_instances - 1) * n_tasks / n_instances
    copies: list[float] = []
    peak: list[float] = []
    for _ in range(trials):
        result = assign_with_standbys(
            _membership(n_instances, rng),
            tasks,
            num_standby_replicas=r,
            balance_factor=balance_factor,
        )
        counts = standby_counts(result)
        copies.append(sum(counts.values()) / n_tasks)
        peak.append(max(counts.values()) / ideal_load)
    return copies, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="memberships per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--balance-factor", type=float, default=1.0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    bf = args.balance_factor

    print(
        f"standby placement, balance factor {bf}, {args.trials} memberships per cell "
        f"(seed {args.seed})"
    )
    header = "r tasks | " + " ".join(f"N={n:<10d}" for n in INSTANCE_COUNTS)
    for title, index, fmt in (
        ("standby copies per task, avg (max); ideal = r", 0, "{:4.2f} ({:4.2f})"),
        ("max standby load of one instance / (r * tasks / N), avg (max)", 1, "{:4.2f} ({:4.2f})"),
    ):
        print(f"\n{title}")
        print(header)
        for r in REPLICAS:
            for t in TASK_COUNTS:
                cells = []
                for n in INSTANCE_COUNTS:
                    values = measure(n, t, r, bf, args.trials, rng)[index]
                    cells.append(fmt.format(statistics.mean(values), max(values)))
                print(f"{r} {t:5d} | " + " ".join(f"{c:12s}" for c in cells))

    tasks = [TaskId(s, p) for s in range(4) for p in range(250)]
    instances = [f"worker-{i:02d}" for i in range(20)]
    for r in REPLICAS:
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            assign_with_standbys(instances, tasks, num_standby_replicas=r, balance_factor=bf)
            timings.append(time.perf_counter() - start)
        print(
            f"\nassign_with_standbys(20 instances, 1000 tasks, r={r}): "
            f"median {statistics.median(timings) * 1e3:.0f} ms"
        )


if __name__ == "__main__":
    main()
