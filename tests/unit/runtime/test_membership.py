"""`stable_membership`: is this group snapshot the generation this worker just joined? And
`DuplicateWatch`: when is a duplicated instance id two live workers?"""

from __future__ import annotations

import pytest

from processor.errors import DuplicateInstanceError
from processor.kafka.admin import GroupMember, GroupSnapshot
from processor.runtime.membership import DuplicateWatch, Membership, stable_membership


def _member(member_id: str, client_id: str, instance: str | None = None) -> GroupMember:
    return GroupMember(member_id=member_id, client_id=client_id, group_instance_id=instance)


def _snapshot(*members: GroupMember, stable: bool = True) -> GroupSnapshot:
    return GroupSnapshot(
        stable=stable, state="Stable" if stable else "PreparingRebalance", members=members
    )


def test_a_group_that_is_not_stable_is_not_the_generation_yet() -> None:
    snapshot = _snapshot(_member("m-1", "worker-a"), stable=False)
    assert stable_membership(snapshot, "m-1") is None


def test_a_snapshot_without_this_worker_is_not_its_generation() -> None:
    snapshot = _snapshot(_member("m-1", "worker-a"), _member("m-2", "worker-b"))
    assert stable_membership(snapshot, "m-3") is None


def test_a_worker_that_has_no_member_id_yet_waits() -> None:
    assert stable_membership(_snapshot(_member("m-1", "worker-a")), None) is None


def test_an_empty_stable_group_is_not_the_generation() -> None:
    assert stable_membership(_snapshot(), "m-1") is None


def test_a_stable_group_with_this_worker_gives_sorted_instance_ids() -> None:
    snapshot = _snapshot(
        _member("m-3", "worker-c"),
        _member("m-1", "worker-a"),
        _member("m-2", "worker-b"),
    )
    membership = stable_membership(snapshot, "m-2")
    assert membership is not None
    assert membership.instances == ["worker-a", "worker-b", "worker-c"]


def test_instance_ids_are_the_client_ids_not_the_member_ids() -> None:
    snapshot = _snapshot(_member("zzz", "alpha", instance="static-1"), _member("aaa", "beta"))
    membership = stable_membership(snapshot, "zzz")
    assert membership is not None
    assert membership.instances == ["alpha", "beta"]


def test_every_member_computes_the_same_list() -> None:
    members = (_member("m-2", "b"), _member("m-1", "a"))
    results = set()
    for m in members:
        membership = stable_membership(_snapshot(*members), m.member_id)
        assert membership is not None
        results.add(tuple(membership.instances))
    assert results == {("a", "b")}


def test_an_instance_id_carried_by_two_members_counts_once_and_is_reported() -> None:
    snapshot = _snapshot(
        _member("m-1", "worker-a"),
        _member("m-2", "worker-b"),
        _member("m-3", "worker-a"),
    )
    membership = stable_membership(snapshot, "m-2")
    assert membership == Membership(["worker-a", "worker-b"], {"worker-a": ["m-1", "m-3"]})


def test_duplicates_are_not_reported_before_the_group_is_stable() -> None:
    snapshot = _snapshot(_member("m-1", "same"), _member("m-2", "same"), stable=False)
    assert stable_membership(snapshot, "m-1") is None


def test_a_restarted_worker_is_not_an_error_while_its_dead_predecessor_expires() -> None:
    watch = DuplicateWatch("w1", grace_s=11.0)
    duplicated = Membership(["w0", "w1"], {"w1": ["old", "new"]})
    assert watch.observe(duplicated, now=100.0) is True  # take no tasks yet
    watch.check(now=110.0)  # within the grace period: no error
    assert watch.observe(Membership(["w0", "w1"], {}), now=107.0) is False
    watch.check(now=500.0)  # the old member expired: never an error


def test_a_duplicate_that_outlives_the_session_timeout_is_a_configuration_error() -> None:
    watch = DuplicateWatch("w1", grace_s=11.0)
    assert watch.observe(Membership(["w1"], {"w1": ["m-1", "m-3"]}), now=100.0)
    assert watch.observe(Membership(["w1"], {"w1": ["m-1", "m-3"]}), now=105.0)
    watch.check(now=111.0)
    with pytest.raises(DuplicateInstanceError) as excinfo:
        watch.check(now=111.5)
    assert excinfo.value.setting == "instance_id"
    assert excinfo.value.member_ids == ["m-1", "m-3"]
    assert "'w1'" in str(excinfo.value) and "--instance-id" in str(excinfo.value)


def test_another_instances_duplicate_does_not_concern_this_worker() -> None:
    watch = DuplicateWatch("w0", grace_s=1.0)
    assert watch.observe(Membership(["w0", "w1"], {"w1": ["a", "b"]}), now=0.0) is False
    watch.check(now=100.0)
