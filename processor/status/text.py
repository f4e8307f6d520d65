"""The status view as plain text, for a terminal (`processor status`): a header line, then per
instance a line about it and a table of its tasks, and its recent failures."""

from __future__ import annotations

from collections.abc import Sequence

from processor.status.view import (
    NOT_KNOWN,
    RUNNING,
    InstanceView,
    StatusView,
    TaskFigures,
    format_duration,
    format_rate,
)

__all__ = ["bar", "render_text"]

_HEADER = ("task", "state", "consumer lag", "processed/s", "restore / standby")
# Failures shown per instance in a terminal (the page shows all the worker keeps).
_FAILURES_SHOWN = 5


def bar(fraction: float, width: int = 20) -> str:
    """`[#####     ]`: `fraction` (0..1) of `width` filled."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + " " * (width - filled) + "]"


def progress_text(task: TaskFigures) -> str:
    fraction = task.progress
    if fraction is None:
        return "" if task.state == RUNNING else "nothing to read"
    total = task.restored + task.remaining
    return (
        f"{bar(fraction)} {task.restored:,}/{total:,} {format_rate(task.restore_per_s)} "
        f"{format_duration(task.eta_s)} left"
    )


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]


def _instance(view: InstanceView) -> list[str]:
    figures = view.figures
    where = ", ".join(p for p in (view.phase, view.host, view.endpoint or "") if p)
    if figures is None:
        return [
            f"{view.instance}  NOT ANSWERING ({where}): {view.problem}",
            f"  active tasks by the assignment: {', '.join(view.active_tasks) or 'none'}; "
            f"standby: {', '.join(view.standby_tasks) or 'none'}",
        ]
    broker = "" if figures.broker_reachable else ", BROKER UNREACHABLE"
    lines = [f"{view.instance}  {figures.state}  ({where}, {figures.commits} commits{broker})"]
    rows = [_HEADER] + [
        (
            t.task,
            t.state,
            NOT_KNOWN if t.consumer_lag is None else f"{t.consumer_lag:,}",
            format_rate(t.processed_per_s) if t.state == RUNNING else "",
            progress_text(t),
        )
        for t in figures.tasks
    ]
    lines += _table(rows) if figures.tasks else ["  no tasks here"]
    for failure in figures.failures[-_FAILURES_SHOWN:]:
        lines.append(
            f"  {failure.outcome} {failure.where} (task {failure.task}): {failure.description}"
        )
    return lines


def render_text(view: StatusView) -> str:
    answering = sum(1 for i in view.instances if i.answering)
    lines = [
        f"{view.application}: {len(view.instances)} instances, {answering} answering "
        f"(seen by {view.answered_by})"
    ]
    for instance in view.instances:
        lines.append("")
        lines += _instance(instance)
    return "\n".join(lines)
