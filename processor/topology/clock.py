"""Time as one task sees it: stream time, the wall clock, and the operators waiting for time.

**Stream time** is the largest timestamp any record of the task has had (`observe`, once per
record, before its operators run), so every operator of a task agrees on it. It never moves back.
The runtime checkpoints it with the task's committed offsets (`encode`/`decode`), so it survives
restarts and failover.

**Idle advance.** With `idle_advance_ms` set, a task that had no input for that long of wall-clock
time (`tick`, once per pass of the worker's loop) has its stream time advanced by the wall-clock
time since its last record, and it keeps advancing while the task stays idle: windows of a quiet
partition close. A task that has not seen a record since it started here counts its idleness
from its start.

**Waiting for time.** An operator that acts when stream time passes a point (closing windows,
firing timers) registers as a `TimeListener`; the task calls `fire()` when `stream_time >=
due_at`, a single comparison per record. One that acts at a point of wall-clock time (wall-clock
timers, ticks) registers as a `WallListener`; the task calls `fire_wall(now)` once per pass of the
worker's loop when `now >= wall_due_at`. `wall_clock()` reads the wall clock (the test driver's
own, in the driver).

>>> clock = StreamClock(idle_advance_ms=1_000, wall_ms=0)
>>> clock.observe(5_000); clock.tick(wall_ms=100)
False
>>> clock.tick(wall_ms=900), clock.stream_time
(False, 5000)
>>> clock.tick(wall_ms=1_600), clock.stream_time
(True, 6500)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol

NO_TIME = -1
"""Stream time before the task's first record."""

NEVER = sys.maxsize
"""A due time that never comes."""

_METADATA_PREFIX = "processor:st="

STREAM = b"s"
WALL = b"w"
CLOCKS = {"stream": STREAM, "wall": WALL}
"""The two clocks a timer or a TTL runs on, as the byte stores keep them with their times."""


class TimeListener(Protocol):
    """An operator that acts when stream time reaches a point."""

    def on_stream_time(self, stream_time: int) -> int:
        """Do what is due at `stream_time`; return the stream time of the next thing due
        (`NEVER` when nothing is)."""
        ...


class WallListener(Protocol):
    """An operator that acts when the wall clock reaches a point."""

    def on_wall_time(self, wall_ms: int) -> int:
        """Do what is due at `wall_ms`; return the wall-clock time of the next thing due
        (`NEVER` when nothing is)."""
        ...


def system_wall_clock() -> int:
    return int(time.time() * 1000)


