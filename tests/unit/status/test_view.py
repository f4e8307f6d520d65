"""`processor.status.view`: the figures the status page and `processor status` show, from a
worker's snapshots, and the arithmetic behind them (rates, time left)."""

from __future__ import annotations

import json

import pytest

from processor.metrics import FailureNote, RestoreSample, WorkerSnapshot
from processor.status.view import (
    NOT_KNOWN,
    InstanceFigures,
    KnownInstance,
    StatusView,
    build_view,
    eta_seconds,
    figures_of,
    format_duration,
    format_rate,
    rate_between,
)


def _snapshots() -> tuple[WorkerSnapshot, WorkerSnapshot]:
    before = WorkerSnapshot(instance="w1", state="running", processed={"0_0": 100}, taken_at=10.0)
    after = WorkerSnapshot(
        instance="w1",
        state="running",
        processed={"0_0": 600, "0_1": 0},
        restores=(
            RestoreSample("0_1", standby=False, records=250, remaining=750, rate=125.0),
            RestoreSample("0_2", standby=True, records=40, remaining=10, rate=5.0),
        ),
        consumer_lag={"0_0": 17},
        recent_failures=(FailureNote(1_000, "0_0", "skipped", "in[0]@5", "boom"),),
        commits=4,
        taken_at=12.0,
    )
    return before, after


def test_each_task_has_its_state_and_figures() -> None:
    before, after = _snapshots()
    figures = {t.task: t for t in figures_of(after, before).tasks}
    running, restoring, standby = figures["0_0"], figures["0_1"], figures["0_2"]
    assert (running.state, restoring.state, standby.state) == ("running", "restoring", "standby")
    assert running.processed_per_s == 250.0  # 500 records in 2 s
    assert running.consumer_lag == 17 and restoring.consumer_lag is None
    assert restoring.processed_per_s is None  # no earlier count to compare with
    assert restoring.progress == 0.25 and restoring.eta_s == 6.0  # 750 left at 125/s
    assert standby.progress == 0.8 and standby.eta_s == 2.0
    assert running.progress is None and running.eta_s is None


def test_the_first_snapshot_has_no_rates() -> None:
    _, after = _snapshots()
    assert all(t.processed_per_s is None for t in figures_of(after, None).tasks)


def test_recent_failures_are_in_the_figures() -> None:
    before, after = _snapshots()
    (failure,) = figures_of(after, before).failures
    assert (failure.task, failure.outcome, failure.where, failure.description) == (
        "0_0",
        "skipped",
        "in[0]@5",
        "boom",
    )


def test_figures_and_views_survive_json() -> None:
    before, after = _snapshots()
    figures = figures_of(after, before)
    assert InstanceFigures.from_json(json.loads(json.dumps(figures.to_json()))) == figures
    view = build_view(
        "app",
        "w1",
        {"w1": KnownInstance("w1", "running"), "w2": KnownInstance("w2", "running")},
        {"w1": figures, "w2": "no answer within 1.5 s"},
    )
    assert StatusView.from_json(json.loads(json.dumps(view.to_json()))) == view


def test_an_instance_that_does_not_answer_stays_in_the_view() -> None:
    known = {
        "w2": KnownInstance("w2", "running", endpoint="http://h:2", active_tasks=("0_1",)),
        "w1": KnownInstance("w1", "running"),
        "w3": KnownInstance("w3", "stopped"),
    }
    figures = InstanceFigures("w1", "running")
    view = build_view("app", "w1", known, {"w1": figures, "w2": "no answer within 1.5 s"})
    assert [i.instance for i in view.instances] == ["w1", "w2", "w3"]
    w1, w2, w3 = view.instances
    assert w1.answering and w1.figures == figures
    assert not w2.answering and w2.problem == "no answer within 1.5 s"
    assert w2.active_tasks == ("0_1",)
    assert not w3.answering and "not a member" in (w3.problem or "")


@pytest.mark.parametrize(
    ("before", "after", "seconds", "rate"),
    [(0, 100, 2.0, 50.0), (5, 5, 1.0, 0.0), (100, 10, 1.0, None), (0, 10, 0.0, None)],
)
def test_rate_between(before: int, after: int, seconds: float, rate: float | None) -> None:
    assert rate_between(before, after, seconds) == rate


def test_time_left() -> None:
    assert eta_seconds(1000, 250.0) == 4.0
    assert eta_seconds(0, 0.0) == 0.0  # done, however slow
    assert eta_seconds(10, 0.0) is None  # not moving: no estimate


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, NOT_KNOWN), (0.2, "1s"), (59, "59s"), (61, "1m01s"), (3600 + 120, "1h02m")],
)
def test_durations_read_like_a_clock(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("rate", "text"), [(None, NOT_KNOWN), (2.5, "2.5/s"), (1234.4, "1,234/s"), (52_000, "52k/s")]
)
def test_rates_read_short(rate: float | None, text: str) -> None:
    assert format_rate(rate) == text
