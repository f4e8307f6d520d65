"""Group descriptions come from a child process: librdkafka aborting on the coordinator's path
(confluentinc/librdkafka#5397) ends the child, and the worker gets a `BrokerError` it already
handles (it asks again), never a SIGABRT of its own.

The child's admin client points at a port nothing listens on, so each real request fails with
the broker's own error after the probe's timeout; the tests end the child the way librdkafka
does, with SIGABRT.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from processor.errors import BrokerError
from processor.kafka.admin import Admin
from processor.kafka.group_describer import GroupDescriber, describable

NOWHERE = {"bootstrap.servers": "127.0.0.1:1"}


def describer(answer_within: float = 30.0) -> GroupDescriber:
    return GroupDescriber(NOWHERE, timeout=0.3, answer_within=answer_within)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def dead(pid: int) -> bool:
    """Whether `pid` has ended (a zombie not reaped yet counts)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def wait_until_dead(pid: int) -> None:
    deadline = time.monotonic() + 10
    while not dead(pid):
        assert time.monotonic() < deadline, f"child {pid} still runs"
        time.sleep(0.01)


def test_the_child_answers_with_the_brokers_error_and_stays_for_the_next_request() -> None:
    groups = describer()
    try:
        with pytest.raises(BrokerError, match="cannot describe group 'app': the broker does not"):
            groups.describe("app")
        first = groups.child_pid
        with pytest.raises(BrokerError, match="the broker does not answer"):
            groups.describe("app")
        assert first is not None and groups.child_pid == first
    finally:
        groups.close()


def test_a_child_aborted_between_requests_fails_the_next_one_then_a_new_child_answers() -> None:
    groups = describer()
    try:
        with pytest.raises(BrokerError, match="does not answer"):
            groups.describe("app")
        aborted = groups.child_pid
        assert aborted is not None
        os.kill(aborted, signal.SIGABRT)
        # Dead before the request is written: the write fails (broken pipe), and what the
        # write left buffered must not fail again when the pipe is closed.
        wait_until_dead(aborted)

        with pytest.raises(BrokerError) as raised:
            groups.describe("app")
        assert "describing group 'app'" in str(raised.value)
        assert "ended by SIGABRT" in str(raised.value)
        assert "librdkafka#5397" in str(raised.value)
        assert "the next request starts a new one" in str(raised.value)

        with pytest.raises(BrokerError, match="does not answer"):
            groups.describe("app")
        assert groups.child_pid not in (None, aborted)
    finally:
        groups.close()


def test_a_child_aborted_while_a_request_waits_fails_that_request_at_once() -> None:
    groups = describer()
    try:
        with pytest.raises(BrokerError, match="does not answer"):
            groups.describe("app")  # started, and known to take the probe's 0.3 s
        pid = groups.child_pid
        assert pid is not None
        threading.Timer(0.1, os.kill, (pid, signal.SIGABRT)).start()
        started = time.monotonic()
        with pytest.raises(BrokerError, match="ended by SIGABRT"):
            groups.describe("app")
        assert time.monotonic() - started < 5.0
    finally:
        groups.close()


def test_a_child_that_does_not_answer_in_time_is_stopped_and_replaced() -> None:
    groups = describer(answer_within=0.05)
    try:
        # The first request has the child's start-up grace; the second must answer in 50 ms and
        # cannot (the probe alone waits 0.3 s).
        with pytest.raises(BrokerError, match="does not answer"):
            groups.describe("app")
        slow = groups.child_pid
        assert slow is not None
        with pytest.raises(BrokerError, match="no answer from the group-describing child process"):
            groups.describe("app")
        assert groups.child_pid is None
        deadline = time.monotonic() + 5
        while alive(slow) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not alive(slow)
    finally:
        groups.close()


def test_close_ends_the_child_and_refuses_later_requests() -> None:
    groups = describer()
    with pytest.raises(BrokerError):
        groups.describe("app")
    pid = groups.child_pid
    assert pid is not None
    groups.close()
    assert not alive(pid)
    with pytest.raises(BrokerError, match="the admin is closed"):
        groups.describe("app")


def test_settings_with_a_callback_stay_in_process() -> None:
    assert describable(NOWHERE)
    with_callback = {**NOWHERE, "error_cb": lambda error: None}
    assert not describable(with_callback)
    admin = Admin(with_callback, timeout=0.3)  # type: ignore[arg-type]
    with pytest.raises(BrokerError, match="does not answer"):
        admin.describe_group("app")
    assert admin._describer is None


def test_a_child_started_ahead_answers_the_first_request_and_is_not_started_twice() -> None:
    groups = describer()
    try:
        groups.start()
        started = groups.child_pid
        assert started is not None
        groups.start()
        assert groups.child_pid == started
        with pytest.raises(BrokerError, match="does not answer"):
            groups.describe("app")
        assert groups.child_pid == started
    finally:
        groups.close()
