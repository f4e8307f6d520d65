"""Hypothesis strategies for the timer and expiry property tests, and the cases they generate:
operation sequences over a few keys whose byte order differs from their length order, times in
a small range so that they collide, repeat and arrive out of order, and both clocks kept close
enough to interact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.unit.timers.reference import (
    Action,
    AdvanceStream,
    AdvanceWall,
    Cancel,
    Delete,
    Get,
    Op,
    Pipe,
    Put,
    Scan,
    SetTimer,
)

KEYS = ["a", "ab", "b", ""]
NAMES = ["default", "x", "y"]
CLOCKS = ["stream", "wall"]

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys = st.sampled_from(KEYS)

set_timers = st.builds(
    SetTimer,
    name=st.sampled_from(NAMES),
    clock=st.sampled_from(CLOCKS),
    base=st.sampled_from(["ts", "wall", "abs"]),
    delta=st.integers(-5, 25),
)
timer_actions: st.SearchStrategy[Action] = st.one_of(
    set_timers, set_timers, st.builds(Cancel, st.sampled_from(NAMES))
)
store_actions: st.SearchStrategy[Action] = st.one_of(
    st.builds(Put, keys, st.integers(0, 9)),
    st.builds(Put, keys, st.integers(0, 9)),
    st.builds(Delete, keys),
    st.builds(Get, keys),
    st.just(Scan()),
)


@st.composite
def ops(draw: st.DrawFn, actions: st.SearchStrategy[Action], max_size: int = 20) -> list[Op]:
    """Records (with 1 to 3 actions each), wall-clock advances and stream-time advances. Times
    drift upwards (so that timers come due and keys expire while records keep coming) with
    jitter (records out of order, advances that do not move stream time)."""
    result: list[Op] = []
    drift = 0
    for _ in range(draw(st.integers(4, max_size))):
        drift += draw(st.integers(0, 6))
        kind = draw(st.sampled_from(["pipe", "pipe", "pipe", "wall", "stream"]))
        if kind == "pipe":
            ts = max(0, drift + draw(st.integers(-12, 4)))
            acts = tuple(draw(st.lists(actions, min_size=1, max_size=3)))
            result.append(Pipe(draw(keys), ts, acts))
        elif kind == "wall":
            result.append(AdvanceWall(draw(st.integers(0, 20))))
        else:
            result.append(AdvanceStream(max(0, drift + draw(st.integers(-10, 20)))))
    return result


# What on_timer does per timer name (applied to the timer's key), for the first firings.
on_fire_tables = st.dictionaries(
    st.sampled_from(NAMES), st.lists(timer_actions, max_size=2).map(tuple), max_size=3
)


@dataclass(frozen=True)
class TimerCase:
    """Operations on `harness.timer_topology(on_fire, fire_actions_limit)`."""

    ops: list[Op]
    on_fire: Mapping[str, Sequence[Action]]
    fire_actions_limit: int
    start_wall: int


timer_cases = st.builds(
    TimerCase,
    ops=ops(timer_actions),
    on_fire=on_fire_tables,
    fire_actions_limit=st.integers(0, 12),
    start_wall=st.sampled_from([0, 20]),
)


@dataclass(frozen=True)
class TtlCase:
    """Operations on `harness.ttl_topology(ttl_ms, clock, on_expire=on_expire)`."""

    ttl_ms: int
    clock: str
    on_expire: bool
    start_wall: int
    ops: list[Op]


ttl_cases = st.builds(
    TtlCase,
    ttl_ms=st.integers(1, 20),
    clock=st.sampled_from(["stream", "wall"]),
    on_expire=st.booleans(),
    start_wall=st.sampled_from([0, 50]),
    ops=ops(store_actions),
)
