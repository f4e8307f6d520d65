"""`stable_instances`: is this group snapshot the generation this worker just joined?"""

from __future__ import annotations

import pytest

from processor.errors import ConfigError, DuplicateInstanceError
from processor.kafka.admin import GroupMember, GroupSnapshot
from processor.runtime.membership import stable_instances


def _member(member_id: str, client_id: str, instance: str | None = None) -> GroupMember:
    return GroupMember(member_id=member_id, client_id=client_id, group_instance_id=instance)


def _snapshot(*members: GroupMember, stable: bool = True) -> GroupSnapshot:
    return GroupSnapshot(
        stable=stable, state="Stable" if stable else "PreparingRebalance", members=members
    )


def test_a_group_that_is_not_stable_is_not_the_generation_yet() -> None:
    snapshot = _snapshot(_member("m-1", "worker-a"), stable=False)
    assert stable_instances(snapshot, "m-1") is None


def test_a_snapshot_without_this_worker_is_not_its_generation() -> None:
    snapshot = _snapshot(_member("m-1", "worker-a"), _member("m-2", "worker-b"))
    assert stable_instances(snapshot, "m-3") is None


def test_a_worker_that_has_no_member_id_yet_waits() -> None:
    assert stable_instances(_snapshot(_member("m-1", "worker-a")), None) is None


def test_an_empty_stable_group_is_not_the_generation() -> None:
    assert stable_instances(_snapshot(), "m-1") is None


def test_a_stable_group_with_this_worker_gives_sorted_instance_ids() -> None:
    snapshot = _snapshot(
        _member("m-3", "worker-c"),
        _member("m-1", "worker-a"),
        _member("m-2", "worker-b"),
    )
    assert stable_instances(snapshot, "m-2") == ["worker-a", "worker-b", "worker-c"]


def test_instance_ids_are_the_client_ids_not_the_member_ids() -> None:
    snapshot = _snapshot(_member("zzz", "alpha", instance="static-1"), _member("aaa", "beta"))
    assert stable_instances(snapshot, "zzz") == ["alpha", "beta"]


def test_every_member_computes_the_same_list() -> None:
    members = (_member("m-2", "b"), _member("m-1", "a"))
    results = {tuple(stable_instances(_snapshot(*members), m.member_id) or []) for m in members}
    assert results == {("a", "b")}


def test_two_members_with_one_instance_id_raise_naming_it() -> None:
    snapshot = _snapshot(
        _member("m-1", "worker-a"),
        _member("m-2", "worker-b"),
        _member("m-3", "worker-a"),
    )
    with pytest.raises(DuplicateInstanceError) as excinfo:
        stable_instances(snapshot, "m-2")
    error = excinfo.value
    assert error.instance_id == "worker-a"
    assert error.member_ids == ["m-1", "m-3"]
    message = str(error)
    assert "'worker-a'" in message
    assert "m-1" in message and "m-3" in message
    assert "--instance-id" in message


def test_a_duplicate_instance_is_a_configuration_error() -> None:
    snapshot = _snapshot(_member("m-1", "same"), _member("m-2", "same"))
    with pytest.raises(ConfigError) as excinfo:
        stable_instances(snapshot, "m-1")
    assert excinfo.value.setting == "instance_id"


def test_duplicates_are_not_reported_before_the_group_is_stable() -> None:
    snapshot = _snapshot(_member("m-1", "same"), _member("m-2", "same"), stable=False)
    assert stable_instances(snapshot, "m-1") is None
