"""The assignor at scale, no broker: time, moves on a join or a leave, standby copies, balance.

For N workers, P tasks and r standby replicas it measures:

- time: one `assign_with_standbys()` call, the whole of it (ms, best of `--repeat`);
- moves per join and per leave, extra = beyond the joiner's gains or the leaver's tasks, mean and
  max over `--trials` random joiners and random leavers (the same for every r: the active tasks
  do not depend on r, so they are measured in the r = 0 row);
- standby copies per task (ideal: min(r, N - 1));
- max load / ideal: the largest active load over P / N.

Cells with N > P are skipped (instances would idle), and so is r = 2 for N >= 200 (C(N, 2) =
19,900 to 124,750 failure sets; the replay costs about the same per set, so the time grows with
it) and for N > 20 when P // N changes with two failures (then every failure set is walked in
full, C(N, 2) walks of all P tasks).
Progress goes to stderr. The results replace this script's section of bench/RESULTS.md (between
`<!-- assignment-sim:start -->` and `<!-- assignment-sim:end -->`), with the assignor before
(`main`'s `processor` package, or `--old-ref`'s, exported and run in a child process) timed on
the issue's two target cells for comparison, and the numbers go to
bench/results/assignment_sim.json; the chart is drawn by `bench/assignment_sim_chart.py` in the
venv that has matplotlib.

    PYTHONPATH=. python bench/assignment_sim.py [--quick] [--trials 5] [--old-ref main]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from processor.ids import TaskId
from processor.runtime.assignment import assign, assign_with_standbys, moved_tasks, standby_counts

ROOT = Path(__file__).resolve().parent.parent
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
JSON_PATH = ROOT / "bench" / "results" / "assignment_sim.json"
START_MARK, END_MARK = "<!-- assignment-sim:start -->", "<!-- assignment-sim:end -->"
WORKERS = (10, 20, 50, 100, 200, 500)
TASKS = (100, 1_000, 3_000, 10_000)
REPLICAS = (0, 1, 2)
TARGETS = ((300, 3_000, 1), (100, 1_000, 2))


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _ids(rng: random.Random, n: int) -> list[str]:
    ids: set[str] = set()
    while len(ids) < n:
        ids.add(f"worker-{rng.getrandbits(32):08x}")
    return sorted(ids)


def _tasks(p: int) -> list[TaskId]:
    """P tasks in sub-topologies of at most 250 partitions, like a real topology."""
    return [TaskId(i // 250, i % 250) for i in range(p)]


def skipped(n: int, p: int, r: int) -> str | None:
    if n > p:
        return "N > P"
    if r == 2 and n >= 200:
        return "C(N, 2) failure sets"
    if r == 2 and n > 20 and p // (n - 2) != p // n:
        return "P // N changes with 2 failures: C(N, 2) full walks"
    return None


def timed(repeat: int, call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Best time of *repeat* calls, in ms, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best * 1e3, result


def moves(
    members: list[str], tasks: list[TaskId], trials: int, rng: random.Random
) -> dict[str, Any]:
    """Extra moves on `trials` random joins and `trials` random leaves."""
    before = assign(members, tasks)
    join: list[int] = []
    leave: list[int] = []
    for _ in range(trials):
        joiner = _ids(rng, 1)[0]
        after = assign([*members, joiner], tasks)
        join.append(len(moved_tasks(before, after)) - len(after.tasks_of(joiner)))
        leaver = rng.choice(members)
        after = assign([m for m in members if m != leaver], tasks)
        leave.append(len(moved_tasks(before, after)) - len(before.tasks_of(leaver)))
    return {
        "join_mean": statistics.mean(join),
        "join_max": max(join),
        "leave_mean": statistics.mean(leave),
        "leave_max": max(leave),
    }


def cell(n: int, p: int, r: int, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    members, tasks = _ids(rng, n), _tasks(p)
    ms, result = timed(1, assign_with_standbys, members, tasks, num_standby_replicas=r)
    if ms < 2_000 and args.repeat > 1:  # a slow cell is timed once
        again = timed(args.repeat - 1, assign_with_standbys, members, tasks, num_standby_replicas=r)
        ms = min(ms, again[0])
    loads = result.loads().values()
    row = {
        "n": n,
        "p": p,
        "r": r,
        "ms": ms,
        "copies": sum(standby_counts(result).values()) / p,
        "max_over_ideal": max(loads) / (p / n),
    }
    if r == 0:
        row |= moves(members, tasks, args.trials, rng)
    return row


_OLD_TIMER = """
import json, sys, time
from processor.ids import TaskId
from processor.runtime.assignment import assign_with_standbys, standby_counts
members, p, r, repeat = json.loads(sys.argv[1])
tasks = [TaskId(i // 250, i % 250) for i in range(p)]
best = float("inf")
for _ in range(repeat):
    start = time.perf_counter()
    result = assign_with_standbys(members, tasks, num_standby_replicas=r)
    best = min(best, time.perf_counter() - start)
    if best > 2.0:
        break
print(json.dumps([best * 1e3, sum(standby_counts(result).values()) / p]))
"""


def old_assignor(ref: str, members: list[str], p: int, r: int) -> tuple[float, float]:
    """(ms, copies per task) of `assign_with_standbys()` at *ref*: its whole `processor` package
    is exported to a scratch directory and timed in a child process (the assignor is several
    modules, so loading one file of the old version next to the new ones would mix them)."""
    scratch = Path(tempfile.mkdtemp())
    archive = subprocess.run(
        ["git", "archive", ref, "processor"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive, check=True)
    out = subprocess.run(
        [sys.executable, "-c", _OLD_TIMER, json.dumps([members, p, r, 3])],
        env={**os.environ, "PYTHONPATH": str(scratch)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    ms, copies = json.loads(out)
    return float(ms), float(copies)


def before_after(ref: str, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for n, p, r in TARGETS:
        members, tasks = _ids(rng, n), _tasks(p)
        _log(f"target N={n} P={p} r={r}: {ref} ...")
        old_ms, old_copies = old_assignor(ref, members, p, r)
        new_ms, new_result = timed(3, assign_with_standbys, members, tasks, num_standby_replicas=r)
        rows.append(
            {
                "n": n,
                "p": p,
                "r": r,
                "old_ms": old_ms,
                "new_ms": new_ms,
                "old_copies": old_copies,
                "new_copies": sum(standby_counts(new_result).values()) / p,
            }
        )
        _log(f"  {old_ms:.0f} ms -> {new_ms:.0f} ms")
    return rows


def markdown(
    rows: list[dict[str, Any]], targets: list[dict[str, Any]], meta: dict[str, Any]
) -> str:
    lines = [
        START_MARK,
        "## Task assignment at scale (`bench/assignment_sim.py`, issue 21)",
        "",
        f"{meta['date']}, {meta['machine']}, load average {meta['load']} when it started "
        f"(shared machine: times are upper bounds). Balance factor 1.0, random worker ids, "
        f"{meta['trials']} random joins and leaves per cell; time is one whole "
        "`assign_with_standbys()` call, best of a few.",
        "",
        f"Before and after on the issue's targets (before = `{meta.get('old_ref', 'main')}`'s "
        "assignor, in a child process; after = this checkout's; both on the same ids, each the "
        "best of up to 3 calls)"
        + (f"; measured {meta['targets_when']}" if "targets_when" in meta else "")
        + ":",
        "",
        "| N | P | r | before ms | after ms | copies/task before | after |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in targets:
        lines.append(
            f"| {t['n']} | {t['p']:,} | {t['r']} | {t['old_ms']:,.0f} | {t['new_ms']:,.0f} | "
            f"{t['old_copies']:.2f} | {t['new_copies']:.2f} |"
        )
    lines += [
        "",
        "All cells (moves: extra tasks moved beyond the joiner's or the leaver's own, mean/max; "
        "skipped: N > P; r = 2 for N >= 200, and for N > 20 where P // N changes with two "
        "failures):",
        "",
        "| N | P | ms r=0 | ms r=1 | ms r=2 | copies r=1 | copies r=2 | join extra | "
        "leave extra | max load / ideal |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by = {(row["n"], row["p"], row["r"]): row for row in rows}

    def get(n: int, p: int, r: int, field: str, fmt: str) -> str:
        row = by.get((n, p, r))
        return "-" if row is None else format(row[field], fmt)

    for p in TASKS:
        for n in WORKERS:
            if (n, p, 0) not in by:
                continue
            zero = by[n, p, 0]

            lines.append(
                f"| {n} | {p:,} | {get(n, p, 0, 'ms', ',.0f')} | {get(n, p, 1, 'ms', ',.0f')} | "
                f"{get(n, p, 2, 'ms', ',.0f')} | {get(n, p, 1, 'copies', '.2f')} | "
                f"{get(n, p, 2, 'copies', '.2f')} | "
                f"{zero['join_mean']:.1f}/{zero['join_max']} | "
                f"{zero['leave_mean']:.1f}/{zero['leave_max']} | {zero['max_over_ideal']:.2f} |"
            )
    lines += [
        "",
        "Chart: `results/assignment_sim.png`, drawn from `results/assignment_sim.json` by "
        "`bench/assignment_sim_chart.py` (needs matplotlib).",
        END_MARK,
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    current = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    if START_MARK in current and END_MARK in current:
        before = current[: current.index(START_MARK)]
        after = current[current.index(END_MARK) + len(END_MARK) :]
        RESULTS_MD.write_text(before + text + after)
    else:
        RESULTS_MD.write_text(current.rstrip("\n") + "\n\n" + text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="joins and leaves per cell")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per cell (best)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--old-ref", default="main", help="git ref of the 'before' assignor")
    parser.add_argument("--quick", action="store_true", help="N <= 100, P <= 1,000 only")
    parser.add_argument("--no-old", action="store_true", help="skip the before/after timing")
    parser.add_argument(
        "--resume", action="store_true", help="keep the cells results/assignment_sim.json has"
    )
    parser.add_argument(
        "--render", action="store_true", help="only rewrite RESULTS.md's section from the JSON"
    )
    parser.add_argument(
        "--targets", action="store_true", help="time the two targets again, keep the JSON's cells"
    )
    args = parser.parse_args()
    if args.render or args.targets:
        saved = json.loads(JSON_PATH.read_text())
        if args.targets:
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            saved["targets"] = before_after(args.old_ref, random.Random(args.seed))
            saved["meta"] |= {
                "old_ref": args.old_ref,
                "targets_when": f"{datetime.now():%Y-%m-%d %H:%M}, load average {load}",
            }
            save(saved["rows"], saved["targets"], saved["meta"])
        write_section(markdown(saved["rows"], saved["targets"], saved["meta"]))
        return
    rng = random.Random(args.seed)
    meta = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()}-vCPU VM",
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "trials": args.trials,
        "old_ref": args.old_ref,
    }
    rows: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    if args.resume and JSON_PATH.exists():
        saved = json.loads(JSON_PATH.read_text())
        rows, targets, meta = saved["rows"], saved["targets"], saved["meta"]
    if not targets and not args.no_old:
        targets = before_after(args.old_ref, rng)
    done = {(row["n"], row["p"], row["r"]) for row in rows}
    for p in TASKS:
        for n in WORKERS:
            if args.quick and (n > 100 or p > 1_000):
                continue
            for r in REPLICAS:
                reason = skipped(n, p, r)
                if (n, p, r) in done:
                    continue
                if reason:
                    _log(f"N={n} P={p} r={r}: skipped ({reason})")
                    continue
                row = cell(n, p, r, args, rng)
                rows.append(row)
                _log(f"N={n} P={p} r={r}: {row['ms']:.0f} ms, {row['copies']:.2f} copies/task")
                # Written after every cell, so that a run cut short still leaves its results.
                save(rows, targets, meta)
    save(rows, targets, meta)
    _log(f"wrote {RESULTS_MD.relative_to(ROOT)} (section) and {JSON_PATH.relative_to(ROOT)}")


def save(rows: list[dict[str, Any]], targets: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    JSON_PATH.parent.mkdir(exist_ok=True)
    JSON_PATH.write_text(json.dumps({"meta": meta, "rows": rows, "targets": targets}, indent=1))
    write_section(markdown(rows, targets, meta))


if __name__ == "__main__":
    main()
