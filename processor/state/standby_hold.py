"""Active restores first: while a task that is to process restores, the restorer does not read
standbys' changelogs.

One reader serves both (`processor.state.restore_thread`), and it hands out what it fetched in
the order it came. A standby placed by a rebalance starts hundreds of thousands of records behind,
so the tail a promoted standby's new owner must read before processing (a few hundred records)
waited behind them: 2.1-2.2 s in the scale-out benchmark for 261 and 519 records, while the
task produced nothing. So, as in Kafka Streams (standbys are updated only while no active task
restores), the standbys' partitions are paused while an active restore reads and resumed once
none does. A standby falls behind meanwhile and catches up after.

Pausing keeps a partition's position; records fetched but not handed out are fetched again
after the resume, from that position. librdkafka keeps a partition paused across assignments,
so a held partition is resumed before it is unassigned (a standby promoted, or removed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from processor.ids import Partition

__all__ = ["Pausable", "Reading", "StandbyHold"]


class Pausable(Protocol):
    def pause(self, partitions: Iterable[Partition]) -> None: ...
    def resume(self, partitions: Iterable[Partition]) -> None: ...


class Reading(Protocol):
    """What a changelog partition's reading says about its task."""

    @property
    def standby(self) -> bool: ...


class Position(Protocol):
    @property
    def done(self) -> bool: ...


class StandbyHold:
    """Pauses and resumes standbys' partitions of `reader` (see the module docstring)."""

    def __init__(self, reader: Pausable) -> None:
        self._reader = reader
        self._held: set[Partition] = set()

    @property
    def held(self) -> frozenset[Partition]:
        return frozenset(self._held)

    def update(self, assigned: Mapping[Partition, tuple[Reading, Position]]) -> None:
        """Hold every standby partition of `assigned` (partition -> (its task, its changelog's
        position)) while one of an active task is still to be read to its end; release them
        when none is."""
        restoring = any(not task.standby and not at.done for task, at in assigned.values())
        standbys = {p for p, (task, _) in assigned.items() if task.standby}
        wanted = standbys if restoring else set()
        self._held &= standbys  # those no longer assigned were released before they went
        if hold := sorted(wanted - self._held):
            self._reader.pause(hold)
        if release := sorted(self._held - wanted):
            self._reader.resume(release)
        self._held = wanted

    def release(self, partitions: Iterable[Partition]) -> None:
        """Resume those of `partitions` held: they are about to be unassigned."""
        if release := sorted(self._held.intersection(partitions)):
            self._reader.resume(release)
            self._held.difference_update(release)
