"""Timers and ticks in the test driver against the brute-force reference (reference.py).

Random records set, replace and cancel per-key timers on both clocks (at times relative to the
record's timestamp, to the wall clock, or absolute: some already due), the wall clock and stream
time advance, and on_timer sets and cancels timers too (for the first few firings, so that a run
ends). After every operation the output topic must hold exactly what the reference says, in
order and with the same timestamps (firings stamped with their time or the wall clock, without
the input's headers), `driver.timers()` the reference's pending timers, and
`accounting.timers` the number of firings. On a failure Hypothesis prints the shrunk case, which
`reference.TimerModel` replays.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, note
from hypothesis import strategies as st

from processor.testing import TopologyTestDriver
from tests.unit.timers import harness
from tests.unit.timers.harness import run_timers
from tests.unit.timers.reference import (
    AdvanceStream,
    AdvanceWall,
    Op,
    Pipe,
    SetTimer,
    TickModel,
)
from tests.unit.timers.strategies import SETTINGS, TimerCase, timer_cases


@SETTINGS
@given(timer_cases)
def test_timers_fire_as_the_reference_says(case: TimerCase) -> None:
    note(repr(case))
    run_timers(case)


def test_a_timer_set_again_by_a_wall_firing_after_it_fired_is_not_lost() -> None:
    """Found by the property test: the stream timer ("k", "a") at 10 fires, then a wall firing in
    the same commit sets it again at 10; its index entry, written again, was deleted at the
    checkpoint by the removal of its first firing, and the timer never fired."""
    case = TimerCase(
        ops=[
            Pipe("k", 20, (SetTimer("a", "stream", "abs", 10), SetTimer("w", "wall", "abs", 0))),
            Pipe("j", 30),
            AdvanceStream(100),
        ],
        on_fire={"w": (SetTimer("a", "stream", "abs", 10),)},
        fire_actions_limit=2,
        start_wall=0,
    )
    run_timers(case)


def test_a_timer_a_firing_sets_again_over_a_stale_entry_fires_after_the_group() -> None:
    """Found by the property test: ("a", "y") moved from 5 to 10 leaves a stale index entry at 5;
    when ("a", "x") at 5 fires and sets ("a", "y") back to 5, the stale entry made it fire within
    the group at 5 (before ("b", "z")), not after it like any timer set while firing (and unlike
    a task restored from a compacted changelog, which has no stale entry)."""
    at5 = SetTimer("x", "stream", "abs", 5), SetTimer("y", "stream", "abs", 5)
    case = TimerCase(
        ops=[
            Pipe("a", 0, at5),
            Pipe("b", 0, (SetTimer("z", "stream", "abs", 5),)),
            Pipe("a", 1, (SetTimer("y", "stream", "abs", 10),)),
            AdvanceStream(5),
        ],
        on_fire={"x": (SetTimer("y", "stream", "abs", 5),)},
        fire_actions_limit=1,
        start_wall=0,
    )
    run_timers(case)


def test_a_timer_set_again_at_the_time_it_fired_in_the_pass_fires_after_the_group() -> None:
    """Found by the property test: "default" at 0 re-arms itself and "x" at 0 on each firing;
    "x", having fired in this pass, left its consumed index entry, so setting it again made it
    fire within the next group instead of after it."""
    again = SetTimer("default", "stream", "ts", 0), SetTimer("x", "stream", "ts", 0)
    case = TimerCase(
        ops=[Pipe("a", 0, (SetTimer("default", "stream", "abs", 0),))],
        on_fire={"default": again},
        fire_actions_limit=4,
        start_wall=0,
    )
    run_timers(case)


@dataclass(frozen=True)
class TickCase:
    every_ms: int
    clock: str
    start_wall: int
    ops: list[Op]


tick_ops = st.lists(
    st.one_of(
        st.builds(Pipe, st.just("k"), st.integers(0, 200)),
        st.builds(AdvanceWall, st.integers(0, 60)),
        st.builds(AdvanceStream, st.integers(0, 250)),
    ),
    min_size=1,
    max_size=20,
)
tick_cases = st.builds(
    TickCase,
    every_ms=st.integers(1, 50),
    clock=st.sampled_from(["wall", "stream"]),
    start_wall=st.sampled_from([0, 1_000]),
    ops=tick_ops,
)


@SETTINGS
@given(tick_cases)
def test_ticks_come_as_the_reference_says(case: TickCase) -> None:
    note(repr(case))
    driver = TopologyTestDriver(
        harness.tick_topology(case.every_ms, case.clock), start_time_ms=case.start_wall
    )
    model = TickModel(case.every_ms, case.clock, case.start_wall)
    for step, op in enumerate(case.ops):
        harness.do(driver, op, value=[])
        assert harness.outputs(driver) == model.step(op), f"op {step}: {op}"
    assert driver.accounting.timers["fired"] == model.ticks
