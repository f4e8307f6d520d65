"""The standby placement runs off the rebalance's path (`processor.runtime.standby_placer`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future

import pytest

from processor.ids import TaskId
from processor.runtime.assignment import Assignment, assign_with_standbys
from processor.runtime.standby_placer import StandbyPlacer

TASKS = [TaskId(0, p) for p in range(6)]


def _place(members: Sequence[str], weights: Mapping[TaskId, int] | None) -> Assignment:
    return assign_with_standbys(members, TASKS, num_standby_replicas=1, weights=weights)


class ManualStart:
    """Starts nothing: each placement waits in `started` until the test runs it."""

    def __init__(self) -> None:
        self.started: list[tuple[Callable[[], Assignment], Future[Assignment]]] = []

    def __call__(self, call: Callable[[], Assignment], name: str) -> Future[Assignment]:
        future: Future[Assignment] = Future()
        self.started.append((call, future))
        return future

    def finish(self, index: int) -> None:
        call, future = self.started[index]
        try:
            future.set_result(call())
        except Exception as e:
            future.set_exception(e)


def test_a_quick_placement_is_there_when_asked() -> None:
    placer = StandbyPlacer(_place)
    placed = placer.ask(["a", "b", "c"], None)
    assert placed == _place(["a", "b", "c"], None)
    assert placed is not None and placed.standby, "with 1 replica every member holds standbys"
    assert not placer.pending
    assert placer.take() is None, "handed over once"


def test_a_slow_placement_is_handed_over_once_when_it_is_done() -> None:
    start = ManualStart()
    placer = StandbyPlacer(_place, start=start, wait_s=0.01)
    assert placer.ask(["a", "b"], None) is None
    assert placer.pending and placer.take() is None
    start.finish(0)
    assert placer.take() == _place(["a", "b"], None)
    assert not placer.pending
    assert placer.take() is None


def test_members_that_changed_meanwhile_throw_the_running_placement_away() -> None:
    start = ManualStart()
    placer = StandbyPlacer(_place, start=start, wait_s=0.01)
    placer.ask(["a", "b"], None)
    assert placer.ask(["a", "b", "c"], None) is None
    assert len(start.started) == 1, "one placement at a time"
    start.finish(0)
    assert placer.take() is None, "placed for members that are gone"
    assert len(start.started) == 2, "the latest request starts once the other is done"
    start.finish(1)
    assert placer.take() == _place(["a", "b", "c"], None)


def test_only_the_latest_of_several_requests_is_placed() -> None:
    start = ManualStart()
    placer = StandbyPlacer(_place, start=start, wait_s=0.01)
    placer.ask(["a"], None)
    placer.ask(["a", "b"], None)
    placer.ask(["a", "b", "c"], None)
    start.finish(0)
    assert placer.take() is None
    assert len(start.started) == 2
    start.finish(1)
    assert placer.take() == _place(["a", "b", "c"], None)


def test_weights_are_part_of_the_request() -> None:
    start = ManualStart()
    placer = StandbyPlacer(_place, start=start, wait_s=0.01)
    placer.ask(["a", "b"], None)
    weights = {TASKS[0]: 5}
    placer.ask(["a", "b"], weights)
    start.finish(0)
    assert placer.take() is None, "placed without the load plan's weights"
    start.finish(1)
    assert placer.take() == _place(["a", "b"], weights)


def test_asking_again_for_the_members_placed_last_answers_at_once() -> None:
    start = ManualStart()
    placer = StandbyPlacer(_place, start=start, wait_s=0.01)
    placer.ask(["b", "a"], None)
    start.finish(0)
    placed = placer.take()
    assert placer.ask(["a", "b"], None) is placed
    assert len(start.started) == 1 and not placer.pending


def test_forgotten_placements_are_not_handed_over() -> None:
    start = ManualStart()
    placer = StandbyPlacer(_place, start=start, wait_s=0.01)
    placer.ask(["a", "b"], None)
    placer.forget()
    start.finish(0)
    assert placer.take() is None and not placer.pending


def test_a_failed_placement_raises_where_it_is_taken() -> None:
    def broken(members: Sequence[str], weights: Mapping[TaskId, int] | None) -> Assignment:
        raise ValueError("cannot assign 6 tasks to no instances")

    start = ManualStart()
    placer = StandbyPlacer(broken, start=start, wait_s=0.01)
    assert placer.ask(["a"], None) is None
    start.finish(0)
    with pytest.raises(ValueError, match="no instances"):
        placer.take()


def test_the_placement_runs_on_its_own_thread_while_the_caller_goes_on() -> None:
    release = threading.Event()
    threads: list[str] = []

    def slow(members: Sequence[str], weights: Mapping[TaskId, int] | None) -> Assignment:
        threads.append(threading.current_thread().name)
        release.wait(10)
        return _place(members, weights)

    placer = StandbyPlacer(slow, name="placing-here", wait_s=0.01)
    assert placer.ask(["a", "b"], None) is None, "the caller does not wait for it"
    release.set()
    for _ in range(1000):
        if (placed := placer.take()) is not None:
            break
        threading.Event().wait(0.01)
    assert placed == _place(["a", "b"], None)
    assert threads == ["placing-here"]
    assert placer.seconds > 0
