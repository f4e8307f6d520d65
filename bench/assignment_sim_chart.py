"""Chart of `bench/assignment_sim.py`'s results: assignment time against workers, one line per
task count and r, from bench/results/assignment_sim.json into bench/results/assignment_sim.png.

Needs matplotlib, which the project does not depend on: run it with the benchmark venv's Python,

    .cache/bench-contenders/bin/python bench/assignment_sim_chart.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib  # type: ignore[import-not-found]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found]

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    data = json.loads((RESULTS / "assignment_sim.json").read_text())
    rows = data["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for p in sorted({row["p"] for row in rows}):
        for r, style in ((0, ":"), (1, "-"), (2, "--")):
            cells = sorted((row["n"], row) for row in rows if row["p"] == p and row["r"] == r)
            if not cells:
                continue
            ns = [n for n, _ in cells]
            axes[0].plot(
                ns, [row["ms"] for _, row in cells], style, marker="o", label=f"P={p:,} r={r}"
            )
            if r:
                axes[1].plot(
                    ns,
                    [row["copies"] for _, row in cells],
                    style,
                    marker="o",
                    label=f"P={p:,} r={r}",
                )
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="workers N",
        ylabel="assign_with_standbys (ms)",
        title="Assignment time, one call",
    )
    axes[0].axhline(500, color="grey", linewidth=0.8)
    axes[1].set(
        xscale="log",
        xlabel="workers N",
        ylabel="standby copies per task",
        title="Standby copies (ideal: r)",
    )
    for ax in axes:
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    fig.suptitle(f"bench/assignment_sim.py, {data['meta']['date']}")
    fig.tight_layout()
    fig.savefig(RESULTS / "assignment_sim.png", dpi=110)


if __name__ == "__main__":
    main()
