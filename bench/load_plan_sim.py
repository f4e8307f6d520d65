"""The load-aware leader simulated over the real rule: how many skews end balanced for each
`load_balance_max_moves`, and what the plans move on the way.

Each skew: N workers (random instance ids), P tasks whose rates are 100 records/s within 30%,
and 1 to 3 hot ones at 3 to 10 times that. The leader (`load_plan.decide`, default settings but
the bound on moves, 20 s sustain, the cooldown on, the noise allowance `--allowance`) looks every
10 s at the rates, each off by up to `--noise` (uniform, 0.4% by default), for `--rounds` looks,
and every plan it publishes is applied at once with the real `assign(..., weights=)`. A skew
*ends balanced* when its final spread (heaviest worker's load over the mean) is at most 1.25 (the
default threshold) or no worse than the assignment with the whole target weights at once (what an
unbounded plan reaches) plus 0.02. `ms/search`: how long `decide()` took when it computed
candidates (process CPU time: the machine may be shared), mean and max.

    PYTHONPATH=. python bench/load_plan_sim.py [--skews 60] [--seed 0] [--sizes 2-5x6-30,20x200]
        [--noise 0.004] [--allowance 0.02] [--limits 8]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Mapping, Sequence

from processor.ids import TaskId
from processor.runtime.assignment import assign
from processor.runtime.load_plan import NOISE, PlanSettings, decide, departures, quantise, spread

LIMITS = (2, 4, 8, 12, 16)


def _skew(n: int, p: int, rng: random.Random) -> tuple[list[str], dict[TaskId, float]]:
    members: set[str] = set()
    while len(members) < n:
        members.add(f"worker-{rng.getrandbits(32):08x}")
    tasks = [TaskId(0, q) for q in range(p)]
    rates = {t: 100.0 * rng.uniform(0.7, 1.3) for t in tasks}
    for task in rng.sample(tasks, rng.randint(1, min(3, p - 1))):
        rates[task] = 100.0 * rng.uniform(3, 10)
    return sorted(members), rates


def simulate(
    members: Sequence[str],
    rates: Mapping[TaskId, float],
    settings: PlanSettings,
    rounds: int,
    seed: int,
    noise: float,
) -> tuple[float, list[int], list[float]]:
    """(final spread, tasks moved by each plan, CPU seconds of each decision that searched)."""
    rng = random.Random(seed)
    tasks = sorted(rates)

    def placed(ms: Sequence[str], weights: Mapping[TaskId, int] | None) -> Mapping[TaskId, str]:
        return assign(ms, tasks, weights=weights).active

    active, current, since = placed(members, None), None, None
    left: dict[tuple[TaskId, str], float] = {}
    plans: list[int] = []
    searches: list[float] = []
    for tick in range(rounds):
        now = 10.0 * tick
        noisy = {t: r * (1 + rng.uniform(-noise, noise)) for t, r in rates.items()}
        began = time.process_time()
        d = decide(
            members=members,
            active=active,
            rates=noisy,
            current=current,
            assign=placed,
            settings=settings,
            imbalanced_since=since,
            now=now,
            left=left,
        )
        if d.searched:
            searches.append(time.process_time() - began)
        since = d.imbalanced_since
        if d.weights is not None:
            left.update(departures(active, d.moves, now))
            plans.append(len(d.moves))
            current, active = d.weights, placed(members, d.weights)
    return spread(members, active, rates), plans, searches


def _sizes(text: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """`2-5x6-30,20x200` -> [((2, 5), (6, 30)), ((20, 20), (200, 200))]."""

    def span(part: str) -> tuple[int, int]:
        low, _, high = part.partition("-")
        return int(low), int(high or low)

    return [(span(n), span(p)) for n, _, p in (s.partition("x") for s in text.split(","))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skews", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=40, help="looks, 10 s apart")
    parser.add_argument("--sizes", default="2-5x6-30,20x200,50x500,100x1000")
    parser.add_argument("--limits", default=",".join(map(str, LIMITS)))
    parser.add_argument("--noise", type=float, default=0.004, help="each rate off by up to")
    parser.add_argument("--allowance", type=float, default=NOISE, help="PlanSettings.noise")
    args = parser.parse_args()
    limits = [int(x) for x in args.limits.split(",")]
    print(
        f"{args.skews} skews per size, {args.rounds} looks each (seed {args.seed}), "
        f"noise {args.noise:.1%}, allowance {args.allowance:.1%}"
    )
    print(
        "workers x tasks  max_moves | balanced | plans avg | moved avg/max per plan | spread "
        "| ms/search avg/max"
    )
    for (n_low, n_high), (p_low, p_high) in _sizes(args.sizes):
        rng = random.Random(args.seed)
        skews = [
            _skew(rng.randint(n_low, n_high), rng.randint(p_low, p_high), rng)
            for _ in range(args.skews)
        ]
        best = []
        for members, rates in skews:
            target = quantise(rates)
            best.append(
                spread(members, assign(members, sorted(rates), weights=target).active, rates)
            )
        for limit in limits:
            settings = PlanSettings(sustain_s=20, max_moves=limit, noise=args.allowance)
            runs = [
                simulate(m, r, settings, args.rounds, i, args.noise)
                for i, (m, r) in enumerate(skews)
            ]
            balanced = sum(
                1
                for (final, _, _), b in zip(runs, best, strict=True)
                if final <= max(1.25, b + 0.02)
            )
            per_plan = [m for _, plans, _ in runs for m in plans] or [0]
            searched = [s * 1000 for _, _, ss in runs for s in ss] or [0.0]
            print(
                f"{n_low}-{n_high} x {p_low}-{p_high}".ljust(16)
                + f" {limit:9d} | {balanced:3d}/{len(runs):<3d} "
                f"| {statistics.mean(len(p) for _, p, _ in runs):9.1f} "
                f"| {statistics.mean(per_plan):6.1f}/{max(per_plan):<4d}"
                f"              | {statistics.mean(f for f, _, _ in runs):5.2f}  "
                f"| {statistics.mean(searched):6.1f}/{max(searched):.1f}"
            )


if __name__ == "__main__":
    main()
