"""Rebalancing: from the group's members to the tasks this worker runs.

The group consumer's callbacks arrive inside `consume()`. On revoke the tasks are committed and
go on processing (standbys too), while no commit is made until the new generation is taken; on
lost they are dropped uncommitted; on assign the worker waits for a snapshot of the generation
it just joined. Then two named steps:

1. `accept_snapshot()`: the group is Stable and shows this member with its own client id; who
   takes part is decided from every member's client id (`processor.runtime.membership`):
   strangers and outvoted workers own nothing;
2. `apply_assignment()`: every worker computes the same assignment from the members taking part;
   this one commits and closes the tasks that moved away (and stops reading their partitions),
   keeps the others running, fences the transactions of departed owners it takes over
   (exactly-once), and claims the tasks it gains: each starts (restoring first where stateful)
   once no other worker claims it (`processor.runtime.handover`). Only who owns what is computed
   here; the standbys are placed on a thread, and the last ones kept until then
   (`processor.runtime.standby_targets`).

Between rebalances it pre-warms, as standbys, what announced joiners will give this worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from processor.config import WorkerConfig
from processor.errors import BrokerError
from processor.histogram import REBALANCE_BOUNDS_S, Histogram
from processor.ids import TaskId, tasks_field, tasks_text
from processor.kafka.admin import Admin
from processor.kafka.consumer import GroupConsumer
from processor.runtime.assignment import Assignment, assign, assign_with_standbys
from processor.runtime.commit import Committer
from processor.runtime.group_snapshot import SnapshotRequests, shows
from processor.runtime.handover import Handover, fence_departed, workers_of
from processor.runtime.identity import WorkerIdentity
from processor.runtime.load_balancer import LoadBalancer
from processor.runtime.membership import (
    DuplicateWatch,
    Membership,
    report_outvoted,
    report_strangers,
    stable_membership,
)
from processor.runtime.stall import StallWatch, group_has, report_replaced
from processor.runtime.standby_placer import let_others_run
from processor.runtime.standby_targets import StandbyTargets
from processor.runtime.status_publisher import GroupView, StatusPublisher
from processor.runtime.task_manager import TaskManager
from processor.runtime.task_plan import TaskPlan
from processor.state.restore import RestoreState
from processor.status.record import InstancePhase

__all__ = ["Rebalancer"]

# How long a revoke (a rebalance, or the worker stopping) waits for sinks to write their batches.
_SINK_DRAIN_S = 5.0

log = logging.getLogger("processor.worker")

_SNAPSHOT_RETRY_S = 0.1
_SNAPSHOT_ERROR_RETRY_S = 1.0


class Rebalancer:
    def __init__(
        self,
        config: WorkerConfig,
        plan: TaskPlan,
        admin: Admin,
        consumer: GroupConsumer,
        committer: Committer,
        tasks: TaskManager,
        status: StatusPublisher,
        stalls: StallWatch,
        *,
        session_timeout_s: float,
    ) -> None:
        self._config = config
        self._plan = plan
        self._instance_id = plan.identity.instance_id
        self._admin = admin
        self._consumer = consumer
        self._committer = committer
        self._tasks = tasks
        self._status = status
        self._stalls = stalls
        self._duplicates = DuplicateWatch(self._instance_id, session_timeout_s + 5.0)
        self.assignment: Assignment | None = None
        self.members: list[str] = []
        self._membership = Membership([], {})
        self._outvoted_by: WorkerIdentity | None = None
        self._strangers_seen: set[tuple[str, str]] = set()
        self._rebalances = 0
        # When the rebalance in progress began (its first callback), and how long they took.
        self._rebalance_began: float | None = None
        self.rebalance_seconds = Histogram(REBALANCE_BOUNDS_S)
        self._snapshot_pending = False
        self._next_snapshot_at = 0.0
        self._snapshots = SnapshotRequests(admin, config.application_id)
        self._handover = Handover(self._instance_id, status)
        self.balancer = LoadBalancer(
            config, self._instance_id, status.board, status.publish_plan, self._actives
        )
        # The load plan's weights the running assignment was computed with.
        self._weights: Mapping[TaskId, int] | None = None
        self.standbys = StandbyTargets(
            self._instance_id,
            self._place,
            self.balancer.weights,
            status,
            tasks,
            replicas=config.num_standby_replicas,
        )
        # From a revoke until the next generation is taken: commits would be refused.
        self._commits_held = False
        self._assigned_member_id: str | None = None
        """The member id this worker's tasks were assigned under. The consumer may rejoin in
        the background under a new id (after a stall), while the tasks are still the old
        member's: only this one says whether they are still this worker's."""

    @property
    def settled(self) -> bool:
        """Whether this worker runs the assignment of the current generation."""
        return (
            not self._snapshot_pending
            and not self._commits_held
            and self.assignment is not None
            and not self._handover.gaining
        )

    @property
    def commits_held(self) -> bool:
        """Between a revoke and the next generation: the tasks go on, their commits wait."""
        return self._commits_held

    def group_view(self) -> GroupView:
        return GroupView(
            rebalances=self._rebalances,
            foreign_members=len(self._membership.strangers),
            outvoted_members=len(self._membership.outvoted),
            outvoted=self._outvoted_by is not None,
            rebalance_seconds=self.rebalance_seconds.sample(),
        )

    @property
    def joiners(self) -> list[str]:
        """The instances announced as warming up to join."""
        return self.standbys.joiners

    def owners(self, members: Sequence[str]) -> Assignment:
        """Who owns what among `members` (no standbys), with the load plan's weights when there
        is one for them (`processor.runtime.load_balancer`)."""
        weights = self.balancer.weights(members)
        return Assignment(self._actives(members, weights), instances=frozenset(members))

    def _place(self, members: Sequence[str], weights: Mapping[TaskId, int] | None) -> Assignment:
        """The assignment of `members` with its standbys: on a thread (`standby_targets`)."""
        return assign_with_standbys(
            members,
            self._plan.tasks,
            num_standby_replicas=self._config.num_standby_replicas,
            balance_factor=self._config.assignment_balance_factor,
            weights=weights,
            pause=let_others_run,
        )

    def _actives(
        self, members: Sequence[str], weights: Mapping[TaskId, int] | None
    ) -> Mapping[TaskId, str]:
        """Owners only, as the load planner tries weights out."""
        return assign(
            members,
            self._plan.tasks,
            balance_factor=self._config.assignment_balance_factor,
            weights=weights,
        ).active

    def follow_load(self, now: float) -> None:
        """Let the leader plan; when the plan for these members changed, apply the assignment it
        gives, moving only what it moves (without a group rebalance: `handover`)."""
        if not self.settled or self.assignment is None:
            return
        self.balancer.tick(self.members, self.assignment, now)
        if self.balancer.weights(self.members) != self._weights:
            log.info("worker %s: a new load plan; applying it", self._instance_id)
            self.apply_assignment(self._membership)

    # -- group consumer callbacks ----------------------------------------------------------

    def subscribe(self) -> None:
        self._consumer.subscribe(
            self._config.coordination_topic,
            on_assign=self.on_assign,
            on_revoke=self.on_revoke,
            on_lost=self.on_lost,
        )

    def _rebalancing(self) -> None:
        if self._rebalance_began is None:
            self._rebalance_began = time.monotonic()

    def on_assign(self) -> None:
        self._rebalancing()
        self._snapshot_pending = True
        self._next_snapshot_at = 0.0
        self._snapshots.forget()

    def on_revoke(self) -> None:
        self._rebalancing()
        self._snapshot_pending = False
        self._snapshots.forget()
        self._handover.cancel()
        # A revoke can arrive in the first poll after a stall, before the main loop has
        # noticed it: going on would write stale state over a successor's.
        self._stalls.tick()
        if self._tasks.tasks and (self._stalls.suspect or self._rejoined()):
            if not self._member_confirmed(self._stalls.stalled_s):
                self.on_lost()
                return
            self._stalls.clear()
        if self._tasks.tasks:
            # No commit now: the tasks that move are committed by this worker once the new
            # assignment says which they are; the group would refuse commits meanwhile.
            log.info(
                "worker %s: rebalance; active tasks [%s] go on until the new assignment says "
                "which move",
                self._instance_id,
                tasks_text(self._tasks.tasks),
                extra=tasks_field(self._tasks.tasks),
            )
        self._commits_held = True

    def _commit_all(self) -> bool:
        """Commit every running task, its sinks' and async calls' work first. False when the
        commit failed (the committer has logged it and the tasks): the work since the last
        commit is dropped, and the tasks must be closed (their next start reprocesses it)."""
        self._tasks.drain_sinks(_SINK_DRAIN_S)
        try:
            self._tasks.drain_async(_SINK_DRAIN_S, self._committer.before_output)
            self._committer.commit(self._tasks.running())
        except BrokerError as e:
            if e.fatal:
                raise
            self._committer.abandon()
            return False
        return True

    def _close_all(self) -> None:
        """Close every active task (after committing or abandoning its work); stop reading."""
        self._handover.cancel()
        self._tasks.close_active()
        self._consumer.unassign()

    def on_lost(self) -> None:
        log.warning(
            "worker %s: lost its group membership; dropping tasks [%s] uncommitted",
            self._instance_id,
            tasks_text(self._tasks.tasks),
            extra=tasks_field(self._tasks.tasks),
        )
        self._rebalancing()
        self._snapshot_pending = False
        self._commits_held = False
        self._committer.abandon()
        self._close_all()

    def rewind(self) -> None:
        """Drop the active tasks and take them again from the last committed offsets."""
        if not self._tasks.tasks:
            return
        log.warning(
            "worker %s: rewinding tasks [%s] to the last committed offsets",
            self._instance_id,
            tasks_text(self._tasks.tasks),
            extra=tasks_field(self._tasks.tasks),
        )
        self._close_all()
        self._snapshot_pending = True

    def rejoin(self) -> None:
        """Commit, give up every task and join the group again under the plan's identity."""
        if self._tasks.tasks and not self._commit_all():
            self._committer.abandon()
        self._close_all()
        self._commits_held = False
        self.assignment = None
        self._consumer.rejoin(self._plan.identity.client_id())

    def still_a_member(self, stalled_s: float) -> bool | None:
        """After a stall: whether the group still has the member this worker's tasks were
        assigned to, asked before anything more is written (None: the group could not be
        asked). When it has not, drop the uncommitted work (the tasks' new owner has it); the
        consumer learns it is out at its next poll and rejoins."""
        if self._rejoined():
            present: bool | None = False
        else:
            present = group_has(
                self._admin, self._config.application_id, self._assigned_member_id, stalled_s
            )
        if present is None:
            return None
        if present:
            return True
        report_replaced(self._instance_id, stalled_s)
        self.on_lost()
        return False

    def _rejoined(self) -> bool:
        """Whether the consumer is no longer the member the tasks were assigned to."""
        return self._assigned_member_id is not None and (
            self._consumer.member_id != self._assigned_member_id
        )

    def _member_confirmed(self, stalled_s: float) -> bool:
        """Inside a revoke: whether the group still has the tasks' member (when in doubt, no:
        dropping uncommitted work only means processing it again)."""
        if not self._rejoined() and group_has(
            self._admin, self._config.application_id, self._assigned_member_id, stalled_s
        ):
            return True
        report_replaced(self._instance_id, stalled_s)
        return False

    # -- a new generation ------------------------------------------------------------------

    def poll(self) -> None:
        """Take the pending generation once its snapshot is there; start the gained tasks that
        no other worker claims any more."""
        self._duplicates.check(time.monotonic())
        if self.assignment is not None and self.standbys.placing:
            gaining = self._handover.gaining
            active = {*self._tasks.tasks, *gaining}
            placed = self.standbys.take_placed(self.members, active, gaining)
            self.assignment = placed or self.assignment
        if self._handover.gaining and not self._snapshot_pending:
            self._start_gained()
        if not self._snapshot_pending or time.monotonic() < self._next_snapshot_at:
            return
        membership = self.accept_snapshot()
        if membership is None:
            return
        if membership.takes_part(self._plan.identity):
            self.apply_assignment(membership)
        else:
            self._wait_outvoted(membership)
        if self._rebalance_began is not None:
            self.rebalance_seconds.observe(time.monotonic() - self._rebalance_began)
            self._rebalance_began = None

    def accept_snapshot(self) -> Membership | None:
        """The membership of the generation this worker just joined, or None (try again soon).
        The group is described in the background (`group_snapshot`): the tasks go on meanwhile."""
        try:
            snapshot = self._snapshots.answer()
        except BrokerError as e:
            # A worker whose tasks an outage took has no commit to notice the broker's absence:
            # this request is then what tells its logs and metrics.
            self._committer.broker.failed(self._snapshots.asked_at, "describing the group", e)
            log.warning("worker %s: %s (retrying)", self._instance_id, e)
            self._next_snapshot_at = time.monotonic() + _SNAPSHOT_ERROR_RETRY_S
            return None
        if snapshot is None:
            return None
        self._committer.broker.answered()
        member_id = self._consumer.member_id
        membership = stable_membership(snapshot, member_id)
        if membership is None or not shows(snapshot, member_id, self._plan.identity.client_id()):
            self._next_snapshot_at = time.monotonic() + _SNAPSHOT_RETRY_S
            return None
        self._snapshot_pending = False
        self._commits_held = False
        self._assigned_member_id = self._consumer.member_id
        self._rebalances += 1
        self._membership = membership
        report_strangers(
            self._instance_id, self._config.application_id, membership, self._strangers_seen
        )
        return membership

    def apply_assignment(self, membership: Membership) -> None:
        if self._outvoted_by is not None:
            log.warning(
                "worker %s: the group agrees with this worker again; taking part",
                self._instance_id,
            )
            self._outvoted_by = None
        members = membership.instances
        self.members = list(members)
        previous = self.assignment
        self._weights = self.balancer.weights(members)
        owners = Assignment(self._actives(members, self._weights), instances=frozenset(members))
        self.assignment = self.standbys.place(owners, self._weights)
        mine = sorted(self.assignment.tasks_of(self._instance_id))
        duplicate = self._duplicates.observe(membership, time.monotonic())
        if duplicate:
            log.warning(
                "worker %s: group members %s both carry this instance id; taking no tasks until "
                "the older one expires (a worker restarted within the session timeout) or, if "
                "both stay for %.0fs, stopping: two live workers must not share an instance id",
                self._instance_id,
                ", ".join(membership.duplicated[self._instance_id]),
                self._duplicates.grace_s,
            )
            mine = []
            self.standbys.drop()
        let_go = self._let_go(set(self._tasks.tasks) - set(mine))
        gaining = [t for t in mine if t not in self._tasks.tasks]
        # Claims what it gains, or tells those waiting for what it let go of, before anything
        # slower (fencing, opening standbys).
        self._handover.begin(gaining, self.members, workers_of(membership))
        if let_go and not gaining:
            self.publish_status()
        if previous is not None and self._config.exactly_once:
            fence_departed(self._config, self._instance_id, previous, members, gaining)
        self.standbys.keep(self.members, mine, set(gaining))
        self._start_gained()

    def _let_go(self, leaving: set[TaskId]) -> bool:
        """Commit, then close the active tasks in `leaving` (they moved to other workers) and
        stop reading their partitions; the others go on. If the commit fails, every task is
        closed (what was processed since the last commit is processed again). True when it
        closed any."""
        if not leaving:
            return False
        if not self._commit_all():
            self._close_all()
            return True
        log.info(
            "worker %s: letting go of tasks [%s] (committed)",
            self._instance_id,
            tasks_text(leaving),
            extra=tasks_field(leaving),
        )
        self._consumer.remove(self._tasks.close(sorted(leaving)))
        return True

    def _start_gained(self) -> None:
        if free := self._handover.take():
            self._tasks.create(free)  # most restore first: their offsets are read meanwhile
            self._consumer.prefetch([p for t in free for p in self._tasks.tasks[t].partitions])

    def _wait_outvoted(self, membership: Membership) -> None:
        """This worker computes the assignment from other inputs than most of the group: own
        nothing (so no task is ever owned twice) and wait for the group to agree."""
        majority = membership.majority
        assert majority is not None  # a worker that does not take part means another one does
        self.assignment = None
        self.members = []
        self._let_go(set(self._tasks.tasks))
        self._handover.cancel()
        self.standbys.drop()
        self._tasks.set_standbys(set())
        self.publish_status()
        if self._outvoted_by == majority:
            return
        self._outvoted_by = majority
        report_outvoted(self._plan.identity, majority, membership)

    # -- joiners ---------------------------------------------------------------------------

    def update_prewarm(self) -> bool:
        """Pre-warm, as standbys, the tasks this worker will gain when the announced joiners
        join; drop pre-warmed copies nobody needs any more. True when the joiners changed."""
        if not self.settled or self.assignment is None:
            return False
        return self.standbys.follow_joiners(self.members, self.assignment, self._handover.gaining)

    def publish_status(self) -> None:
        self._status.publish(
            InstancePhase.RUNNING, self.members, self.joiners, claiming=self._handover.gaining
        )

    @property
    def rebalances(self) -> int:
        """Generations accepted so far."""
        return self._rebalances

    def lag_of(self, instance: str, task: TaskId) -> int | None:
        """How far `instance`'s copy of `task` is behind its changelogs, as far as known here."""
        if instance != self._instance_id:
            return self._status.lag_reported(instance, task)
        progress = self._tasks.standby_progress().get(task)
        if progress is None or progress.state is not RestoreState.STANDBY:
            return None
        return progress.remaining
