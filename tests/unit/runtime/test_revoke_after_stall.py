"""A worker that stood still past its session timeout may first hear of it as a revoke, inside
its first poll after waking, or find that its consumer already rejoined under a new member id:
either way it must not go on (and later write its stale caches to the changelogs) unless the
group still has the member its tasks were assigned to. A revoke itself commits nothing: the
tasks go on, and the ones that move are committed once the new assignment says which."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from processor.kafka.admin import GroupMember
from processor.runtime.rebalance import Rebalancer
from processor.runtime.stall import StallWatch


class FakeCommitter:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def commit(self, tasks: Any) -> None:
        self.calls.append("commit")

    def abandon(self) -> None:
        self.calls.append("abandon")

    def before_output(self) -> None:
        pass


class FakeTasks:
    def __init__(self) -> None:
        self.tasks = {"1_0": object()}

    def running(self) -> list[object]:
        return list(self.tasks.values())

    def close_active(self) -> None:
        self.tasks = {}

    def drain_sinks(self, seconds: float) -> None:
        pass

    def drain_async(self, seconds: float, before_output: object) -> None:
        pass


class FakeConsumer:
    def __init__(self) -> None:
        self.member_id: str | None = "m-1"
        self.unassigned = False

    def unassign(self) -> None:
        self.unassigned = True


class FakeAdmin:
    def __init__(self, members: list[str]) -> None:
        self.members = members

    def describe_group(self, group: str) -> Any:
        return SimpleNamespace(members=tuple(GroupMember(m, "c", None) for m in self.members))


def _rebalancer(members: list[str], stalls: StallWatch) -> tuple[Rebalancer, FakeCommitter, Any]:
    committer, consumer = FakeCommitter(), FakeConsumer()
    config = SimpleNamespace(
        application_id="app",
        assignment_load_aware=False,
        load_balance_interval_ms=30_000,
        load_balance_threshold=0.25,
        load_balance_max_moves=2,
        num_standby_replicas=0,
    )
    plan = SimpleNamespace(identity=SimpleNamespace(instance_id="z0"))
    rebalancer = Rebalancer(
        config,  # type: ignore[arg-type]
        plan,  # type: ignore[arg-type]
        FakeAdmin(members),  # type: ignore[arg-type]
        consumer,  # type: ignore[arg-type]
        committer,
        FakeTasks(),  # type: ignore[arg-type]
        SimpleNamespace(board=None, publish_plan=None),  # type: ignore[arg-type]
        stalls,
        session_timeout_s=6.0,
    )
    rebalancer._assigned_member_id = "m-1"
    return rebalancer, committer, consumer


def _stalled(session_timeout_s: float = 6.0) -> StallWatch:
    stalls = StallWatch(session_timeout_s)
    stalls._last = time.monotonic() - session_timeout_s  # the process stood still that long
    return stalls


def test_a_revoke_without_a_stall_keeps_the_tasks_without_asking() -> None:
    rebalancer, committer, consumer = _rebalancer([], StallWatch(6.0))
    rebalancer.on_revoke()
    assert committer.calls == []
    assert rebalancer._tasks.tasks and not consumer.unassigned
    assert rebalancer.commits_held  # until the next generation is taken


@pytest.mark.parametrize(("members", "kept"), [(["m-1"], True), (["m-2"], False)])
def test_a_revoke_after_a_stall_keeps_the_tasks_only_while_the_group_has_the_member(
    members: list[str], kept: bool
) -> None:
    rebalancer, committer, consumer = _rebalancer(members, _stalled())
    rebalancer.on_revoke()
    assert committer.calls == ([] if kept else ["abandon"])
    assert bool(rebalancer._tasks.tasks) is kept
    assert consumer.unassigned is not kept


def test_a_consumer_that_rejoined_under_a_new_id_no_longer_holds_the_tasks() -> None:
    # The group has the consumer's new member id, but the tasks were the old member's.
    rebalancer, committer, consumer = _rebalancer(["m-2"], StallWatch(6.0))
    consumer.member_id = "m-2"
    rebalancer.on_revoke()
    assert committer.calls == ["abandon"]

    rebalancer, committer, consumer = _rebalancer(["m-2"], _stalled())
    consumer.member_id = "m-2"
    assert rebalancer.still_a_member(6.0) is False
    assert committer.calls == ["abandon"] and consumer.unassigned
