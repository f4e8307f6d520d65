"""Which standbys this worker keeps, and when they change.

Three kinds, all restored and followed the same way (`TaskManager.set_standbys`):

- *placed*: this worker's standbys in the running assignment (`assign_with_standbys`). They are
  placed on a thread (`standby_placer`); until the placement for the running members is there,
  the last placement's (and what was pre-warmed for joiners) are kept: dropping them would
  throw away warm copies the new placement most likely keeps;
- *pre-warmed*: what this worker will hold once the announced joiners join and does not hold
  now (`warmup.to_prewarm`, over the future assignment, also placed on a thread);
- the standbys of tasks this worker gains but has not started yet (another worker still claims
  them): kept until they are promoted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence, Set

from processor.ids import TaskId, tasks_field, tasks_text
from processor.runtime import warmup
from processor.runtime.assignment import Assignment
from processor.runtime.standby_placer import Place, StandbyPlacer, Weights
from processor.runtime.status_publisher import StatusPublisher
from processor.runtime.task_manager import TaskManager

__all__ = ["StandbyTargets"]

log = logging.getLogger("processor.worker")


class StandbyTargets:
    def __init__(
        self,
        instance_id: str,
        place: Place,
        weights_of: Callable[[Sequence[str]], Weights],
        status: StatusPublisher,
        tasks: TaskManager,
        *,
        replicas: int,
    ) -> None:
        self._instance_id = instance_id
        self._replicas = replicas
        self._tasks = tasks
        self._weights_of = weights_of
        self._status = status
        self._current = StandbyPlacer(place)
        self._future = StandbyPlacer(place, name="processor-prewarm-placement")
        self.placed: frozenset[TaskId] = frozenset()
        self.prewarm: frozenset[TaskId] = frozenset()
        self.joiners: list[str] = []

    @property
    def placing(self) -> bool:
        """Whether the running assignment's standbys are still being placed."""
        return self._current.pending

    def place(self, assignment: Assignment, weights: Weights) -> Assignment:
        """Start placing standbys for `assignment` (owners only, computed with `weights`); the
        assignment with its standbys when they are placed at once, else `assignment` itself
        (`take_placed()` hands them over later). Pre-warming starts anew; what was pre-warmed
        is kept until the placement is there (the joiners it was for have most likely just
        joined, and it is their standbys)."""
        self._future.forget()
        self.joiners = []
        if not self._replicas:
            self.prewarm = frozenset()
            return assignment  # nothing to place: `assign_with_standbys` would be `assign`
        placed = self._current.ask(sorted(assignment.instances), weights)
        if placed is None:
            return assignment
        return self._placed(placed)

    def take_placed(
        self, members: Sequence[str], active: Set[TaskId], gaining: Set[TaskId]
    ) -> Assignment | None:
        """The running assignment with its standbys, once, when they have been placed since
        (and kept: `keep()`). `active`: the tasks this worker runs or is starting now (the
        assignment's, unless it has lost them since, which the log line must not hide)."""
        placed = self._current.take()
        if placed is None:
            return None
        log.info("worker %s: standbys placed in %.2fs", self._instance_id, self._current.seconds)
        self._placed(placed)
        self.keep(members, sorted(active), gaining)
        return placed

    def keep(self, members: Sequence[str], mine: Sequence[TaskId], gaining: Set[TaskId]) -> None:
        """Keep the standbys wanted now (they open in the background) and say what this worker
        runs: the line tests and operators read an assignment from."""
        wanted = self.wanted(gaining)
        self._tasks.set_standbys(wanted)
        standby = sorted(t for t in wanted - set(mine) if self._tasks.is_stateful(t))
        log.info(
            "worker %s: members [%s]; active tasks [%s]; standby tasks [%s]; gaining [%s]%s",
            self._instance_id,
            ", ".join(members),
            tasks_text(mine),
            tasks_text(standby),
            tasks_text(sorted(gaining)),
            "; placing standbys (keeping the last ones meanwhile)" if self.placing else "",
            extra={**tasks_field(mine), "standby_tasks": tasks_field(standby)["tasks"]},
        )

    def drop(self) -> None:
        """This worker keeps no standby (it owns nothing, or its instance id is in use twice)."""
        self._current.forget()
        self._forget_joiners()
        self.placed = frozenset()

    def wanted(self, gaining: Set[TaskId]) -> set[TaskId]:
        """Placed standbys, tasks pre-warmed for joiners, and the gained tasks not started yet
        that are standbys here now."""
        return {*self.placed, *self.prewarm, *(gaining & self._tasks.standbys)}

    def follow_joiners(
        self, members: Sequence[str], assignment: Assignment, gaining: Set[TaskId]
    ) -> bool:
        """Pre-warm what this worker will hold once the announced joiners join (placed on a
        thread, like the running assignment's standbys). True when the joiners changed."""
        changed, prewarm_changed = self._follow_joiners(members, assignment)
        if prewarm_changed:
            self._tasks.set_standbys(self.wanted(gaining))
        return changed

    def _follow_joiners(self, members: Sequence[str], assignment: Assignment) -> tuple[bool, bool]:
        joiners = self._status.joiners(list(members))
        changed = joiners != self.joiners
        if changed:
            self.joiners = joiners
            if not joiners:
                self._future.forget()
                had = bool(self.prewarm)
                self.prewarm = frozenset()
                return True, had
            future_members = [*members, *joiners]
            future = self._future.ask(future_members, self._weights_of(future_members))
        else:
            future = self._future.take() if joiners else None
        if future is None:
            return changed, False
        self.prewarm = warmup.to_prewarm(self._instance_id, assignment, future)
        log.info(
            "worker %s: instances [%s] are warming up to join; pre-warming tasks [%s]",
            self._instance_id,
            ", ".join(self.joiners),
            tasks_text(self.prewarm),
            extra=tasks_field(self.prewarm),
        )
        return changed, True

    def _placed(self, placed: Assignment) -> Assignment:
        self.placed = placed.standby.get(self._instance_id, frozenset())
        self.prewarm = frozenset()
        return placed

    def _forget_joiners(self) -> None:
        self._future.forget()
        self.joiners = []
        self.prewarm = frozenset()
