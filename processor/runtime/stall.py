"""Noticing that this worker stood still long enough to have been replaced.

A worker that stalls (SIGSTOP, a long GC pause, a slow user function) past its session timeout
or `max.poll.interval.ms` is removed from the group, and its tasks go to another worker, which
restores them and writes newer values to their changelogs. When the stalled worker wakes, it
may not have heard yet that it is out: under at-least-once nothing on the broker stops it from
writing its stale, uncommitted store updates over its successor's (under exactly-once its
transactional id is fenced). A later restore would then lose what the successor counted.

So the main loop marks the time at each step (`tick`). A gap longer than a third of the session
timeout (a heartbeat may have been due just before the stall began, so a shorter stall than the
timeout can already expire the session) makes the next commit ask the group coordinator first
whether this member is still in the group; if not, the commit is dropped and the tasks with it.
A stall that falls between that question and the changelog writes themselves (a few
milliseconds per commit) is not caught here: the task's new owner notices the records it did
not write and writes over them (`processor.runtime.changelog_check`).
"""

from __future__ import annotations

import logging
import time

from processor.errors import BrokerError
from processor.kafka.admin import Admin

log = logging.getLogger("processor.worker")

__all__ = ["StallWatch"]


class StallWatch:
    def __init__(self, session_timeout_s: float) -> None:
        self.threshold_s = session_timeout_s / 3
        self._last = time.monotonic()
        self.stalled_s = 0.0
        """The longest gap between ticks since `clear()`; 0 when none was over the threshold."""

    def tick(self) -> None:
        now = time.monotonic()
        gap = now - self._last
        self._last = now
        if gap > self.threshold_s and gap > self.stalled_s:
            self.stalled_s = gap

    @property
    def suspect(self) -> bool:
        """Whether this worker may have been replaced since the last `clear()`."""
        return self.stalled_s > 0.0

    def clear(self) -> None:
        self.stalled_s = 0.0


def group_has(
    admin: Admin, application_id: str, member_id: str | None, stalled_s: float
) -> bool | None:
    """After a stall of `stalled_s`: whether the group still has `member_id` (None: the group
    could not be asked; the caller holds its commit and asks again)."""
    try:
        snapshot = admin.describe_group(application_id)
    except BrokerError as e:
        log.warning(
            "worker of %s: stood still for %.1fs and cannot ask the group whether it is still a "
            "member (%s); holding its commit",
            application_id,
            stalled_s,
            e,
        )
        return None
    return any(m.member_id == member_id for m in snapshot.members)


def report_replaced(instance_id: str, stalled_s: float) -> None:
    log.warning(
        "worker %s: stood still for %.1fs and is no longer a member of the group (its tasks "
        "have moved); dropping its uncommitted work instead of writing stale state",
        instance_id,
        stalled_s,
    )
