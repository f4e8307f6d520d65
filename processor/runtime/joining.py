"""A worker joining a running application warms up first (ARCHITECTURE.md): it restores, as
standbys, the tasks it will own once it is in, announces itself on the metadata topic (the other
workers pre-warm what they will gain and report how far behind their copies are), and joins once
every task that will move is within `acceptable_recovery_lag` of its changelogs on its new
owner, or after `max_warmup_time_ms`. The worker drives it one `step()` at a time.
"""

from __future__ import annotations

import logging
import time

from processor.config import WorkerConfig
from processor.errors import BrokerError
from processor.kafka.admin import Admin
from processor.runtime import warmup
from processor.runtime.membership import membership_of
from processor.runtime.rebalance import Rebalancer
from processor.runtime.status_publisher import StatusPublisher
from processor.runtime.task_manager import TaskManager
from processor.runtime.task_plan import TaskPlan
from processor.status.record import InstancePhase

__all__ = ["WarmUp"]

log = logging.getLogger("processor.worker")

POLL_INTERVAL_S = 0.5
_LOG_INTERVAL_S = 5.0


class WarmUp:
    def __init__(
        self,
        config: WorkerConfig,
        plan: TaskPlan,
        admin: Admin,
        tasks: TaskManager,
        status: StatusPublisher,
        rebalancer: Rebalancer,
    ) -> None:
        self._config = config
        self._plan = plan
        self._instance_id = plan.identity.instance_id
        self._admin = admin
        self._tasks = tasks
        self._status = status
        self._rebalancer = rebalancer
        self._started = time.monotonic()
        self._deadline = self._started + config.max_warmup_time_ms / 1000
        self._next_log = self._started

    def step(self) -> bool:
        """One look at the group and at the copies; True when it is time to join."""
        cfg = self._config
        try:
            snapshot = self._admin.describe_group(cfg.application_id, isolated=False)
        except BrokerError as e:
            log.warning("worker %s: %s; joining without warm-up", self._instance_id, e)
            return True
        membership = membership_of(snapshot.members)
        if self._instance_id in membership.instances or self._instance_id in membership.outvoted:
            return True  # a static member restarted within the session timeout keeps its tasks
        members = membership.instances
        if not members or not membership.takes_part(self._plan.identity):
            return True  # nobody computes what this worker would: nothing to warm up for
        current = self._rebalancer.owners(members)
        future = self._rebalancer.owners([*members, self._instance_id])
        moving = warmup.moving_tasks(current, future, self._tasks.is_stateful)
        if not moving:
            return True
        # Only what it will own: its standbys restore after it has joined, without holding up
        # the tasks that wait for it.
        self._tasks.set_standbys({t for t, owner in moving.items() if owner == self._instance_id})
        self._status.follow()
        self._status.publish(InstancePhase.WARMING_UP, members)
        waiting = warmup.not_caught_up(moving, self._rebalancer.lag_of, cfg.acceptable_recovery_lag)
        now = time.monotonic()
        if not waiting:
            log.info(
                "worker %s: warmed up in %.1fs: the %d tasks moving in the next rebalance are "
                "within %d records of their changelogs on their new owners; joining",
                self._instance_id,
                now - self._started,
                len(moving),
                cfg.acceptable_recovery_lag,
            )
            return True
        if now >= self._deadline:
            log.warning(
                "worker %s: max_warmup_time_ms (%d) is up; joining although tasks [%s] are not "
                "yet within %d records on their new owners (they restore the rest)",
                self._instance_id,
                cfg.max_warmup_time_ms,
                ", ".join(map(str, waiting)),
                cfg.acceptable_recovery_lag,
            )
            return True
        if now >= self._next_log:
            self._next_log = now + _LOG_INTERVAL_S
            log.info(
                "worker %s: warming up before joining members [%s]: waiting on tasks [%s]",
                self._instance_id,
                ", ".join(members),
                ", ".join(f"{t}@{moving[t]}" for t in waiting),
            )
        self._tasks.follow_standbys()
        return False
