"""Draws bench/results/compare.png from compare.json: grouped bars (median, min-max whiskers),
one group per workload, one bar per contender; throughput on the left, restore on the right.
Run with the contenders' venv (matplotlib is not a dependency of the project):
`python bench/contenders/chart.py JSON PNG`."""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any

import matplotlib  # type: ignore[import-not-found, unused-ignore]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]


def panel(ax: Any, data: dict[str, Any], cells: list[dict[str, Any]], groups: list[str]) -> None:
    contenders = [c for c in data["labels"] if c in data["meta"]["contenders"]]
    width = 0.8 / max(1, len(contenders))
    colors = plt.get_cmap("tab10").colors
    for i, contender in enumerate(contenders):
        color = colors[i % len(colors)]
        for g, group in enumerate(groups):
            x = g + (i - (len(contenders) - 1) / 2) * width
            found = [
                c
                for c in cells
                if f"{c['workload']}/{c['workers']}" == group and c["contender"] == contender
            ]
            if not found:
                continue
            cell = found[0]
            if cell["status"] == "ok" and cell["rates"]:
                rates = [r / 1000 for r in cell["rates"]]
                median = statistics.median(rates)
                ax.bar(
                    x,
                    median,
                    width,
                    color=color,
                    yerr=[[median - min(rates)], [max(rates) - median]],
                    capsize=2,
                )
                ax.text(x, max(rates), f"{median:.0f}", ha="center", va="bottom", fontsize=7)
            elif cell["status"] == "too slow":
                value = cell["approx_rate"] / 1000
                ax.bar(x, value, width, color=color, alpha=0.4, hatch="//")
                ax.text(x, value, f"~{value:.0f}", ha="center", va="bottom", fontsize=7)
            else:
                label = " n/a" if cell["status"] == "n/a" else " failed"
                ax.text(
                    x, 0, label, rotation=90, ha="center", va="bottom", fontsize=7, color="grey"
                )
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(
        [data["titles"][g].replace(", ", ",\n").replace(" (", "\n(") for g in groups], fontsize=7
    )
    ax.grid(axis="y", alpha=0.3)


def main(json_path: str, png_path: str) -> None:
    with open(json_path) as file:
        data = json.load(file)
    cells: list[dict[str, Any]] = [c for c in data["cells"] if c["unit"] == "records/s"]
    groups: list[str] = []
    for cell in cells:
        group = f"{cell['workload']}/{cell['workers']}"
        if group not in groups:
            groups.append(group)
    throughput = [g for g in groups if not g.startswith("restore")]
    restore = [g for g in groups if g.startswith("restore")]
    panels = [p for p in (throughput, restore) if p]
    if not panels:
        return
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(max(8, 1.7 * len(groups) + 2), 6),
        gridspec_kw={"width_ratios": [len(p) for p in panels]},
        squeeze=False,
    )
    for ax, groups_of_panel in zip(axes[0], panels, strict=True):
        panel(ax, data, cells, groups_of_panel)
    axes[0][0].set_ylabel("thousand records per second (median; whiskers: min-max)")
    contenders = [c for c in data["labels"] if c in data["meta"]["contenders"]]
    colors = plt.get_cmap("tab10").colors
    handles = [
        matplotlib.patches.Patch(color=colors[i % len(colors)], label=data["labels"][c])
        for i, c in enumerate(contenders)
    ]
    axes[0][0].legend(handles=handles, fontsize=8)
    meta = data["meta"]
    fig.suptitle(
        f"{meta['records']:,} records, {meta['keys']:,} keys, 6 partitions, median of "
        f"{meta['runs']} run(s); {meta['machine']['cpus']} vCPU, {meta['date']} "
        "(hatched: stopped as too slow, approximate)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
