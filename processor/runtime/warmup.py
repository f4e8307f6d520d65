"""Scale-out without cold restores: which tasks to warm up before a worker joins, and when it
may join. Pure functions over assignments (ARCHITECTURE.md: "a joining worker warms up before
it joins").

A joining worker computes the assignment the group will have once it is in (`future`), restores
what it will hold there as standbys, and announces itself; each existing worker pre-warms what
it will gain. The joiner joins when the new owner of every stateful task that moves holds a
copy within `acceptable_recovery_lag` records of the changelog's end, or when the warm-up time
is up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from processor.ids import TaskId
from processor.runtime.assignment import Assignment

__all__ = ["held_by", "moving_tasks", "not_caught_up", "to_prewarm"]


def held_by(assignment: Assignment, instance: str) -> frozenset[TaskId]:
    """The tasks `instance` holds in `assignment`, active or standby."""
    return assignment.tasks_of(instance) | assignment.standby.get(instance, frozenset())


def to_prewarm(instance: str, current: Assignment, future: Assignment) -> frozenset[TaskId]:
    """What `instance` will hold in `future` and does not hold now."""
    return held_by(future, instance) - held_by(current, instance)


def moving_tasks(
    current: Assignment, future: Assignment, is_stateful: Callable[[TaskId], bool]
) -> dict[TaskId, str]:
    """Stateful tasks whose active owner changes: task -> its future owner."""
    return {
        task: owner
        for task, owner in future.active.items()
        if current.active.get(task) != owner and is_stateful(task)
    }


def not_caught_up(
    moving: Mapping[TaskId, str],
    lag: Callable[[str, TaskId], int | None],
    acceptable_recovery_lag: int,
) -> list[TaskId]:
    """The moving tasks whose future owner is not yet within `acceptable_recovery_lag` of the
    changelog end; `lag(instance, task)` is None while that owner has not reported one."""
    waiting: list[TaskId] = []
    for task, owner in sorted(moving.items()):
        behind = lag(owner, task)
        if behind is None or behind > acceptable_recovery_lag:
            waiting.append(task)
    return waiting
