"""Warm-up before joining (`processor.runtime.warmup`) and the status records instances exchange
(`processor.status.record`)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.ids import TaskId
from processor.runtime import warmup
from processor.runtime.assignment import assign_with_standbys
from processor.status.record import IgnoredReason, InstancePhase, InstanceStatus, StatusBoard

members = st.lists(
    st.sampled_from([f"w{i}" for i in range(8)]), min_size=1, max_size=6, unique=True
)
task_counts = st.integers(1, 24)
replicas = st.integers(0, 2)


def _tasks(n: int) -> list[TaskId]:
    return [TaskId(0, p) for p in range(n)]


def _stateful(task: TaskId) -> bool:
    return task.partition % 3 != 0  # some tasks are stateless


@settings(max_examples=300, deadline=None)
@given(members, st.sampled_from([f"j{i}" for i in range(3)]), task_counts, replicas)
def test_after_warm_up_every_moving_task_is_held_by_its_new_owner(
    current_members: list[str], joiner: str, n: int, r: int
) -> None:
    tasks = _tasks(n)
    current = assign_with_standbys(current_members, tasks, num_standby_replicas=r)
    future = assign_with_standbys([*current_members, joiner], tasks, num_standby_replicas=r)
    moving = warmup.moving_tasks(current, future, _stateful)
    warmed = {
        instance: warmup.held_by(current, instance) | warmup.to_prewarm(instance, current, future)
        for instance in [*current_members, joiner]
    }
    for task, owner in moving.items():
        assert _stateful(task)
        assert current.active[task] != owner
        assert task in warmed[owner], f"{task} moves to {owner} cold"
    # Nothing is pre-warmed that the instance will not hold once the joiner is in.
    for instance in current_members:
        assert warmup.to_prewarm(instance, current, future) <= warmup.held_by(future, instance)


def test_not_caught_up_lists_tasks_whose_new_owner_is_unknown_or_behind() -> None:
    moving = {TaskId(0, 1): "a", TaskId(0, 2): "b", TaskId(0, 3): "c"}
    lags = {("a", TaskId(0, 1)): 10, ("b", TaskId(0, 2)): 11}

    waiting = warmup.not_caught_up(moving, lambda i, t: lags.get((i, t)), 10)

    assert waiting == [TaskId(0, 2), TaskId(0, 3)]


def test_status_survives_its_json_form() -> None:
    status = InstanceStatus(
        instance_id="w1",
        phase=InstancePhase.WARMING_UP,
        host="h",
        pid=7,
        endpoint="http://127.0.0.1:9000",
        members=("w0",),
        active_tasks=("0_1",),
        standby_tasks=("0_2",),
        lags={"0_2": 5},
        warming_for=("w9",),
        updated_ms=123,
    )

    assert InstanceStatus.from_json(status.to_json()) == status
    assert status.lag_of(TaskId(0, 2)) == 5
    assert status.lag_of(TaskId(0, 3)) is None


def test_the_board_knows_joiners_by_their_recent_announcements() -> None:
    board = StatusBoard()
    for instance, phase, updated in (
        ("w0", InstancePhase.RUNNING, 1000),
        ("j1", InstancePhase.WARMING_UP, 1000),
        ("j2", InstancePhase.WARMING_UP, 100),  # silent too long
        ("w1", InstancePhase.WARMING_UP, 1000),  # already a member
    ):
        board.apply(
            instance.encode(), InstanceStatus(instance, phase, updated_ms=updated).to_json()
        )
    board.apply(b"bad", b"{not json")
    board.apply(
        b"gone", InstanceStatus("gone", InstancePhase.WARMING_UP, updated_ms=1000).to_json()
    )
    board.apply(b"gone", None)

    assert board.joiners({"w0", "w1"}, now_ms=1100, max_age_ms=500) == ["j1"]
    assert board.ignored == {IgnoredReason.NOT_JSON: 1}
    assert "gone" not in board.statuses
