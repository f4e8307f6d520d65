"""How many tasks `assign()` moves on a join or a leave besides the ones that must move.

A join must move the tasks the joiner receives; a leave must move the leaver's tasks. Everything
else that changes owner is an *extra* move, caused by the load bound. For each balance factor,
task count and instance count N this prints the average and maximum extra moves over random
memberships (random instance ids):

- join: N members, one more joins (N -> N+1);
- leave: N members, each member in turn leaves (N -> N-1).

It ends with the time `assign()` takes for 1,000 tasks on 50 instances.

    PYTHONPATH=. python bench/assignment_moves.py [--trials 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from processor.ids import TaskId
from processor.runtime.assignment import assign, moved_tasks

BALANCE_FACTORS = (1.0, 1.25)
TASK_COUNTS = (6, 12, 32, 64, 256)
INSTANCE_COUNTS = tuple(range(2, 11))


def _instance_id(rng: random.Random) -> str:
    return f"worker-{rng.getrandbits(32):08x}"


def measure(
    n_instances: int, n_tasks: int, balance_factor: float, trials: int, rng: random.Random
) -> tuple[list[int], list[int]]:
    """Extra moves on join and on leave over *trials* random memberships."""
    tasks = [TaskId(0, p) for p in range(n_tasks)]
    join: list[int] = []
    leave: list[int] = []
    for _ in range(trials):
        ids: list[str] = []
        while len(ids) < n_instances + 1:
            new = _instance_id(rng)
            if new not in ids:
                ids.append(new)
        *members, joiner = ids
        before = assign(members, tasks, balance_factor=balance_factor)

        after = assign([*members, joiner], tasks, balance_factor=balance_factor)
        join.append(len(moved_tasks(before, after)) - len(after.tasks_of(joiner)))

        for leaver in members:
            survivors = [m for m in members if m != leaver]
            after = assign(survivors, tasks, balance_factor=balance_factor)
            leave.append(len(moved_tasks(before, after)) - len(before.tasks_of(leaver)))
    return join, leave


def _cell(extra: list[int]) -> str:
    return f"{statistics.mean(extra):4.1f}/{max(extra):<2d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="memberships per cell")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    results = {
        (bf, t, n): measure(n, t, bf, args.trials, rng)
        for bf in BALANCE_FACTORS
        for t in TASK_COUNTS
        for n in INSTANCE_COUNTS
    }
    print(f"extra moves, avg/max over {args.trials} memberships per cell (seed {args.seed})")
    header = "bf    tasks | " + " ".join(f"N={n:<6d}" for n in INSTANCE_COUNTS) + " | worst avg"
    for kind, index in (("join  (N -> N+1)", 0), ("leave (N -> N-1)", 1)):
        print(f"\n{kind}")
        print(header)
        for bf in BALANCE_FACTORS:
            for t in TASK_COUNTS:
                cells = [results[bf, t, n][index] for n in INSTANCE_COUNTS]
                worst = max(statistics.mean(c) for c in cells) / t
                row = " ".join(_cell(c) for c in cells)
                print(f"{bf:<5} {t:5d} | {row} | {worst:6.1%}")

    tasks = [TaskId(s, p) for s in range(4) for p in range(250)]
    instances = [f"worker-{i:02d}" for i in range(50)]
    timings = []
    for _ in range(10):
        start = time.perf_counter()
        assign(instances, tasks)
        timings.append(time.perf_counter() - start)
    print(
        f"\nassign(50 instances, 1000 tasks): min {min(timings) * 1e3:.1f} ms, "
        f"median {statistics.median(timings) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
