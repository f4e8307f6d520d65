"""Stream time: it only moves forward, survives as commit metadata, and advances with the wall
clock once a task is idle (idle advance)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processor.topology.clock import NEVER, NO_TIME, StreamClock, decode


@given(st.lists(st.integers(0, 10**9), max_size=50))
def test_stream_time_is_the_largest_timestamp_seen_and_never_goes_back(stamps: list[int]) -> None:
    clock = StreamClock()
    seen = NO_TIME
    for stamp in stamps:
        clock.observe(stamp)
        seen = max(seen, stamp)
        assert clock.stream_time == seen


def test_stream_time_round_trips_through_commit_metadata() -> None:
    clock = StreamClock()
    clock.observe(1_234)
    resumed = StreamClock()
    resumed.resume(decode(clock.encode()))
    assert resumed.stream_time == 1_234
    assert not resumed.changed, "what was resumed from is already committed"
    assert decode(None) == NO_TIME and decode("someone else's metadata") == NO_TIME


def test_idle_advance_follows_the_wall_clock_only_after_the_idle_time() -> None:
    clock = StreamClock(idle_advance_ms=1_000, wall_ms=0)
    clock.observe(50_000)
    assert not clock.tick(wall_ms=10_000)  # the record arrived: idleness counts from here
    assert not clock.tick(wall_ms=10_999)
    assert clock.tick(wall_ms=11_000)
    assert clock.stream_time == 51_000
    assert clock.tick(wall_ms=12_500) and clock.stream_time == 52_500  # and keeps advancing
    clock.observe(40_000)  # an older record does not move it back
    assert not clock.tick(wall_ms=13_000)
    assert clock.stream_time == 52_500


def test_without_idle_advance_or_a_first_record_the_wall_clock_moves_nothing() -> None:
    off = StreamClock(idle_advance_ms=0)
    off.observe(5)
    assert not off.tick(10**9) and off.stream_time == 5
    never_fed = StreamClock(idle_advance_ms=10)
    assert not never_fed.tick(10**9) and never_fed.stream_time == NO_TIME


def test_a_resumed_task_counts_its_idleness_from_its_start() -> None:
    clock = StreamClock(idle_advance_ms=100, wall_ms=1_000)
    clock.resume(7_000)
    assert not clock.tick(wall_ms=1_050)
    assert clock.tick(wall_ms=1_200) and clock.stream_time == 7_200


class _Recorder:
    def __init__(self, clock: StreamClock, due: list[int]) -> None:
        self.calls: list[int] = []
        self._due = due
        self._clock = clock

    def on_stream_time(self, stream_time: int) -> int:
        self.calls.append(stream_time)
        return self._due.pop(0) if self._due else NEVER


def test_listeners_are_called_when_due_and_tell_when_they_are_due_next() -> None:
    clock = StreamClock()
    listener = _Recorder(clock, [100, NEVER])
    clock.register(listener, 10)
    clock.observe(5)
    assert clock.stream_time < clock.due_at
    clock.observe(10)
    assert clock.stream_time >= clock.due_at
    clock.fire()
    assert listener.calls == [10] and clock.due_at == 100
    clock.expect(listener, 50)  # something new is due earlier
    clock.observe(60)
    clock.fire()
    assert listener.calls == [10, 60] and clock.due_at == NEVER
