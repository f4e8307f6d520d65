"""`processor.runtime.background`: a start on a thread of its own, whose outcome the owner's
thread sees (its failure raised there, as if the start had run there) and undoes (what it made
closed once, whenever the start ends)."""

from __future__ import annotations

import logging
import threading

import pytest

from processor.errors import ConfigError, ProcessorError
from processor.runtime.background import BackgroundStart, BackgroundStartError, StartState

WAIT_S = 10.0


class Made:
    """What a start makes, and how often it was closed."""

    def __init__(self) -> None:
        self.closed = 0


def _close(made: Made) -> None:
    made.closed += 1


def test_a_start_that_succeeds_is_kept_and_closed_once() -> None:
    made = Made()
    start = BackgroundStart("the thing", lambda: made, _close, thread_name="t")
    assert start.wait(WAIT_S) is made
    assert start.state is StartState.STARTED
    start.raise_if_failed()  # nothing to raise
    start.close()
    start.close()  # closing again changes nothing
    assert start.state is StartState.CLOSED
    assert made.closed == 1


def test_a_configuration_error_is_raised_on_the_owners_thread_as_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = ConfigError("http_port", "cannot serve HTTP on 127.0.0.1:1: in use; choose another")

    def fail() -> Made:
        raise error

    start = BackgroundStart("the thing", fail, _close, thread_name="t")
    start.wait(WAIT_S)
    assert start.state is StartState.FAILED
    with pytest.raises(ConfigError) as raised:
        start.raise_if_failed()
    assert raised.value is error  # same message, same setting: as when it ran on this thread
    # Its message says it all: no traceback in the log (the CLI prints the one line).
    assert not [r for r in caplog.records if r.exc_info]
    start.close()
    assert start.state is StartState.CLOSED


def test_any_other_failure_is_raised_naming_what_failed_to_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail() -> Made:
        raise ModuleNotFoundError("No module named 'uvicorn'")

    with caplog.at_level(logging.ERROR):
        start = BackgroundStart("the query API and /metrics", fail, _close, thread_name="t")
        start.wait(WAIT_S)
    with pytest.raises(BackgroundStartError) as raised:
        start.raise_if_failed()
    message = str(raised.value)
    assert message.startswith("the query API and /metrics failed to start: ModuleNotFoundError")
    assert "No module named 'uvicorn'" in message
    assert isinstance(raised.value, ProcessorError)  # the CLI reports it as one, exit code 1
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)
    # Where it failed is in the log, once, from the thread it failed on.
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "failed to start" in tracebacks[0].getMessage()
    with pytest.raises(BackgroundStartError):
        start.raise_if_failed()  # asked again, it still fails


def test_nothing_is_raised_while_the_start_is_under_way() -> None:
    release = threading.Event()

    def slow() -> Made:
        release.wait(WAIT_S)
        raise RuntimeError("late")

    start = BackgroundStart("the thing", slow, _close, thread_name="t")
    start.raise_if_failed()  # at once, nothing yet
    assert start.state is StartState.STARTING
    release.set()
    start.wait(WAIT_S)
    with pytest.raises(BackgroundStartError, match="late"):
        start.raise_if_failed()


@pytest.mark.parametrize("ends", ["before close gives up", "after close gave up"])
def test_a_start_under_way_at_close_is_closed_once_whenever_it_ends(ends: str) -> None:
    made = Made()
    began, release = threading.Event(), threading.Event()

    def slow() -> Made:
        began.set()
        release.wait(WAIT_S)
        return made

    start = BackgroundStart("the thing", slow, _close, thread_name="t")
    assert began.wait(WAIT_S)
    if ends == "before close gives up":
        threading.Timer(0.05, release.set).start()
        start.close(timeout=WAIT_S)  # waits for it, then closes what it made
    else:
        start.close(timeout=0.01)  # gives up waiting: its own thread closes it when it ends
        assert made.closed == 0
        release.set()
        start.wait(WAIT_S)
    assert start.state is StartState.CLOSED
    assert made.closed == 1


def test_a_failure_after_close_is_not_raised() -> None:
    release = threading.Event()

    def slow() -> Made:
        release.wait(WAIT_S)
        raise RuntimeError("too late to matter")

    start = BackgroundStart("the thing", slow, _close, thread_name="t")
    start.close(timeout=0.01)
    release.set()
    start.wait(WAIT_S)
    assert start.state is StartState.CLOSED
    start.raise_if_failed()  # the worker stopped already: nothing to report
