"""Properties of `assign_with_standbys()` (ARCHITECTURE.md, "Membership and task assignment":
standbys are placed where tasks will land).

Hypothesis generates small memberships (1-7 instances), 1-40 tasks, r in 0..2, the balance
factor and sometimes weights. The oracle is plain `assign()` run over every membership left after
at most r failures (brute force over the failure sets), so these tests also check that the replay
of the failures `assign_with_standbys()` computes from the full walk
(`processor/runtime/assignment_failover.py`) agrees with `assign()` over the survivors.
`bench/standby_load.py` and `bench/assignment_sim.py` measure how many standby copies that takes
per task (more than r: the tasks the limits shuffle among the survivors need theirs too).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.errors import ConfigError
from processor.ids import TaskId
from processor.runtime.assignment import (
    Assignment,
    assign,
    assign_with_standbys,
    standby_counts,
)

CORE = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

instance_ids = st.integers(0, 2**32 - 1).map(lambda i: f"worker-{i:08x}")
memberships = st.lists(instance_ids, min_size=1, max_size=7, unique=True)
# 1-40 tasks in two sub-topologies (the first may have none).
task_sets = st.integers(1, 40).flatmap(
    lambda n: st.integers(0, n).map(
        lambda first: (
            {TaskId(0, p) for p in range(first)} | {TaskId(1, p) for p in range(n - first)}
        )
    )
)
replicas = st.integers(0, 2)
# r = 0 has its own test.
some_replicas = st.integers(1, 2)
balance_factors = st.one_of(st.just(1.0), st.sampled_from([1.25, 1.5, 2.0]))


def _failure_sets(members: Sequence[str], r: int) -> Iterator[frozenset[str]]:
    """Every set of at most r members that leaves at least one survivor, the empty set first."""
    for size in range(min(r, len(members) - 1) + 1):
        for failed in itertools.combinations(sorted(members), size):
            yield frozenset(failed)


# --- the core properties ------------------------------------------------------------------------


@CORE
@given(memberships, task_sets, some_replicas, balance_factors)
def test_after_any_r_failures_every_new_owner_is_warm(
    members: list[str], tasks: set[TaskId], r: int, bf: float
) -> None:
    """(1) the warm-takeover guarantee, checked against `assign()` over the survivors; (2) no
    instance is a standby for a task it owns; and nothing else is a standby: every standby is
    some failure set's new owner, so the standbys are exactly the ones the rule asks for."""
    result = assign_with_standbys(members, tasks, num_standby_replicas=r, balance_factor=bf)
    base = assign(members, tasks, balance_factor=bf)
    assert result.active == base.active
    assert result.instances == frozenset(members)

    held = {task: {owner} for task, owner in result.active.items()}
    for instance, standbys in result.standby.items():
        assert standbys, f"{instance} listed without standbys"
        for task in standbys:
            assert result.active[task] != instance, f"{instance} is standby for its own {task}"
            held[task].add(instance)

    needed: dict[str, set[TaskId]] = {}
    for failed in _failure_sets(members, r):
        after = assign(set(members) - failed, tasks, balance_factor=bf)
        for task, owner in after.active.items():
            assert owner in held[task], (sorted(failed), task, owner)
            if owner != result.active[task]:
                needed.setdefault(owner, set()).add(task)
    assert result.standby == {instance: frozenset(ts) for instance, ts in needed.items()}

    # Failing the owner and any r-1 of its standbys leaves a survivor that must be warm, so every
    # task has at least min(r, n - 1) standbys (the ideal is exactly that many).
    copies = {task: len(holders) - 1 for task, holders in held.items()}
    assert min(copies.values()) >= min(r, len(members) - 1)
    counts = standby_counts(result)
    assert set(counts) == set(members)
    assert sum(counts.values()) == sum(copies.values())


weight_maps = st.dictionaries(
    st.builds(TaskId, st.integers(0, 1), st.integers(0, 39)), st.integers(1, 6), max_size=30
)


@settings(CORE, max_examples=150)
@given(memberships, task_sets, some_replicas, balance_factors, weight_maps)
def test_weighted_after_any_r_failures_every_new_owner_is_warm(
    members: list[str], tasks: set[TaskId], r: int, bf: float, weights: dict[TaskId, int]
) -> None:
    """The guarantee with weights: the assignments after failures use the same weights."""
    result = assign_with_standbys(
        members, tasks, num_standby_replicas=r, balance_factor=bf, weights=weights
    )
    assert result.active == assign(members, tasks, balance_factor=bf, weights=weights).active
    needed: dict[str, set[TaskId]] = {}
    for failed in _failure_sets(members, r):
        after = assign(set(members) - failed, tasks, balance_factor=bf, weights=weights)
        for task, owner in after.active.items():
            if owner != result.active[task]:
                needed.setdefault(owner, set()).add(task)
    assert result.standby == {instance: frozenset(ts) for instance, ts in needed.items()}


@settings(CORE, max_examples=100)
@given(memberships, task_sets, replicas, balance_factors)
def test_all_weights_one_gives_the_unweighted_standbys(
    members: list[str], tasks: set[TaskId], r: int, bf: float
) -> None:
    ones = dict.fromkeys(tasks, 1)
    assert assign_with_standbys(
        members, tasks, num_standby_replicas=r, balance_factor=bf, weights=ones
    ) == assign_with_standbys(members, tasks, num_standby_replicas=r, balance_factor=bf)


