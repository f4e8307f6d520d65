"""Rates of the active tasks (`processor.runtime.task_rates`): the records arriving per second
over the last half minute (the input's end offsets' growth; without them processed plus lag
growth), none before a task was watched for a whole window, started over when a task is created
anew."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.ids import TaskId
from processor.runtime.load_plan import quantise
from processor.runtime.task_rates import WINDOW_S, TaskRates

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
    if watched < WINDOW_S:
        assert rates == {}
        return
    # Counters are whole records: at most one record off at each end of the span.
    span = WINDOW_S
    assert math.isclose(rates[T], rate, abs_tol=2 / span + 1e-9)


def test_lag_growth_counts_as_load() -> None:
    """A worker that processes 100/s of a task receiving 300/s: its lag grows by 200/s."""
    meter = TaskRates()
    for second in range(31):
        meter.observe(float(second), {T: 100 * second, U: 50 * second}, {T: 200 * second})
    assert meter.rates() == {T: 300.0, U: 50.0}


def test_a_lag_known_at_one_end_only_is_left_out() -> None:
    meter = TaskRates(min_span_s=10.0)
    meter.observe(0.0, {T: 0}, {})
    meter.observe(20.0, {T: 2000}, {T: 10_000})
    assert meter.rates() == {T: 100.0}


def test_lag_growth_counts_over_the_span_where_the_lag_is_known() -> None:
    """The first samples, before any fetch answered, have no lag: the rate is taken from the
    first sample with one, not from processed records alone over the whole window."""
    meter = TaskRates(min_span_s=10.0)
    for second in range(31):
        lag = 200 * second if second >= 5 else None
        meter.observe(float(second), {T: 100 * second}, {} if lag is None else {T: lag})
    assert meter.rates() == {T: 300.0}


def test_end_offsets_growth_is_the_rate_whatever_is_processed() -> None:
    """Ends asked of the broker win over processed + lag (whose lag may rest on a stale end),
    and a sample whose ends were not answered is skipped."""
    meter = TaskRates()
    for second in range(31):
        ends = {} if second % 7 == 3 else {T: 5_000 + 250 * second}
        # A lag from a cached end that stopped growing: it would say 100/s.
        meter.observe(float(second), {T: 100 * second}, {T: 0}, ends)
    assert meter.rates() == {T: 250.0}


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.floats(100, 5000),
    shares=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=4),
    arrival=st.floats(1.2, 20.0),
    seed=st.integers(),
)
def test_a_saturated_worker_measures_equally_hot_partitions_alike(
    capacity: float, shares: list[float], arrival: float, seed: int
) -> None:
    """A worker that gets through `capacity` records/s of tasks that each receive
    `arrival * capacity` / s, handing its time out unevenly (one task fetched far more than
    another, the shares changing each second): every task still weighs what arrives for it,
    so equal arrivals give equal rates (and weights)."""
    rng = random.Random(seed)
    tasks = [TaskId(0, p) for p in range(len(shares))]
    incoming = arrival * capacity / len(tasks)
    meter = TaskRates()
    processed = dict.fromkeys(tasks, 0.0)
    for second in range(40):
        weights = [s * rng.uniform(0.5, 1.5) for s in shares]
        for task, weight in zip(tasks, weights, strict=True):
            processed[task] += capacity * weight / sum(weights)
        ends = {t: int(incoming * second) for t in tasks}
        meter.observe(float(second), {t: int(n) for t, n in processed.items()}, {}, ends)
    rates = meter.rates()
    assert set(rates) == set(tasks)
    assert all(math.isclose(r, incoming, abs_tol=1 / WINDOW_S + 1e-9) for r in rates.values())
    cold = {TaskId(1, p): incoming / 20 for p in range(10)}
    weighed = quantise({**rates, **cold})
    assert weighed is not None and len({weighed[t] for t in tasks}) == 1


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
    for second in range(31):
        meter.observe(float(second), {T: 100 * second, U: second}, {})
    assert set(meter.rates()) == {T, U}
    meter.observe(31.0, {T: 5}, {})  # counter went back; U is no longer active here
    assert meter.rates() == {}
    for second in range(32, 61):
        meter.observe(float(second), {T: 5 + 10 * (second - 31)}, {})
    assert meter.rates() == {}  # 29 s watched: not a whole window yet
    meter.observe(61.0, {T: 5 + 300}, {})
    assert meter.rates() == {T: 10.0}


def test_the_same_moment_twice_is_one_sample() -> None:
    meter = TaskRates()
    meter.observe(0.0, {T: 0}, {})
    meter.observe(30.0, {T: 300}, {})
    meter.observe(30.0, {T: 999}, {})
    assert meter.rates() == {T: 10.0}


def test_the_window_must_hold_the_minimum_span() -> None:
    with pytest.raises(ValueError, match="min_span_s"):
        TaskRates(window_s=5.0, min_span_s=10.0)