class StreamClock:
    __slots__ = (
        "_listener_due",
        "_listeners",
        "_observed",
        "_time_at_last_input",
        "_wall_at_last_input",
        "_wall_due",
        "_wall_listeners",
        "committed_time",
        "due_at",
        "idle_advance_ms",
        "stream_time",
        "wall_clock",
        "wall_due_at",
    )

    def __init__(
        self,
        *,
        idle_advance_ms: int = 0,
        wall_ms: int = 0,
        wall_clock: Callable[[], int] = system_wall_clock,
    ) -> None:
        self.stream_time = NO_TIME
        self.wall_clock = wall_clock
        self.wall_due_at = NEVER
        self._wall_listeners: list[WallListener] = []
        self._wall_due: list[int] = []
        self.idle_advance_ms = idle_advance_ms
        # The stream time last checkpointed (`take_checkpoint`).
        self.committed_time = NO_TIME
        self.due_at = NEVER
        self._listeners: list[TimeListener] = []
        self._listener_due: list[int] = []
        self._observed = False
        self._wall_at_last_input = wall_ms
        self._time_at_last_input = NO_TIME

    # -- per record ------------------------------------------------------------------------

    def observe(self, timestamp: int) -> None:
        """A record with `timestamp` entered the task."""
        self._observed = True
        if timestamp > self.stream_time:
            self.stream_time = timestamp

    # -- per pass of the loop --------------------------------------------------------------

    def tick(self, wall_ms: int) -> bool:
        """The wall clock reads `wall_ms`; True when idle advance moved stream time."""
        if self._observed:
            self._observed = False
            self._wall_at_last_input = wall_ms
            self._time_at_last_input = self.stream_time
            return False
        if self.idle_advance_ms <= 0 or self._time_at_last_input == NO_TIME:
            if self._time_at_last_input == NO_TIME and self.stream_time != NO_TIME:
                # Resumed from a checkpoint: idleness counts from the task's start here.
                self._time_at_last_input = self.stream_time
            return False
        idle_ms = wall_ms - self._wall_at_last_input
        if idle_ms < self.idle_advance_ms:
            return False
        advanced = self._time_at_last_input + idle_ms
        if advanced <= self.stream_time:
            return False
        self.stream_time = advanced
        return True

    # -- listeners -------------------------------------------------------------------------

    def register(self, listener: TimeListener, due_at: int = NEVER) -> None:
        self._listeners.append(listener)
        self._listener_due.append(due_at)
        self.due_at = min(self.due_at, due_at)

    def expect(self, listener: TimeListener, due_at: int) -> None:
        """`listener` has something due at `due_at` (earlier than it said before, maybe)."""
        if due_at < self.due_at:
            self.due_at = due_at
        index = self._listeners.index(listener)
        if due_at < self._listener_due[index]:
            self._listener_due[index] = due_at

    def fire(self) -> None:
        """Tell the listeners with something due that stream time reached it."""
        now = self.stream_time
        due = self._listener_due
        for index, listener in enumerate(self._listeners):
            if due[index] <= now:
                # Not due again before it says so; set first, so that `expect` calls made while
                # it runs are not overwritten.
                due[index] = NEVER
                due[index] = min(due[index], listener.on_stream_time(now))
        self.due_at = min(due, default=NEVER)

    def register_wall(self, listener: WallListener, due_at: int = NEVER) -> None:
        self._wall_listeners.append(listener)
        self._wall_due.append(due_at)
        self.wall_due_at = min(self.wall_due_at, due_at)

    def expect_wall(self, listener: WallListener, due_at: int) -> None:
        """`listener` has something due at wall-clock time `due_at`."""
        if due_at < self.wall_due_at:
            self.wall_due_at = due_at
        index = self._wall_listeners.index(listener)
        if due_at < self._wall_due[index]:
            self._wall_due[index] = due_at

    def fire_wall(self, wall_ms: int) -> None:
        """Tell the wall listeners with something due that the wall clock reads `wall_ms`."""
        due = self._wall_due
        for index, listener in enumerate(self._wall_listeners):
            if due[index] <= wall_ms:
                due[index] = NEVER
                due[index] = min(due[index], listener.on_wall_time(wall_ms))
        self.wall_due_at = min(due, default=NEVER)

    def wall_due(self, wall_ms: int) -> bool:
        return wall_ms >= self.wall_due_at

    # -- checkpoint ------------------------------------------------------------------------

    def resume(self, stream_time: int) -> None:
        """Start from the stream time checkpointed by the task's last owner."""
        if stream_time > self.stream_time:
            self.stream_time = stream_time
        self.committed_time = max(self.committed_time, stream_time)

    @property
    def changed(self) -> bool:
        """Stream time moved since the last checkpoint."""
        return self.stream_time != self.committed_time

    def encode(self) -> str:
        """The checkpoint: what the committed offsets carry as metadata."""
        return f"{_METADATA_PREFIX}{self.stream_time}"

    def checkpointed(self) -> None:
        self.committed_time = self.stream_time


def decode(metadata: str | None) -> int:
    """The stream time a committed offset's metadata carries (`NO_TIME` when none)."""
    if not metadata or not metadata.startswith(_METADATA_PREFIX):
        return NO_TIME
    try:
        return int(metadata[len(_METADATA_PREFIX) :])
    except ValueError:
        return NO_TIME