@settings(CORE, max_examples=150)
@given(memberships, task_sets, replicas, balance_factors, st.randoms(use_true_random=True))
def test_deterministic_and_independent_of_input_order(
    members: list[str], tasks: set[TaskId], r: int, bf: float, rng: random.Random
) -> None:
    """(3) every worker computes the same standbys from its own view of the snapshot."""
    expected = assign_with_standbys(
        sorted(members), sorted(tasks), num_standby_replicas=r, balance_factor=bf
    )
    shuffled_members = members + rng.choices(members, k=rng.randrange(3))
    shuffled_tasks = list(tasks) + rng.choices(sorted(tasks), k=2)
    rng.shuffle(shuffled_members)
    rng.shuffle(shuffled_tasks)
    result = assign_with_standbys(
        iter(shuffled_members), iter(shuffled_tasks), num_standby_replicas=r, balance_factor=bf
    )
    assert result == expected
    assert standby_counts(result) == standby_counts(expected)
    # A worker that restarts with the same instance id gets the same standbys back.
    again = assign_with_standbys(members, tasks, num_standby_replicas=r, balance_factor=bf)
    assert again == expected


@settings(CORE, max_examples=100)
@given(memberships, task_sets, balance_factors)
def test_no_replicas_no_standbys(members: list[str], tasks: set[TaskId], bf: float) -> None:
    """(4) r = 0 is plain `assign()`."""
    result = assign_with_standbys(members, tasks, num_standby_replicas=0, balance_factor=bf)
    assert result == assign(members, tasks, balance_factor=bf)
    assert result.standby == {}
    assert set(standby_counts(result).values()) == {0}


@settings(CORE, max_examples=80)
@given(st.lists(instance_ids, min_size=1, max_size=4, unique=True), task_sets, balance_factors)
def test_replicas_beyond_the_membership_are_capped(
    members: list[str], tasks: set[TaskId], bf: float
) -> None:
    """r >= n counts as n - 1: with n - 1 failures the lone survivor owns everything, so every
    instance holds every task, as owner or standby."""
    capped = assign_with_standbys(
        members, tasks, num_standby_replicas=len(members) - 1, balance_factor=bf
    )
    for r in (len(members), len(members) + 3):
        assert assign_with_standbys(members, tasks, num_standby_replicas=r, balance_factor=bf) == (
            capped
        )
    for instance in members:
        assert capped.tasks_of(instance) | capped.standby.get(instance, frozenset()) == tasks


# --- fixed examples -----------------------------------------------------------------------------


PINNED_STANDBYS = {
    "alpha": ["0_3", "0_4", "1_1", "1_3"],
    "bravo": ["0_1", "0_2", "1_0", "1_2", "1_4"],
    "charlie": ["0_0"],
}


def test_pinned_standbys() -> None:
    """The standbys of `test_assignment.py`'s pinned example with one replica. They follow from
    the pinned weights and the rule; if this changes, so did one of them."""
    tasks = [TaskId(s, p) for s in range(2) for p in range(5)]
    result = assign_with_standbys(["alpha", "bravo", "charlie"], tasks, num_standby_replicas=1)
    assert result.active == assign(["alpha", "bravo", "charlie"], tasks).active
    assert {m: sorted(str(t) for t in ts) for m, ts in result.standby.items()} == PINNED_STANDBYS
    assert standby_counts(result) == {m: len(ts) for m, ts in PINNED_STANDBYS.items()}


def test_single_instance_has_no_standbys() -> None:
    result = assign_with_standbys(["solo"], [TaskId(0, 0), TaskId(0, 1)], num_standby_replicas=2)
    assert result.standby == {}
    assert standby_counts(result) == {"solo": 0}


def test_no_tasks() -> None:
    assert assign_with_standbys([], [], num_standby_replicas=1) == Assignment(active={})
    idle = assign_with_standbys(["b", "a"], [], num_standby_replicas=2)
    assert idle.standby == {}
    assert standby_counts(idle) == {"a": 0, "b": 0}


def test_tasks_without_instances_is_an_error() -> None:
    with pytest.raises(ValueError, match="no instances"):
        assign_with_standbys([], [TaskId(0, 0)], num_standby_replicas=1)


@pytest.mark.parametrize("r", [-1, True, 1.0, "1", None])
def test_bad_replica_count_is_a_config_error(r: object) -> None:
    with pytest.raises(ConfigError) as info:
        assign_with_standbys(["a"], [TaskId(0, 0)], num_standby_replicas=r)  # type: ignore[arg-type]
    assert info.value.setting == "num_standby_replicas"


def test_bad_balance_factor_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        assign_with_standbys(["a"], [TaskId(0, 0)], num_standby_replicas=1, balance_factor=0.5)
    assert info.value.setting == "assignment_balance_factor"


def test_standby_counts_of_a_hand_built_assignment() -> None:
    t0, t1 = TaskId(0, 0), TaskId(0, 1)
    built = Assignment(active={t0: "a", t1: "b"}, standby={"c": frozenset({t0, t1})})
    assert standby_counts(built) == {"a": 0, "b": 0, "c": 2}


def test_a_placement_pauses_after_each_failure_set_and_places_the_same() -> None:
    members = [f"w{i}" for i in range(6)]
    tasks = [TaskId(0, p) for p in range(30)]
    for r, failure_sets in ((1, 6), (2, 6 + 15)):
        pauses = itertools.count()
        placed = assign_with_standbys(members, tasks, num_standby_replicas=r, pause=pauses.__next__)
        assert next(pauses) == failure_sets
        assert placed == assign_with_standbys(members, tasks, num_standby_replicas=r)
