"""`stable_membership`: is this group snapshot the generation this worker just joined? And
`DuplicateWatch`: when is a duplicated instance id two live workers?"""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.errors import DuplicateInstanceError
from processor.kafka.admin import GroupMember, GroupSnapshot
from processor.runtime.identity import (
    ASSIGNMENT_PROTOCOL,
    Fingerprint,
    WorkerIdentity,
    parse_client_id,
)
from processor.runtime.membership import (
    DuplicateWatch,
    Membership,
    Stranger,
    membership_of,
    stable_membership,
)

FINGERPRINT = Fingerprint("0" * 8, "1" * 8, "2" * 8)
OTHER_TOPOLOGY = Fingerprint("a" * 8, "1" * 8, "2" * 8)


def _member(
    member_id: str,
    instance_id: str,
    instance: str | None = None,
    fingerprint: Fingerprint = FINGERPRINT,
) -> GroupMember:
    """A worker member: its client id names its instance id and fingerprint."""
    client_id = WorkerIdentity(instance_id, fingerprint).client_id()
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
    assert membership is not None
    assert membership.instances == ["worker-a", "worker-b"]
    assert membership.duplicated == {"worker-a": ["m-1", "m-3"]}


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


def test_a_member_that_is_not_a_worker_owns_nothing_and_is_named() -> None:
    console = GroupMember("m-9", "console-consumer", None, host="/10.0.0.7")
    snapshot = _snapshot(_member("m-1", "p0"), console, _member("m-2", "p1"))
    membership = stable_membership(snapshot, "m-1")
    assert membership is not None
    assert membership.instances == ["p0", "p1"]
    assert membership.strangers == (Stranger("m-9", "console-consumer", "/10.0.0.7"),)


@pytest.mark.parametrize(
    "client_id",
    [
        "p0",  # a worker of a version before identities travelled in the client id
        "processor",
        "processor~1~00000000.11111111.22222222~",  # no instance id
        "processor~x~00000000.11111111.22222222~p0",  # no protocol number
        "processor~1~00000000.11111111~p0",  # a fingerprint part missing
        "processor~1~0000000G.11111111.22222222~p0",  # not hex
        "other~1~00000000.11111111.22222222~p0",
    ],
)
def test_client_ids_that_do_not_name_a_worker_make_strangers(client_id: str) -> None:
    membership = membership_of([GroupMember("m-1", client_id, None)])
    assert membership.instances == [] and membership.majority is None
    assert [s.client_id for s in membership.strangers] == [client_id]


def test_an_instance_id_may_contain_the_separator() -> None:
    identity = WorkerIdentity("host~1.example", FINGERPRINT)
    membership = membership_of([GroupMember("m-1", identity.client_id(), None)])
    assert membership.instances == ["host~1.example"]


def test_workers_outvoted_by_the_majority_take_no_part() -> None:
    members = [
        _member("m-1", "w0"),
        _member("m-2", "w1", fingerprint=OTHER_TOPOLOGY),
        _member("m-3", "w2"),
    ]
    membership = membership_of(members)
    assert membership.instances == ["w0", "w2"]
    assert list(membership.outvoted) == ["w1"]
    assert membership.majority is not None and membership.majority.fingerprint == FINGERPRINT
    assert not membership.takes_part(WorkerIdentity("w1", OTHER_TOPOLOGY))
    assert FINGERPRINT.differences(OTHER_TOPOLOGY) == [
        "topology (sub-topologies, source topics or stores)"
    ]


def test_a_tie_goes_to_the_side_with_the_lowest_instance_id() -> None:
    members = [_member("m-1", "w1"), _member("m-2", "w0", fingerprint=OTHER_TOPOLOGY)]
    membership = membership_of(members)
    assert membership.instances == ["w0"]
    assert list(membership.outvoted) == ["w1"]


def test_a_protocol_version_counts_like_a_fingerprint() -> None:
    newer = WorkerIdentity("w9", FINGERPRINT, protocol=ASSIGNMENT_PROTOCOL + 1)
    members = [_member("m-1", "w0"), GroupMember("m-2", newer.client_id(), None)]
    membership = membership_of(members)
    assert membership.instances == ["w0"]
    assert membership.outvoted == {"w9": newer}


_instance_ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=6
)
_fingerprints = st.sampled_from(
    [FINGERPRINT, OTHER_TOPOLOGY, Fingerprint("b" * 8, "1" * 8, "3" * 8)]
)


@given(
    st.lists(
        st.tuples(_instance_ids, _fingerprints) | st.text(max_size=12),
        min_size=1,
        max_size=8,
    ),
    st.randoms(use_true_random=False),
)
def test_every_member_computes_the_same_membership_in_any_order(
    entries: list[tuple[str, Fingerprint] | str], random: Random
) -> None:
    """Whatever the group holds, the members taking part share one fingerprint, and the result
    does not depend on the order the coordinator lists members in."""
    members = [
        GroupMember(
            f"m-{i}",
            WorkerIdentity(e[0], e[1]).client_id() if isinstance(e, tuple) else e,
            None,
        )
        for i, e in enumerate(entries)
    ]
    first = membership_of(members)
    shuffled = list(members)
    random.shuffle(shuffled)
    assert membership_of(shuffled) == first
    if first.majority is not None:
        taking_part = {
            identity.instance_id
            for m in members
            if (identity := parse_client_id(m.client_id)) is not None
            and identity.agreement == first.majority.agreement
        }
        assert set(first.instances) == taking_part
        assert not set(first.outvoted) & taking_part
