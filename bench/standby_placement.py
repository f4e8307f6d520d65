"""What a rebalance waits for, before and after standby placement moved off the main loop.

No broker. For each cell (N workers, P tasks, r standby replicas, weights or not) it measures,
on the calling thread, the way `processor.runtime.rebalance` computes an assignment:

- before: one `assign_with_standbys()` call, the whole placement, on the main loop;
- after: `assign()` (who owns what) plus `StandbyPlacer.ask()`, which waits up to
  `standby_placer.WAIT_S` for the placement and otherwise lets the rebalance go on;
- the placement's time on its thread, until `take()` hands it over, with the main loop idle
  (waiting on the broker) and busy;
- how much of a busy main loop is left while it runs: a loop of small pure-Python steps (a
  dict update per step, like a record's) counted per second with and without a placement
  running (Python's lock shares one core between the two threads).

    PYTHONPATH=. python bench/standby_placement.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from processor.ids import TaskId
from processor.runtime.assignment import Assignment, assign, assign_with_standbys
from processor.runtime.standby_placer import StandbyPlacer, let_others_run

CELLS = (
    (10, 100, 1, False),
    (100, 1_000, 1, False),
    (100, 1_000, 1, True),
    (300, 3_000, 1, False),
    (100, 1_000, 2, False),
)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _ids(rng: random.Random, n: int) -> list[str]:
    return sorted({f"worker-{rng.getrandbits(32):08x}" for _ in range(n)})


def _steps_per_s(seconds: float, until: Callable[[], bool] | None = None) -> float:
    """Small Python steps per second on this thread, for `seconds` (or until `until()` is
    true)."""
    counts: dict[int, int] = {}
    steps = 0
    start = time.perf_counter()
    while True:
        for i in range(1000):
            counts[i] = counts.get(i, 0) + 1
        steps += 1000
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or (until is not None and until()):
            return steps / elapsed


def _cell(
    members: list[str], tasks: list[TaskId], r: int, weights: dict[TaskId, int] | None, idle: float
) -> tuple[float, float, float, float, float]:
    """(before s, after s, placement s with the main loop idle, placement s with it busy, share
    of the main loop's speed left while placing)."""

    def place(ms: Sequence[str], ws: Mapping[TaskId, int] | None) -> Assignment:
        return assign_with_standbys(
            ms, tasks, num_standby_replicas=r, weights=ws, pause=let_others_run
        )

    t0 = time.perf_counter()
    assign_with_standbys(members, tasks, num_standby_replicas=r, weights=weights)
    before = time.perf_counter() - t0
    placer = StandbyPlacer(place)
    while placer.ask(members, weights) is None:  # the main loop waiting on the broker
        while placer.take() is None:
            time.sleep(0.005)
    alone = placer.seconds
    placer = StandbyPlacer(place)
    t0 = time.perf_counter()
    assign(members, tasks, weights=weights)
    got = placer.ask(members, weights)
    after = time.perf_counter() - t0
    if got is not None:
        return before, after, alone, placer.seconds, 1.0
    taken: list[Assignment] = []

    def placed() -> bool:
        if (answer := placer.take()) is not None:
            taken.append(answer)
        return bool(taken)

    share = _steps_per_s(600, placed) / idle
    return before, after, alone, placer.seconds, share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    idle = _steps_per_s(2.0)
    _log(f"main loop alone: {idle:,.0f} steps/s")
    print(
        "| N | P | r | weights | before: main loop waits ms | after: main loop waits ms "
        "| placement ms, main loop idle | busy | main loop's speed meanwhile |"
    )
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for n, p, r, weighted in CELLS:
        members = _ids(rng, n)
        tasks = [TaskId(i // 250, i % 250) for i in range(p)]
        weights = {t: rng.choice((1, 1, 1, 2, 5)) for t in tasks} if weighted else None
        assign(members, tasks)  # ring points hashed, as a running worker has them
        runs = [_cell(members, tasks, r, weights, idle) for _ in range(args.repeat)]
        before, after, alone, busy = (min(run[i] for run in runs) for i in range(4))
        share = min(run[4] for run in runs)
        _log(f"{n} x {p}, r={r}, weights={weighted}: done")
        print(
            f"| {n:,} | {p:,} | {r} | {'yes' if weighted else 'no'} | {before * 1000:,.0f} "
            f"| {after * 1000:,.0f} | {alone * 1000:,.0f} | {busy * 1000:,.0f} | {share:.0%} |"
        )


if __name__ == "__main__":
    main()
