"""The group's description is asked on a thread of its own: the main loop never waits for it,
and an answer asked for before a new generation began is never taken for that generation's."""

from __future__ import annotations

import threading
import time

import pytest

from processor.errors import BrokerError
from processor.kafka.admin import GroupMember, GroupSnapshot
from processor.runtime.group_snapshot import SnapshotRequests, shows


class SlowAdmin:
    """Answers each describe_group only once the test releases it, with the next answer."""

    def __init__(self, *answers: GroupSnapshot | BrokerError) -> None:
        self.answers = list(answers)
        self.release = threading.Semaphore(0)
        self.asked = 0

    def describe_group(self, group_id: str) -> GroupSnapshot:
        assert group_id == "app"
        self.asked += 1
        answer = self.answers.pop(0)
        self.release.acquire()
        if isinstance(answer, BrokerError):
            raise answer
        return answer


def snapshot(*members: str) -> GroupSnapshot:
    return GroupSnapshot(
        True, "STABLE", tuple(GroupMember(m, f"client-{m}", None) for m in members)
    )


def wait_answer(requests: SnapshotRequests) -> GroupSnapshot:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = requests.answer()
        if answer is not None:
            return answer
        time.sleep(0.005)
    raise AssertionError("no answer within 5s")


def test_the_caller_never_waits_for_the_coordinator() -> None:
    admin = SlowAdmin(snapshot("m1"))
    requests = SnapshotRequests(admin, "app")  # type: ignore[arg-type]
    began = time.monotonic()
    for _ in range(20):
        assert requests.answer() is None  # asked once, then waiting
    assert time.monotonic() - began < 1.0
    assert requests.waiting
    admin.release.release()
    assert wait_answer(requests) == snapshot("m1")
    assert admin.asked == 1
    assert not requests.waiting


def test_an_answer_asked_before_a_new_generation_is_dropped() -> None:
    admin = SlowAdmin(snapshot("old"), snapshot("old", "new"))
    requests = SnapshotRequests(admin, "app")  # type: ignore[arg-type]
    assert requests.answer() is None
    requests.forget()  # a new generation began while the first question was out
    admin.release.release()
    time.sleep(0.05)  # the first answer has come, to a future nobody looks at
    assert requests.answer() is None  # a new question
    admin.release.release()
    assert wait_answer(requests) == snapshot("old", "new")
    assert admin.asked == 2


def test_a_failed_description_is_raised_once_and_asked_again() -> None:
    admin = SlowAdmin(BrokerError("cannot describe group 'app': timed out"), snapshot("m1"))
    requests = SnapshotRequests(admin, "app")  # type: ignore[arg-type]
    admin.release.release()
    with pytest.raises(BrokerError, match="cannot describe group 'app'"):
        wait_answer(requests)
    admin.release.release()
    assert wait_answer(requests) == snapshot("m1")


def test_shows_the_member_only_with_the_client_id_it_joined_with() -> None:
    group = snapshot("m1", "m2")
    assert shows(group, "m1", "client-m1")
    assert not shows(group, "m1", "client-m2")
    assert not shows(group, "m3", "client-m3")
    assert not shows(group, None, "client-m1")
