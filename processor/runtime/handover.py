"""Handing tasks over between workers without stopping the ones that stay.

A membership change (or a new load plan) gives some tasks a new owner; every other task keeps
its owner and goes on processing through it (`processor.kafka.consumer`: the group's rebalance
never touches what the worker reads). A task that moves must never be processed by two workers
at once, so its new owner takes it only once its old owner has let it go:

1. the old owner, on the new assignment, commits and closes the tasks it no longer owns, and
   only then publishes its status without them;
2. the new owner publishes its status *claiming* the tasks it gains before it starts any of them,
   waits until the broker has that record, reads the metadata topic up to the end offset it
   then has, and starts a gained task only when no other worker of the group claims it there
   (a worker claims the tasks it runs, and those it is about to take).

Why two workers never run one task: the metadata topic has one partition, so any two claims are
ordered. Of two workers claiming task t, the later one reads the earlier one's claim (it reads
up to past its own) and waits; a claim is only withdrawn once the task is closed. A worker that
leaves the group without letting go (killed, or stalled past its session timeout) is no longer
asked: its tasks go to their new owners at once, fenced as before (the group generation for
offsets, `init_transactions` for exactly-once transactions).

Waiting costs only the moved tasks their time: one status round trip after the slowest old
owner has taken the new assignment. The wait for the broker to take the claim (and the read of
the topic's end offset after it) runs in the background (`StatusPublisher.claim`), so the tasks
the worker keeps go on meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future

from processor.config import WorkerConfig
from processor.errors import BrokerError
from processor.ids import TaskId, tasks_field, tasks_text
from processor.kafka.producer import fence_transactional_id
from processor.runtime.assignment import Assignment
from processor.runtime.clients import fencing_settings, transactional_id
from processor.runtime.membership import Membership
from processor.runtime.status_publisher import StatusPublisher

__all__ = [
    "HANDOVER_PROTOCOL",
    "Handover",
    "claimed_elsewhere",
    "fence_departed",
    "workers_of",
]

HANDOVER_PROTOCOL = 2
"""The first assignment protocol (`processor.runtime.identity`) whose workers hand tasks over
this way."""

log = logging.getLogger("processor.worker")

# A task still claimed by another worker after this long is worth a line in the log.
_REPORT_AFTER_S = 5.0


def claimed_elsewhere(
    gaining: Iterable[TaskId], claims: Mapping[str, frozenset[str]]
) -> dict[TaskId, str]:
    """The tasks of `gaining` that another worker claims (`claims`: instance -> task ids it
    claims), each with the first such instance in id order."""
    blocked: dict[TaskId, str] = {}
    for task in gaining:
        name = str(task)
        for instance in sorted(claims):
            if name in claims[instance]:
                blocked[task] = instance
                break
    return blocked


class Handover:
    """The tasks this worker gains in the current assignment and has not started yet."""

    def __init__(self, instance_id: str, status: StatusPublisher) -> None:
        self._instance_id = instance_id
        self._status = status
        self.gaining: set[TaskId] = set()
        self._members: list[str] = []
        self._others: list[str] = []
        self._read_to: dict[int, int] | None = None
        self._claim: Future[dict[int, int] | None] | None = None
        self._since = 0.0
        self._reported = False

    def begin(self, gaining: Iterable[TaskId], members: list[str], workers: Iterable[str]) -> None:
        """Claim `gaining` (tasks of the new assignment not running here) from `workers` (every
        worker in the group, whether it takes part or not)."""
        self.gaining = set(gaining)
        self._members = members
        self._others = sorted(set(workers) - {self._instance_id})
        self._read_to = None
        self._claim = None
        self._since = time.monotonic()
        self._reported = False
        if self.gaining:
            self._claim = self._status.claim(members, self.gaining)

    def cancel(self) -> None:
        """The assignment these tasks came with is over (a rebalance, a lost membership)."""
        self.gaining = set()
        self._read_to = None
        self._claim = None  # its answer, if it comes, is for claims nobody makes any more

    def take(self) -> list[TaskId]:
        """The gained tasks no other worker claims any more: start them now."""
        if not self.gaining:
            return []
        if self._read_to is None:
            if self._claim is None:
                self._claim = self._status.claim(self._members, self.gaining)
            if not self._claim.done():
                return []
            self._read_to, self._claim = self._claim.result(), None
            if self._read_to is None:  # not published: claim again
                self._claim = self._status.claim(self._members, self.gaining)
                return []
        if not self._status.has_read(self._read_to):
            return []
        blocked = claimed_elsewhere(
            self.gaining, {w: self._status.claims_of(w) for w in self._others}
        )
        free = sorted(self.gaining - blocked.keys())
        self.gaining -= set(free)
        if blocked and not self._reported and time.monotonic() - self._since > _REPORT_AFTER_S:
            self._reported = True
            waits = sorted(blocked.items())
            log.info(
                "worker %s: waiting for other workers to let go of tasks [%s] (%s)",
                self._instance_id,
                tasks_text(blocked),
                ", ".join(f"{task} by {instance}" for task, instance in waits),
                extra=tasks_field(blocked),
            )
        return free


def fence_departed(
    config: WorkerConfig,
    instance_id: str,
    previous: Assignment,
    members: list[str],
    gaining: list[TaskId],
) -> None:
    """Abort the open transactions of instances that left while owning tasks this worker
    takes over (exactly-once). Otherwise the gained tasks' changelogs (and their outputs, for
    read_committed readers) stay blocked until the broker times those transactions out."""
    for instance in sorted(previous.instances - set(members)):
        if not any(previous.active.get(t) == instance for t in gaining):
            continue
        started = time.monotonic()
        fenced_id = transactional_id(config, instance)
        try:
            fence_transactional_id(fencing_settings(config, instance_id), fenced_id, timeout=10.0)
        except BrokerError as e:
            log.warning("worker %s: %s; its transaction times out instead", instance_id, e)
            continue
        log.info(
            "worker %s: fenced departed instance %s (transactional id %s) in %.2fs",
            instance_id,
            instance,
            fenced_id,
            time.monotonic() - started,
        )


def workers_of(membership: Membership) -> list[str]:
    """Every worker in the group: those taking part, and those outvoted that let go of their
    tasks the way `processor.runtime.handover` says (an older protocol closed every task at
    every revoke, and has none to let go of)."""
    outvoted = [
        i for i, identity in membership.outvoted.items() if identity.protocol >= HANDOVER_PROTOCOL
    ]
    return sorted({*membership.instances, *outvoted})
