"""Rates of the active tasks (`processor.runtime.task_rates`): the records arriving per second
over the last half minute, processed plus lag growth, none before a task was watched long
enough, started over when a task is created anew."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.ids import TaskId
from processor.runtime.task_rates import MIN_SPAN_S, WINDOW_S, TaskRates

T = TaskId(0, 1)
U = TaskId(1, 0)
steps = st.lists(st.floats(0.2, 3.0), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(rate=st.floats(0, 50_000), steps=steps, start=st.floats(0, 1e6))
def test_a_steady_rate_is_measured_whatever_the_sampling(
    rate: float, steps: list[float], start: float
) -> None:
    meter = TaskRates()
    now = start
    meter.observe(now, {T: 0}, {})
    for step in steps:
        now += step
        meter.observe(now, {T: int((now - start) * rate)}, {})
    watched = now - start
    rates = meter.rates()
    if watched < MIN_SPAN_S:
        assert rates == {}
        return
    # Counters are whole records: at most one record off at each end of the span.
    span = min(watched, WINDOW_S)
    assert math.isclose(rates[T], rate, abs_tol=2 / span + 1e-9)


def test_lag_growth_counts_as_load() -> None:
    """A worker that processes 100/s of a task receiving 300/s: its lag grows by 200/s."""
    meter = TaskRates()
    for second in range(31):
        meter.observe(float(second), {T: 100 * second, U: 50 * second}, {T: 200 * second})
    assert meter.rates() == {T: 300.0, U: 50.0}


def test_a_lag_known_at_one_end_only_is_left_out() -> None:
    meter = TaskRates()
    meter.observe(0.0, {T: 0}, {})
    meter.observe(20.0, {T: 2000}, {T: 10_000})
    assert meter.rates() == {T: 100.0}


def test_the_window_forgets_old_load() -> None:
    meter = TaskRates()
    count = 0
    for second in range(120):
        count += 1000 if second < 60 else 10
        meter.observe(float(second), {T: count}, {})
        if second == 59:
            assert meter.rates() == {T: 1000.0}
    assert meter.rates() == {T: 10.0}


def test_a_task_created_anew_or_gone_starts_over() -> None:
    meter = TaskRates()
    for second in range(20):
        meter.observe(float(second), {T: 100 * second, U: second}, {})
    assert set(meter.rates()) == {T, U}
    meter.observe(20.0, {T: 5}, {})  # counter went back; U is no longer active here
    assert meter.rates() == {}
    for second in range(21, 32):
        meter.observe(float(second), {T: 5 + 10 * (second - 20)}, {})
    assert meter.rates() == {T: 10.0}


def test_the_same_moment_twice_is_one_sample() -> None:
    meter = TaskRates()
    meter.observe(0.0, {T: 0}, {})
    meter.observe(15.0, {T: 150}, {})
    meter.observe(15.0, {T: 999}, {})
    assert meter.rates() == {T: 10.0}


def test_the_window_must_hold_the_minimum_span() -> None:
    with pytest.raises(ValueError, match="min_span_s"):
        TaskRates(window_s=5.0, min_span_s=10.0)
