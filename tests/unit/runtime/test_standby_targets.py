"""A worker keeps its last placement's standbys until the next placement is there
(`processor.runtime.standby_targets`): a rebalance waits only for who owns what."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence

import pytest

from processor.ids import TaskId
from processor.runtime.assignment import Assignment, assign, assign_with_standbys
from processor.runtime.standby_targets import StandbyTargets

TASKS = [TaskId(0, p) for p in range(8)]


class FakeTasks:
    def __init__(self) -> None:
        self.standbys: set[TaskId] = set()
        self.history: list[set[TaskId]] = []

    def set_standbys(self, wanted: set[TaskId]) -> None:
        self.standbys = set(wanted)
        self.history.append(set(wanted))

    def is_stateful(self, task: TaskId) -> bool:
        return True


class FakeStatus:
    def __init__(self) -> None:
        self.announced: list[str] = []

    def joiners(self, members: list[str]) -> list[str]:
        return [j for j in self.announced if j not in members]


class SlowPlacement:
    """Places standbys with 1 replica once the test lets it."""

    def __init__(self) -> None:
        self.go = threading.Semaphore(0)

    def __call__(self, members: Sequence[str], weights: Mapping[TaskId, int] | None) -> Assignment:
        self.go.acquire(timeout=10)
        return assign_with_standbys(members, TASKS, num_standby_replicas=1)


def _owners(members: list[str]) -> Assignment:
    return Assignment(assign(members, TASKS).active, instances=frozenset(members))


def _placed(targets: StandbyTargets, members: list[str]) -> Assignment:
    for _ in range(1000):
        if (placed := targets.take_placed(members, set(), set())) is not None:
            return placed
        time.sleep(0.01)
    raise AssertionError("the placement never came")


def _targets(place: SlowPlacement, tasks: FakeTasks, status: FakeStatus) -> StandbyTargets:
    return StandbyTargets(
        "a",
        place,
        lambda members: None,
        status,  # type: ignore[arg-type]
        tasks,  # type: ignore[arg-type]
        replicas=1,
    )


def test_the_last_placements_standbys_are_kept_until_the_next_one_is_there() -> None:
    place, tasks, status = SlowPlacement(), FakeTasks(), FakeStatus()
    targets = _targets(place, tasks, status)
    first = ["a", "b", "c"]
    running = targets.place(_owners(first), None)
    assert running.active == _owners(first).active and not running.standby
    assert targets.placing
    targets.keep(first, sorted(running.tasks_of("a")), set())
    assert tasks.standbys == set()

    place.go.release()
    placed = _placed(targets, first)
    expected = assign_with_standbys(first, TASKS, num_standby_replicas=1)
    assert placed == expected
    assert tasks.standbys == set(expected.standby["a"]) != set()

    second = ["a", "b"]
    running = targets.place(_owners(second), None)
    assert targets.placing
    targets.keep(second, sorted(running.tasks_of("a")), set())
    assert tasks.standbys == set(expected.standby["a"]), "kept while the next placement runs"

    place.go.release()
    after = _placed(targets, second)
    assert tasks.standbys == set(after.standby.get("a", frozenset())) - after.tasks_of("a")
    assert not targets.placing


def test_a_worker_that_owns_nothing_keeps_no_standby_and_takes_no_late_placement() -> None:
    place, tasks, status = SlowPlacement(), FakeTasks(), FakeStatus()
    targets = _targets(place, tasks, status)
    targets.place(_owners(["a", "b"]), None)
    targets.drop()
    place.go.release()
    time.sleep(0.1)
    assert targets.take_placed(["a", "b"], set(), set()) is None
    assert targets.wanted(set()) == set()


def _held(assignment: Assignment, instance: str) -> frozenset[TaskId]:
    return assignment.tasks_of(instance) | assignment.standby.get(instance, frozenset())


def test_joiners_pre_warm_what_this_worker_will_hold_once_they_are_in() -> None:
    place, tasks, status = SlowPlacement(), FakeTasks(), FakeStatus()
    targets = _targets(place, tasks, status)
    members = ["a", "b", "c", "d"]
    running = assign_with_standbys(members, TASKS, num_standby_replicas=1)
    joiner = next(
        j
        for j in (f"j{i}" for i in range(100))
        if _held(assign_with_standbys([*members, j], TASKS, num_standby_replicas=1), "a")
        - _held(running, "a")
    )
    future = assign_with_standbys([*members, joiner], TASKS, num_standby_replicas=1)
    expected = _held(future, "a") - _held(running, "a")

    status.announced = [joiner]
    assert targets.follow_joiners(members, running, set()), "the joiners changed"
    assert targets.joiners == [joiner]
    place.go.release()
    deadline = time.monotonic() + 10
    while targets.prewarm != expected and time.monotonic() < deadline:
        assert not targets.follow_joiners(members, running, set()), "the same joiners"
        time.sleep(0.01)
    assert targets.prewarm == expected
    assert expected <= tasks.standbys

    status.announced = []
    assert targets.follow_joiners(members, running, set())
    assert targets.prewarm == frozenset() and targets.joiners == []


def test_what_was_pre_warmed_is_kept_until_the_placement_after_the_join_is_there() -> None:
    place, tasks, status = SlowPlacement(), FakeTasks(), FakeStatus()
    targets = _targets(place, tasks, status)
    targets.prewarm = frozenset({TASKS[0], TASKS[1]})
    targets.joiners = ["j"]
    joined = ["a", "b", "j"]
    running = targets.place(_owners(joined), None)
    assert targets.placing and targets.joiners == []
    targets.keep(joined, sorted(running.tasks_of("a")), set())
    assert {TASKS[0], TASKS[1]} - running.tasks_of("a") <= tasks.standbys, "kept meanwhile"
    place.go.release()
    placed = _placed(targets, joined)
    assert targets.prewarm == frozenset()
    assert tasks.standbys == set(placed.standby.get("a", frozenset()))


def test_a_placement_that_comes_after_the_tasks_were_lost_logs_what_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    place, tasks, status = SlowPlacement(), FakeTasks(), FakeStatus()
    targets = _targets(place, tasks, status)
    members = ["a", "b"]
    running = targets.place(_owners(members), None)
    assert running.tasks_of("a"), "a owns tasks in this assignment"
    place.go.release()
    caplog.set_level(logging.INFO, logger="processor.worker")
    for _ in range(1000):  # meanwhile the worker lost its membership and closed its tasks
        if targets.take_placed(members, set(), set()) is not None:
            break
        time.sleep(0.01)
    [line] = [r.getMessage() for r in caplog.records if "; active tasks [" in r.getMessage()]
    assert "; active tasks []; standby tasks [" in line
