"""At-least-once: each commit checks that the task's changelogs hold nothing this worker did not
write since it last looked, and writes its own values again over anything that is there.

What can be there: records of a worker that stood still past its session timeout while its
producer held them, sent when it woke, after this worker had taken the task over
(`processor.state.changelog_tail` says why the stall check cannot stop them). Left alone, the
next restore of the task would end on those stale values.

Tasks with changes in a commit are checked at every commit (the checkpoint reads their end
offsets anyway); every task at most once per `FULL_CHECK_INTERVAL_S`, so that writes after the
last change of an idle task are caught too, and at every commit that is not the interval's (the
one before tasks are handed over, closed or the worker stops). Before writing over anything,
the group is asked whether this worker is still the tasks' owner: a replaced worker that finds
its successor's records must drop its tasks, not write its own again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from processor.errors import BrokerError
from processor.ids import Partition
from processor.kafka.consumer import GroupConsumer
from processor.runtime.task import StreamTask

__all__ = ["FULL_CHECK_INTERVAL_S", "ChangelogCheck"]

log = logging.getLogger("processor.commit")

FULL_CHECK_INTERVAL_S = 1.0
# Repairs in one commit before the rest waits for the next (a repair is written, then checked).
_ROUNDS = 3
_END_OFFSETS_TIMEOUT_S = 5.0

# (changelog partition, first offset, end offset) -> the keys of the records in that range.
KeyReader = Callable[[Partition, int, int], set[bytes]]


class ChangelogCheck:
    def __init__(self, consumer: GroupConsumer) -> None:
        self._consumer = consumer
        self.read_keys: KeyReader | None = None
        """Reads a changelog range's keys; without it nothing is checked."""
        self.confirm_owner: Callable[[], bool | None] | None = None
        """Asks the group whether this worker still owns its tasks (None: could not ask). When
        not, the callee has dropped the tasks."""
        self._next_full_at = 0.0
        self.repaired_keys = 0

    def verify(
        self,
        tasks: list[StreamTask],
        flush: Callable[[list[StreamTask]], None],
        *,
        every_task: bool = False,
    ) -> dict[Partition, int] | None:
        """Check (and repair) the changelogs of `tasks` whose records the broker has all
        acknowledged; returns the end offsets last read (None: nothing was read). Raises
        `BrokerError` when a repair could not be made: the commit then fails and is retried,
        and the range stays to be repaired. `every_task`: idle ones too, whenever it was last
        done (before tasks are handed over)."""
        now = time.monotonic()
        full = every_task or now >= self._next_full_at
        checked = [
            task
            for task in tasks
            if (stores := task.stores) is not None
            and stores.changelogs
            and (full or stores.needs_checkpoint)
        ]
        if not checked or self.read_keys is None:
            return None
        if full:
            self._next_full_at = now + FULL_CHECK_INTERVAL_S
        ends: dict[Partition, int] | None = None
        for _ in range(_ROUNDS):
            ends = self._end_offsets(checked)
            if ends is None or not self._repair(checked, ends):
                return ends
            flush(checked)
        return ends

    def _end_offsets(self, tasks: list[StreamTask]) -> dict[Partition, int] | None:
        changelogs = [
            (topic, task.id.partition)
            for task in tasks
            if task.stores is not None
            for topic in task.stores.changelogs.values()
        ]
        try:
            return self._consumer.end_offsets(changelogs, _END_OFFSETS_TIMEOUT_S)
        except BrokerError as e:
            log.info("changelogs not checked for records of other workers: %s", e)
            return None

    def _repair(self, tasks: list[StreamTask], ends: dict[Partition, int]) -> bool:
        """Write this worker's values again over other workers' records; whether any were."""
        assert self.read_keys is not None
        repaired = False
        for task in tasks:
            stores = task.stores
            assert stores is not None
            partition = task.id.partition
            task_ends = {
                topic: ends[(topic, partition)]
                for topic in stores.changelogs.values()
                if (topic, partition) in ends
            }
            foreign = stores.tail.foreign(task_ends)
            if foreign:
                self._confirm_owner(task, foreign)
            for topic, (first, end) in foreign.items():
                keys = self.read_keys((topic, partition), first, end)
                count = stores.reassert(topic, keys)
                self.repaired_keys += count
                log.warning(
                    "task %s: changelog %s[%d] offsets %d to %d hold records this worker did "
                    "not write (a worker that was replaced and woke up sent them); writing "
                    "this worker's values of their %d keys again",
                    task.id,
                    topic,
                    partition,
                    first,
                    end,
                    count,
                )
            stores.tail.settle(task_ends)
            repaired = repaired or bool(foreign)
        return repaired

    def _confirm_owner(self, task: StreamTask, foreign: dict[str, tuple[int, int]]) -> None:
        owner = self.confirm_owner() if self.confirm_owner is not None else True
        if owner:
            return
        partition = task.id.partition
        ranges = ", ".join(f"{t}[{partition}] from {first}" for t, (first, _) in foreign.items())
        if owner is None:
            raise BrokerError(
                f"changelogs {ranges} hold records of another worker, and the group could not "
                "be asked whether this worker still owns the task; trying again"
            )
        raise BrokerError(
            f"changelogs {ranges} hold records of another worker, which owns the task now; "
            "this worker's uncommitted work is dropped"
        )
