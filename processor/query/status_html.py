"""The status page as HTML: the topology drawing, then a card per instance with a table of its
tasks (state, consumer lag, restore or standby progress as a bar with records/s and time
left, records processed per second) and its recent failures. Self-contained: inline style, no
script; it reloads itself every `REFRESH_S` seconds. Also the token form the page shows first
when the worker has an HTTP token."""

from __future__ import annotations

import time
from html import escape

from processor.status.view import (
    NOT_KNOWN,
    RUNNING,
    FailureView,
    InstanceView,
    StatusView,
    TaskFigures,
    format_duration,
    format_rate,
)

__all__ = ["REFRESH_S", "status_page", "token_form"]

REFRESH_S = 3

_STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#111827;background:#fff}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
.instance{border:1px solid #d1d5db;border-radius:6px;padding:.6em 1em;margin:.8em 0}
.instance.down{background:#fef2f2;border-color:#fca5a5}
.meta{color:#4b5563;font-size:.9em}
table{border-collapse:collapse;margin:.5em 0}
th,td{text-align:left;padding:.25em .8em;border-bottom:1px solid #e5e7eb;font-size:.92em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;width:140px;height:10px;background:#e5e7eb;border-radius:5px;
vertical-align:middle;overflow:hidden}
.bar span{display:block;height:100%;background:#2563eb}
.state-restoring{color:#b45309;font-weight:bold}.state-running{color:#15803d}
.state-standby{color:#6b7280}
.failures td{font-size:.85em}
.graph{overflow-x:auto}
"""


def _page(title: str, body: str, *, refresh: bool) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>{meta}<style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def token_form(application: str, *, wrong: bool = False) -> str:
    """Asks for the HTTP token once; `POST /login` keeps it in a cookie."""
    problem = "<p><strong>That token is not the right one.</strong></p>" if wrong else ""
    body = (
        f"<h1>{escape(application)}</h1><p>This worker needs its HTTP token (the workers' "
        "<code>--http-token</code>) to show the application's status.</p>"
        f'{problem}<form method="post" action="/login"><label>Token '
        '<input type="password" name="token" autofocus></label> '
        '<button type="submit">Show status</button></form>'
    )
    return _page(f"{application}: token", body, refresh=False)


def status_page(view: StatusView, topology_svg: str) -> str:
    instances = "".join(_instance(i) for i in view.instances) or "<p>No instance known yet.</p>"
    answered = sum(1 for i in view.instances if i.answering)
    body = (
        f"<h1>{escape(view.application)}</h1>"
        f'<p class="meta">{len(view.instances)} instances, {answered} answering; seen by '
        f"{escape(view.answered_by)} at {time.strftime('%H:%M:%S')}, refreshed every "
        f"{REFRESH_S} s</p>"
        f'<h2>Instances</h2><div id="instances">{instances}</div>'
        f'<h2>Topology</h2><div class="graph">{topology_svg}</div>'
    )
    return _page(f"{view.application}: status", body, refresh=True)


def _instance(view: InstanceView) -> str:
    figures = view.figures
    where = f" on {escape(view.host)}" if view.host else ""
    endpoint = f" · {escape(view.endpoint)}" if view.endpoint else ""
    if figures is None:
        tasks = ", ".join(view.active_tasks) or "none"
        standbys = ", ".join(view.standby_tasks) or "none"
        return (
            f'<div class="instance down" data-instance="{escape(view.instance)}">'
            f"<h3>{escape(view.instance)} — not answering</h3>"
            f'<p class="meta">{escape(view.phase or "no status")}{where}{endpoint}: '
            f"{escape(view.problem or '')}</p><p>Active tasks (by the assignment): "
            f"{escape(tasks)}; standby tasks: {escape(standbys)}</p></div>"
        )
    broker = "" if figures.broker_reachable else " · <strong>broker unreachable</strong>"
    rows = "".join(_task_row(t) for t in figures.tasks)
    table = (
        "<table><tr><th>task</th><th>state</th><th>consumer lag</th><th>processed/s</th>"
        f"<th>restore / standby</th></tr>{rows}</table>"
        if rows
        else "<p>No tasks here.</p>"
    )
    return (
        f'<div class="instance" data-instance="{escape(view.instance)}">'
        f"<h3>{escape(view.instance)} — {escape(figures.state)}</h3>"
        f'<p class="meta">{escape(view.phase)}{where}{endpoint} · {figures.commits} commits'
        f"{broker}</p>{table}{_failures(figures.failures)}</div>"
    )


def _task_row(task: TaskFigures) -> str:
    lag = NOT_KNOWN if task.consumer_lag is None else f"{task.consumer_lag:,}"
    processed = "" if task.state != RUNNING else format_rate(task.processed_per_s)
    return (
        f'<tr class="task" data-task="{escape(task.task)}" data-state="{task.state}">'
        f"<td>{escape(task.task)}</td>"
        f'<td class="state-{task.state}">{task.state}</td>'
        f'<td class="num">{lag}</td><td class="num">{processed}</td>'
        f"<td>{_progress(task)}</td></tr>"
    )


def _progress(task: TaskFigures) -> str:
    fraction = task.progress
    if fraction is None:
        return "" if task.state == RUNNING else "nothing to read"
    percent = 100 * fraction
    total = task.restored + task.remaining
    return (
        f'<span class="bar" role="progressbar" aria-valuenow="{percent:.1f}" '
        f'aria-valuemin="0" aria-valuemax="100" data-restored="{task.restored}" '
        f'data-remaining="{task.remaining}"><span style="width:{percent:.1f}%"></span></span> '
        f"{task.restored:,} / {total:,} · {format_rate(task.restore_per_s)} · "
        f"{format_duration(task.eta_s)} left"
    )


def _failures(failures: tuple[FailureView, ...]) -> str:
    if not failures:
        return ""
    rows = "".join(
        f"<tr><td>{time.strftime('%H:%M:%S', time.localtime(f.time_ms / 1000))}</td>"
        f"<td>{escape(f.task)}</td><td>{escape(f.outcome)}</td><td>{escape(f.where)}</td>"
        f"<td>{escape(f.description)}</td></tr>"
        for f in reversed(failures)
    )
    return (
        f"<details open><summary>Recent failures ({len(failures)})</summary>"
        f'<table class="failures"><tr><th>time</th><th>task</th><th>outcome</th><th>record</th>'
        f"<th>error</th></tr>{rows}</table></details>"
    )
