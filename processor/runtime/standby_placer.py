"""Standby placement off the rebalance's path: `assign_with_standbys` on a thread of its own.

Who owns which task (`assign`) is cheap and is all a rebalance has to wait for: 18 ms at 100
members x 1,000 tasks. Where the standbys go is not: the guarantee (after any r failures, every
task's new owner already holds it) replays every set of up to r failed members, about n replays
for r = 1 and n^2 / 2 for r = 2 (7 s at 100 x 1,000 with r = 2; with load-aware weights every
set is walked in full). Computed on the main loop, that stopped every task of every worker at
each membership change; standbys restore for seconds after they are placed anyway, so placing
them a little later costs the guarantee nothing it had.

`StandbyPlacer.ask()` starts the placement for a member set and waits a moment for it (small
groups have it at once, as before); `take()` hands it over once it is there, once. One
placement runs at a time: a request that comes while another runs waits for it, and only the
latest request is started (a placement for members who have changed since is thrown away).
Exceptions from the placement are raised by `take()`/`ask()`, as they would have been inline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass

from processor.background_call import in_background
from processor.ids import TaskId
from processor.runtime.assignment import Assignment

__all__ = ["StandbyPlacer"]

Weights = Mapping[TaskId, int] | None
Place = Callable[[Sequence[str], Weights], Assignment]
Start = Callable[[Callable[[], Assignment], str], "Future[Assignment]"]


def let_others_run() -> None:
    """Called between the placement's steps: hands Python's lock to the main loop when it waits
    for it. Without it the two threads took turns every 5 ms (`sys.getswitchinterval()`) and the
    main loop kept about 40% of its speed while a long placement ran (`bench/standby_placement.py`
    measures it). A tenth of a millisecond is long enough for a waiting thread to take the lock,
    and short enough to add under a second to 4,950 failure sets."""
    time.sleep(0.0001)


WAIT_S = 0.05
"""How long `ask()` waits for the placement before the rebalance goes on without it: placing
3 members' standbys takes about a millisecond, so small groups see no difference."""


@dataclass(frozen=True, eq=True)
class _Request:
    members: tuple[str, ...]
    weights: Weights


@dataclass(frozen=True)
class _Running:
    request: _Request
    future: Future[Assignment]
    started: float


class StandbyPlacer:
    """Places standbys for the member set last asked for, on a thread; see the module."""

    def __init__(
        self,
        place: Place,
        *,
        name: str = "processor-standby-placement",
        wait_s: float = WAIT_S,
        start: Start = in_background,
    ) -> None:
        self._place, self._name, self._wait_s, self._start = place, name, wait_s, start
        self._wanted: _Request | None = None
        self._running: _Running | None = None
        self._last: tuple[_Request, Assignment] | None = None
        self.seconds = 0.0
        """How long the last placement handed over took, from its start."""

    @property
    def pending(self) -> bool:
        """Whether the placement last asked for has not been handed over yet."""
        return self._wanted is not None

    def ask(self, members: Sequence[str], weights: Weights) -> Assignment | None:
        """Place standbys for `members` (assigning with `weights`): the assignment with its
        standbys when it is ready within `wait_s`, else None (`take()` hands it over later)."""
        request = _Request(tuple(sorted(members)), dict(weights) if weights else None)
        self._wanted = request
        if self._last is not None and self._last[0] == request:
            self._wanted = None  # the same members again (a rejoin): placed already
            return self._last[1]
        if self._running is None:
            self._begin(request)
        running = self._running
        assert running is not None
        if running.request == request:
            wait([running.future], timeout=self._wait_s)  # raises nothing: take() does
        return self.take()

    def take(self) -> Assignment | None:
        """The placement last asked for, the first time this is called after it is ready; None
        otherwise."""
        running = self._running
        if running is None or not running.future.done():
            return None
        self._running = None
        wanted = self._wanted
        if running.request != wanted:
            if wanted is not None:
                self._begin(wanted)  # the members changed meanwhile: this one is of no use
            return None
        self._wanted = None
        self.seconds = time.monotonic() - running.started
        placed = running.future.result()
        self._last = (running.request, placed)
        return placed

    def forget(self) -> None:
        """Nothing is wanted any more (this worker owns nothing): a running placement is let
        finish and thrown away."""
        self._wanted = None

    def _begin(self, request: _Request) -> None:
        def place() -> Assignment:
            return self._place(list(request.members), request.weights)

        self._running = _Running(request, self._start(place, self._name), time.monotonic())
